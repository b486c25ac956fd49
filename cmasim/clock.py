"""The simulated clock: timers and periodic kernel work, run in time order.

`advance_clock(S, C, t, scratch)` runs everything due up to time t — pin timers (unpin,
pinner threads), the vmstat worker (once a second: the per-CPU vmstat fold, and decay_pcp_high() from
v6.7), kswapd steps
and kcompactd runs — then sets now = t. Event loops call it before each event; long
kernel operations (alloc_contig_range()) call it as their simulated work proceeds, so
pins start and end while a range is being migrated. Work done by kernel threads here is
not charged to the caller (C[H_COST_NS] is preserved).
"""

from cmasim.mm.jit import kjit, kjit_fixed, kjit_inline
from cmasim.mm.mmzone import (
    H_COST_NS, H_CPU, H_HEAP_N, H_KCOMPACTD_NEXT, H_KSWAPD_NEXT, H_NCPU, H_NEXT_TICK, H_NOW, H_NZONES,
    H_TRACE_CAP, H_TRACE_N, H_TRACE_ON, TIMER_PIN, TIMER_UNPIN,
)
from cmasim.mm.compaction import kcompactd_run
from cmasim.mm.freelist import policy_version
from cmasim.mm.gup import unpin_user_page
from cmasim.mm.pcp import decay_pcp_high
from cmasim.mm.timers import timer_peek_time, timer_pop
from cmasim.mm.vmscan import kswapd_run
from cmasim.mm.zone_stat import refresh_cpu_vm_stats
from cmasim.workload.pinner import pinner_fire, pinner_unpinned

TICK_NS = 1_000_000_000
TRACE_MARGIN = 8192  # records an event may emit before a loop stops for a flush
NEVER = 1 << 62


@kjit
def vmstat_update(S, C):
    """vmstat_update() on every CPU: refresh_cpu_vm_stats() folds each CPU's vmstat diffs into
    the zone counters (all versions), then (v6.7+) decay_pcp_high() per zone and CPU. Every
    CPU folds before any decay; that is the kernel's order per CPU (fold, then decay), and a
    decay on one CPU only adds to that CPU's diffs. Kernel: mm/vmstat.c vmstat_update(),
    refresh_cpu_vm_stats(). Simplification: all CPUs' workers run at the same instant (the
    kernel skews them by 3 jiffies per CPU in round_jiffies_relative())."""
    for cpu in range(C[H_NCPU]):
        refresh_cpu_vm_stats(C, cpu)
    if policy_version(C) >= 607:
        saved = C[H_CPU]
        for z in range(C[H_NZONES]):
            for cpu in range(C[H_NCPU]):
                C[H_CPU] = cpu
                decay_pcp_high(S, C, z, cpu)
        C[H_CPU] = saved


@kjit_inline
def advance_clock(S, C, t, scratch):
    """Run every timer and periodic job due up to time t, in time order; then set now = t.

    The common case — nothing due — is a few compares inlined into the caller."""
    if (t < C[H_NEXT_TICK] and C[H_HEAP_N] == 0 and C[H_KSWAPD_NEXT] == 0
            and C[H_KCOMPACTD_NEXT] == 0):
        if t > C[H_NOW]:
            C[H_NOW] = t
        return
    run_due_work(S, C, t, scratch)


@kjit_fixed
def run_due_work(S, C, t, scratch):
    """advance_clock()'s slow side: pop and run, in time order, everything due up to `t` —
    unpin and pinner timers, the vmstat_update() tick, kswapd and kcompactd steps. Kernel: the
    timer wheel and the kthreads' wake-ups (kernel/time/timer.c, mm/vmstat.c vmstat_update(),
    mm/vmscan.c kswapd(), mm/compaction.c kcompactd()), serialised on one simulated clock.
    One signature (kjit_fixed): a job of its own in a cold compile on worker processes
    (cmasim.compile_pool), which the churn loop, alloc_contig_range and the replay wait for."""
    saved_cost = C[H_COST_NS]
    while True:
        tt = timer_peek_time(C)
        if tt < 0:
            tt = NEVER
        ks = C[H_KSWAPD_NEXT] if C[H_KSWAPD_NEXT] > 0 else NEVER
        kc = C[H_KCOMPACTD_NEXT] if C[H_KCOMPACTD_NEXT] > 0 else NEVER
        tick = C[H_NEXT_TICK]
        nxt = min(min(tt, ks), min(kc, tick))
        if nxt > t:
            break
        if nxt > C[H_NOW]:
            C[H_NOW] = nxt
        if nxt == tt:
            payload = timer_pop(C)
            kind = payload >> 56
            tag = (payload >> 32) & 0xFFFFFF
            pfn = payload & 0xFFFFFFFF
            if kind == TIMER_UNPIN:
                unpin_user_page(S, C, 0, pfn)
                if tag > 0:
                    pinner_unpinned(S, C, tag - 1, pfn)
            elif kind == TIMER_PIN:
                pinner_fire(S, C, tag - 1, scratch)
        elif nxt == tick:
            vmstat_update(S, C)
            C[H_NEXT_TICK] += TICK_NS
        elif nxt == ks:
            kswapd_run(S, C)
        else:
            kcompactd_run(S, C)
    if t > C[H_NOW]:
        C[H_NOW] = t
    C[H_COST_NS] = saved_cost


@kjit_inline
def trace_nearly_full(C):
    return C[H_TRACE_ON] != 0 and C[H_TRACE_N] > C[H_TRACE_CAP] - TRACE_MARGIN


