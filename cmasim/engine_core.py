"""The compiled event loop: the simulated clock, its timers, and batches of columnar events.

design.md decision 2: crossing into compiled code costs microseconds, so workloads become
int64 event arrays ``ev[n, EV_COLS]`` (time, op, cpu, order, gfp, handle) that
`run_events` consumes in one call. A handle names an allocation: an ALLOC stores its block
in LIVE[h] (cmasim.mm.folio), a FREE of h releases whatever block LIVE[h] refers to now
(migration and compaction keep it current). Handle ids are the caller's, so the machine
must use sparse handles (MachineConfig(sparse_handles=True)); the checker rejects dense-mode
tables with holes.

Before each event, `cmasim.clock.advance_clock` runs the timers and kernel threads that
fall due. The loop returns early when the trace buffer is close to full so that the
caller can flush it; nothing is dropped.
"""

import numpy as np

from cmasim.mm.jit import borrow, kjit
from cmasim.mm.mmzone import (
    H_ALLOC_FAILED, H_CPU, H_HANDLE, H_LIVE, H_LIVE_PAGES, H_NZONES, H_SKIPPED,
    NODE_W, F_OWNER,
)
from cmasim.mm.alloc_pages import alloc_pages
from cmasim.mm.folio import default_owner, folio_put, handle_attach
from cmasim.clock import advance_clock, trace_nearly_full  # noqa: F401  (re-exported)
from cmasim.mm.pcp import drain_all_pages, drain_pages_zone
from cmasim.mm.rmqueue import gfp_migratetype

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



@kjit
def run_events(S, C, ev, i0):
    """Consume events ev[i0:]; return the index of the first event not processed.

    The state arrays are used through reference-count-free views (cmasim.mm.jit.borrow)."""
    S = borrow(S)
    C = borrow(C)
    ev = borrow(ev)
    n = ev.shape[0]
    scratch = np.zeros(4, dtype=np.int64)
    i = i0
    live = C[H_LIVE]
    while i < n:
        if trace_nearly_full(C):
            return i
        advance_clock(S, C, ev[i, EV_TIME], scratch)
        op = ev[i, EV_OP]
        cpu = ev[i, EV_CPU]
        C[H_CPU] = cpu
        if op == OP_ALLOC:
            h = ev[i, EV_HANDLE]
            order = ev[i, EV_ORDER]
            p = alloc_pages(S, C, cpu, order, ev[i, EV_GFP])
            if p < 0:
                S[live + h] = -1
                C[H_ALLOC_FAILED] += 1
            else:
                old = S[live + h]
                if old >= 0 and S[C[H_HANDLE] + old] == h:
                    S[C[H_HANDLE] + old] = -1  # the trace reused the handle without a free
                S[NODE_W * p + F_OWNER] = default_owner(gfp_migratetype(ev[i, EV_GFP]))
                handle_attach(S, C, h, p)
                C[H_LIVE_PAGES] += 1 << order
        elif op == OP_FREE:
            h = ev[i, EV_HANDLE]
            p = S[live + h]
            if p < 0:
                C[H_SKIPPED] += 1
            else:
                folio_put(S, C, cpu, p)
        elif op == OP_DRAIN_ALL:
            drain_all_pages(S, C, -1)
        elif op == OP_DRAIN_CPU:
            for z in range(C[H_NZONES]):
                drain_pages_zone(S, C, z, cpu)
        i += 1
    return i
