"""The OOM killer: when reclaim cannot help, kill the task with the most memory and retry.

Kernel: mm/oom_kill.c — out_of_memory(), select_bad_process(), oom_evaluate_task(),
oom_badness(), oom_kill_process()/__oom_kill_process() (count_vm_event(OOM_KILL)),
the oom_reaper (exit_mmap() frees the victim's anonymous memory); mm/page_alloc.c
__alloc_pages_may_oom() decides whether the killer is called at all (alloc_pages.py).
Checked against v6.18.

What a task is here. The workloads have no processes, so the model defines them: every
anonymous page a workload faults in (a block that gets a live handle, cmasim.mm.folio
live_add) belongs to one of NR_OOM_TASKS tasks, assigned round-robin and kept in the
owner word's task bits (OW_TASK_SHIFT; they travel with the page through migration and
compaction). Page cache, slab and device buffers belong to no task: killing a task does
not free them, as in the kernel (page cache outlives the process; kernel memory is not the
task's). Replayed traces (sparse handles) tag nothing, so nothing is killable there.

oom_badness() is the task's resident anonymous pages (the kernel adds file RSS, swap
entries and page tables, and oom_score_adj; none exist here). The victim is the task with
the highest badness (ties: the lowest task id). Killing it drops every anonymous block the
task holds through folio_put(): an unpinned block is freed at once; a pinned one is
released when its pin ends (the pins belong to DMA pinner threads, i.e. drivers, not to
the task, so exit_mmap() cannot drop them; the kernel's reaper likewise leaves pinned
pages to their last put_page()). The kill is instantaneous (no exit latency, no
oom_reaper delay, no TIF_MEMDIE reserves for the victim), and the last victim's task id is
retired until the next kill, so the invariant checker can verify its memory is gone.

With the killer switched off (scenario `reclaim.oom_killer = false`), out_of_memory()
counts the kill the kernel would have made (oom_kill) and reports no progress, so the
allocation fails, as the model did before the killer existed.
"""

import numpy as np

from cmasim.mm.jit import kjit, kjit_inline
from cmasim.mm.mmzone import (
    GFP_FS_, H_LIVE, H_LIVE_DENSE, H_N, H_NLIVE, H_OOM_LAST_VICTIM, H_PARAM,
    OW_ANON, OW_FREE_PENDING, OW_KIND_MASK, OW_TASK_MASK, OW_TASK_SHIFT, T_OOM_KILLER,
    VM_OOM_KILL, VM_OOM_KILL_PAGES, VM_OOM_NO_VICTIM,
    NODE_W, F_OWNER,
)
from cmasim.mm.folio import NR_OOM_TASKS, folio_put
from cmasim.mm.freelist import pi_order, pinfo, vm_add



@kjit
def owner_task(w):
    """The task an owner word belongs to (0: none)."""
    if (w & OW_KIND_MASK) != OW_ANON:
        return 0
    return (w >> OW_TASK_SHIFT) & OW_TASK_MASK


@kjit
def live_slots(C):
    """Handle slots to walk: LIVE[0:NLIVE] in dense mode, every slot in sparse mode."""
    return C[H_NLIVE] if C[H_LIVE_DENSE] else C[H_N]


@kjit
def select_bad_process(S, C):
    """select_bad_process()/oom_badness(): (task id, badness) of the task holding the most
    resident anonymous pages; (0, 0) if no task holds any. Kernel: mm/oom_kill.c."""
    pages = np.zeros(NR_OOM_TASKS + 1, dtype=np.int64)
    for h in range(live_slots(C)):
        p = S[C[H_LIVE] + h]
        if p < 0:
            continue
        w = S[NODE_W * p + F_OWNER]
        if w & OW_FREE_PENDING:
            continue
        t = owner_task(w)
        if t > 0:
            pages[t] += 1 << pi_order(pinfo(S, C, p))
    best = 0
    for t in range(1, NR_OOM_TASKS + 1):
        if pages[t] > pages[best]:
            best = t
    return best, pages[best]


@kjit_inline
def oom_kill_process(S, C, cpu, victim):
    """__oom_kill_process() + the oom_reaper: drop every anonymous block of the victim (pinned
    ones are released at their unpin). Returns the pages dropped. Kernel: mm/oom_kill.c.
    Inlined into its one caller (kjit_inline): not compiled as a library of its own, which
    would generate its whole call tree once more in a cold compile (docs/performance.md)."""
    freed = 0
    h = live_slots(C) - 1
    while h >= 0:
        p = S[C[H_LIVE] + h]
        # Walk downward: dense mode moves the last live handle into a dropped slot, and that
        # one has already been looked at.
        if p >= 0 and owner_task(S[NODE_W * p + F_OWNER]) == victim:
            freed += 1 << pi_order(pinfo(S, C, p))
            folio_put(S, C, cpu, p)
        h -= 1
    return freed


@kjit
def out_of_memory(S, C, cpu, gfp):
    """out_of_memory(): returns True when a task was killed (the caller retries the
    allocation). Without __GFP_FS the kernel kills nothing and returns true, relying on
    other allocators to make progress; the model has no other allocators and reports no
    progress instead (the allocation fails). Kernel: mm/oom_kill.c out_of_memory()."""
    if not (gfp & GFP_FS_):
        return False
    if C[C[H_PARAM] + T_OOM_KILLER] == 0:
        vm_add(C, VM_OOM_KILL, 1)  # the kill a kernel would make; the model fails instead
        return False
    victim, badness = select_bad_process(S, C)
    if victim == 0 or badness == 0:
        vm_add(C, VM_OOM_NO_VICTIM, 1)  # a kernel panics ("no killable processes")
        return False
    vm_add(C, VM_OOM_KILL, 1)
    vm_add(C, VM_OOM_KILL_PAGES, oom_kill_process(S, C, cpu, victim))
    C[H_OOM_LAST_VICTIM] = victim
    return True
