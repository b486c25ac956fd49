"""The OOM killer (cmasim/mm/oom_kill.py). Kernel: mm/oom_kill.c out_of_memory(),
select_bad_process(), oom_badness(), __oom_kill_process(); mm/page_alloc.c
__alloc_pages_may_oom() (v6.18)."""

import pytest

from cmasim import gfp as G
from cmasim.machine import InvariantViolation, Machine, MachineConfig
from cmasim.mm import mmzone as mz
from cmasim.mm.folio import NR_OOM_TASKS
from cmasim.policy import get_policy

NORETRY = G.BITS["__GFP_NORETRY"]


def task_of(m, p):
    w = int(m.S[mz.NODE_W * p + mz.F_OWNER])
    return (w >> mz.OW_TASK_SHIFT) & mz.OW_TASK_MASK if (w & mz.OW_KIND_MASK) == mz.OW_ANON else 0


def task_pages(m):
    out = {}
    for p in m.live_blocks():
        t = task_of(m, p)
        if t:
            out[t] = out.get(t, 0) + (1 << (int(m.S[mz.NODE_W * p + mz.F_PINFO]) & mz.PI_ORDER_MASK))
    return out


def full_machine(oom_killer=True, biggest=7):
    """Anonymous memory of 16 tasks (no swap, so nothing is reclaimable), task `biggest` holding
    the most, the rest of memory unmovable kernel memory."""
    m = Machine(MachineConfig(zones=[("Normal", 4096)], nr_cpus=1, min_free_kbytes=128, compaction=False,
                              swap_bytes=0, oom_killer=oom_killer, timer_capacity=64), get_policy("linux-6.18"))
    anon = [m.alloc(0, G.GFP_HIGHUSER_MOVABLE | NORETRY) for _ in range(1600)]
    assert all(p >= 0 for p in anon)
    seen = set()
    for p in anon:  # one page less for every task but `biggest`
        t = task_of(m, p)
        if t != biggest and t not in seen:
            seen.add(t)
            m.free(p)
    while m.alloc(0, G.GFP_KERNEL | NORETRY, owner=mz.OW_SLAB) >= 0:
        pass
    m.drain_all()
    for k in range(mz.NR_VM):
        m.C[int(m.C[mz.H_VM]) + k] = 0
    # Under this pressure kswapd is balancing the node: ZONE_RECLAIM_ACTIVE caps the per-CPU
    # lists, so most of a victim's freed memory reaches the buddy lists (the clock does not
    # run in these tests, so set the flag as balance_pgdat() would).
    m.C[int(m.C[mz.H_ZONE]) + mz.Z_FLAGS] |= mz.ZONE_RECLAIM_ACTIVE
    return m


def test_anonymous_faults_are_spread_over_the_tasks_round_robin():
    m = full_machine()
    pages = task_pages(m)
    assert sorted(pages) == list(range(1, NR_OOM_TASKS + 1))
    assert pages[7] == 100 and all(v == 99 for t, v in pages.items() if t != 7)


def test_oom_kill_frees_the_biggest_task_and_the_allocation_succeeds():
    """A GFP_KERNEL request that reclaim cannot satisfy kills the task with the highest badness
    (resident anonymous pages), frees its memory and retries: the allocation succeeds (the
    old model failed it and counted oom_kill)."""
    m = full_machine(biggest=7)
    before = task_pages(m)
    p = m.alloc(0, G.GFP_KERNEL)
    assert p >= 0
    assert m.vm(mz.VM_OOM_KILL) == 1 and m.vm(mz.VM_ALLOC_FAIL) == 0
    assert int(m.C[mz.H_OOM_LAST_VICTIM]) == 7
    after = task_pages(m)
    assert 7 not in after and m.vm(mz.VM_OOM_KILL_PAGES) == before[7] == 100
    assert {t: v for t, v in before.items() if t != 7} == after
    m.check()
    # New anonymous faults skip the victim's task id until the next kill.
    q = m.alloc(0, G.GFP_HIGHUSER_MOVABLE)
    assert q >= 0 and task_of(m, q) not in (0, 7)


def test_oom_killer_off_counts_the_kill_and_fails():
    m = full_machine(oom_killer=False)
    before = task_pages(m)
    assert m.alloc(0, G.GFP_KERNEL) < 0
    assert m.vm(mz.VM_OOM_KILL) == 1 and m.vm(mz.VM_ALLOC_FAIL) == 1
    assert task_pages(m) == before and int(m.C[mz.H_OOM_LAST_VICTIM]) == 0


def test_requests_the_kernel_never_oom_kills_for_kill_nothing():
    m = full_machine()
    before = task_pages(m)
    assert m.alloc(0, G.GFP_KERNEL | G.BITS["__GFP_RETRY_MAYFAIL"]) < 0
    assert m.alloc(4, G.GFP_KERNEL) < 0
    assert m.alloc(0, G.GFP_NOFS) < 0  # !__GFP_FS: the kernel kills nothing (and loops); the model fails
    assert m.vm(mz.VM_OOM_KILL) == 0 and task_pages(m) == before


def test_pinned_pages_of_the_victim_are_released_at_unpin():
    m = full_machine(biggest=7)
    victim_page = next(p for p in m.live_blocks() if task_of(m, p) == 7)
    assert m.pin(victim_page, duration_ns=5_000_000) == victim_page
    assert m.alloc(0, G.GFP_KERNEL) >= 0
    w = int(m.S[mz.NODE_W * victim_page + mz.F_OWNER])
    assert w & mz.OW_FREE_PENDING  # dropped by its owner, still pinned by the driver
    m.check()
    m.advance(m.now_ns + 10_000_000)
    assert int(m.S[mz.NODE_W * victim_page + mz.F_OWNER]) == 0
    m.check()


def test_no_victim_left_fails_the_allocation():
    m = Machine(MachineConfig(zones=[("Normal", 4096)], nr_cpus=1, min_free_kbytes=128, compaction=False,
                              swap_bytes=0, oom_killer=True), get_policy("linux-6.18"))
    while m.alloc(0, G.GFP_KERNEL | NORETRY, owner=mz.OW_SLAB) >= 0:
        pass
    assert m.alloc(0, G.GFP_KERNEL) < 0
    assert m.vm(mz.VM_OOM_KILL) == 0 and m.vm(mz.VM_OOM_NO_VICTIM) == 1


def test_checker_finds_memory_of_the_last_victim():
    m = full_machine()
    m.check()
    m.C[mz.H_OOM_LAST_VICTIM] = 3  # pretend task 3 was killed: its pages are still live
    with pytest.raises(InvariantViolation, match="OOM victim task 3"):
        m.check()
