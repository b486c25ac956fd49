"""The compiled event loop: one call consumes a whole batch of columnar events.

design.md decision 2: crossing into compiled code costs microseconds, so workloads become
int64 event arrays ``ev[n, EV_COLS]`` (time, op, cpu, order, gfp, handle) that
`run_events` consumes in one call. Handles name allocations: an ALLOC stores its pfn in
``handles[h]`` and a FREE of handle h frees that pfn. The loop also runs the periodic
vmstat work on the simulated clock (decay_pcp_high(), once a second per CPU, v6.7+).

The loop returns early (with the index of the next event) when the trace buffer is close
to full, so that the caller can flush it and call again; nothing is dropped.
"""

from cmasim.mm.jit import kjit
from cmasim.mm.mmzone import H_CPU, H_NCPU, H_NOW, H_NZONES, H_TRACE_CAP, H_TRACE_N, H_TRACE_ON
from cmasim.mm.alloc_pages import alloc_pages, free_pages
from cmasim.mm.freelist import policy_version
from cmasim.mm.pcp import decay_pcp_high, drain_all_pages, drain_pages_zone

EV_TIME = 0
EV_OP = 1
EV_CPU = 2
EV_ORDER = 3
EV_GFP = 4
EV_HANDLE = 5
EV_COLS = 6

OP_ALLOC = 1
OP_FREE = 2
OP_DRAIN_ALL = 3
OP_DRAIN_CPU = 4

H_NEXT_TICK = 25  # header slot: simulated time of the next vmstat worker run
H_SKIPPED = 26  # header slot: FREE events whose handle held no live allocation (counted, not dropped)
H_ALLOC_FAILED = 27  # header slot: ALLOC events that returned no page
TICK_NS = 1_000_000_000
TRACE_MARGIN = 8192  # records an event may emit before the loop stops for a flush


@kjit
def advance_clock(S, C, t):
    """Set the clock to `t` and run every vmstat worker tick that fell due (vmstat_update())."""
    if t > C[H_NOW]:
        C[H_NOW] = t
    while C[H_NOW] >= C[H_NEXT_TICK]:
        if policy_version(C) >= 607:
            saved = C[H_CPU]
            for z in range(C[H_NZONES]):
                for cpu in range(C[H_NCPU]):
                    C[H_CPU] = cpu
                    decay_pcp_high(S, C, z, cpu)
            C[H_CPU] = saved
        C[H_NEXT_TICK] += TICK_NS


@kjit
def trace_nearly_full(C):
    return C[H_TRACE_ON] != 0 and C[H_TRACE_N] > C[H_TRACE_CAP] - TRACE_MARGIN


@kjit
def run_events(S, C, ev, handles, i0):
    """Consume events ev[i0:]; return the index of the first event not processed."""
    n = ev.shape[0]
    i = i0
    while i < n:
        if trace_nearly_full(C):
            return i
        advance_clock(S, C, ev[i, EV_TIME])
        op = ev[i, EV_OP]
        cpu = ev[i, EV_CPU]
        C[H_CPU] = cpu
        if op == OP_ALLOC:
            p = alloc_pages(S, C, cpu, ev[i, EV_ORDER], ev[i, EV_GFP])
            handles[ev[i, EV_HANDLE]] = p
            if p < 0:
                C[H_ALLOC_FAILED] += 1
        elif op == OP_FREE:
            h = ev[i, EV_HANDLE]
            p = handles[h]
            if p < 0 or free_pages(S, C, cpu, p) != 0:
                C[H_SKIPPED] += 1
            handles[h] = -1
        elif op == OP_DRAIN_ALL:
            drain_all_pages(S, C, -1)
        elif op == OP_DRAIN_CPU:
            for z in range(C[H_NZONES]):
                drain_pages_zone(S, C, z, cpu)
        i += 1
    return i
