"""DMA pinners: threads that pin random in-use movable pages for a while, over and over.

Each pinner has `threads` concurrent threads (a closed loop, like the oracle's pinner
threads or a DMA engine's queue depth): a thread picks a random allocated movable block,
pins it for `hold_ns` (short-term, or FOLL_LONGTERM), and `gap_ns` after the unpin pins
again. Pin attempts and unpins are timers on the simulated clock (cmasim.mm.timers).
A thread that finds nothing to pin tries again after `hold_ns` (counted as a miss).

Targets (PN_PICK), as the oracle's pinner (tools/oracle-tool.c pinner()) picks them:
PICK_ANY a random allocated movable block (CMA pageblocks only with cma_only);
PICK_CANDIDATES a random entry of the candidate list, the fill handles that sat in CMA at
the last `rescan_candidates` (cmasim.workload.fill; the tool's scan_fill() over
/proc/self/pagemap): the list goes stale while cma_alloc() migrates, and a handle follows its
data, so a pin on a migrated candidate lands outside CMA, as in the kernel; PICK_FILL a
random live anonymous handle (the tool without -C; simplification: the tool may also pick
a page it dropped, which the pin faults back in). The hold is uniform in
[hold, hold + jitter] (the module's usleep_range(H, H + H/8 + 1), or msleep's extra jiffy).
Threads stop at PN_END_NS (the tool's stop_pins). `H_HELD_CMA` counts CMA pages held pinned
right now; while `H_ALLOC_ACTIVE` the max and the pins on CMA pages are recorded, like the
oracle module's held_cma / held_cma_max / pins_cma_during (tools/cmaoracle.c do_pin()).
"""

import numpy as np

from cmasim.mm.jit import kjit, kjit_inline
from cmasim.mm.mmzone import (
    H_ALLOC_ACTIVE, H_CAND, H_HELD_CMA, H_HELD_CMA_MAX, H_LIVE, H_LIVE_DENSE, H_N, H_NCAND, H_NLIVE, H_NOW,
    H_NPINNERS, H_PINNERS, H_PINS_CMA_DURING, MIGRATE_CMA, OW_ANON, OW_KIND_MASK, PG_ALLOC,
    PICK_CANDIDATES, PICK_FILL, PN_CMA_ONLY, PN_END_NS, PN_FAILS, PN_GAP_NS, PN_HOLD_NS, PN_JITTER_NS,
    PN_LONGTERM, PN_MISSES, PN_PICK, PN_PINNED_IN_CMA, PN_PINS, PN_START_NS, PN_THREADS, PNS, TIMER_PIN,
    NODE_W, F_OWNER,
)
from cmasim.mm.folio import folio_is_movable
from cmasim.mm.freelist import get_pageblock_type_bits, pi_state, pinfo, zone_base
from cmasim.mm.gup import pin_user_page
from cmasim.mm.page_alloc import block_head
from cmasim.mm.prandom import prandom_jitter, prandom_u32
from cmasim.mm.timers import timer_push

PICK_TRIES = 64


@kjit
def pinner_base(C, i):
    return C[H_PINNERS] + i * PNS


@kjit
def pick_pin_target(S, C, cma_only):
    """A random allocated movable block (from the live handles, or by pfn in sparse mode)."""
    for _ in range(PICK_TRIES):
        if C[H_LIVE_DENSE] and C[H_NLIVE] > 0:
            p = S[C[H_LIVE] + prandom_u32(C) % C[H_NLIVE]]
        else:
            q = prandom_u32(C) % C[H_N]
            p = block_head(S, C, zone_base(C, 0), q)
        if p < 0 or pi_state(pinfo(S, C, p)) != PG_ALLOC:
            continue
        if not folio_is_movable(S[NODE_W * p + F_OWNER]):
            continue
        if cma_only and get_pageblock_type_bits(S, C, p) != MIGRATE_CMA:
            continue
        return p
    return -1


@kjit
def pick_fill_page(S, C):
    """A random live anonymous block (the tool's pinner without -C: any fill page)."""
    for _ in range(PICK_TRIES):
        if C[H_NLIVE] <= 0:
            return -1
        p = S[C[H_LIVE] + prandom_u32(C) % C[H_NLIVE]]
        if p >= 0 and pi_state(pinfo(S, C, p)) == PG_ALLOC and (S[NODE_W * p + F_OWNER] & OW_KIND_MASK) == OW_ANON:
            return p
    return -1


@kjit
def pick_candidate(S, C):
    """A random entry of the candidate list (handles in CMA at the last rescan), wherever its
    data is now; with an empty list any fill page (the tool's fallback)."""
    n = C[H_NCAND]
    if n <= 0:
        return pick_fill_page(S, C)
    h = C[C[H_CAND] + prandom_u32(C) % n]
    if h < 0 or (C[H_LIVE_DENSE] and h >= C[H_NLIVE]):
        return -1
    p = S[C[H_LIVE] + h]
    if p < 0 or pi_state(pinfo(S, C, p)) != PG_ALLOC:
        return -1
    return p


@kjit
def pinner_start(C, i, t):
    """Start pinner i's threads at about time t (each thread's first pin jittered)."""
    b = pinner_base(C, i)
    C[b + PN_START_NS] = t
    for _ in range(C[b + PN_THREADS]):
        tt = t + prandom_jitter(C, C[b + PN_HOLD_NS] + C[b + PN_GAP_NS])
        timer_push(C, tt, (TIMER_PIN << 56) | ((i + 1) << 32))


@kjit
def pinners_start(C):
    """Schedule every pinner thread's first pin (jittered around the pinner's start time);
    a pinner with a negative start is started later by its driver (pinner_start)."""
    for i in range(C[H_NPINNERS]):
        b = pinner_base(C, i)
        if C[b + PN_START_NS] >= 0:
            pinner_start(C, i, C[b + PN_START_NS])


@kjit_inline
def pinner_fire(S, C, i, scratch):
    """A thread of pinner i wakes up: pin something (the unpin timer will wake it again).
    Inlined into its one caller (kjit_inline): not compiled as a library of its own, which
    would generate its whole call tree once more in a cold compile (docs/performance.md)."""
    b = pinner_base(C, i)
    end = C[b + PN_END_NS]
    if end > 0 and C[H_NOW] >= end:
        return  # stop_pins: the thread exits
    pick = C[b + PN_PICK]
    if pick == PICK_CANDIDATES:
        p = pick_candidate(S, C)
    elif pick == PICK_FILL:
        p = pick_fill_page(S, C)
    else:
        p = pick_pin_target(S, C, C[b + PN_CMA_ONLY])
    if p < 0:
        C[b + PN_MISSES] += 1
        timer_push(C, C[H_NOW] + C[b + PN_HOLD_NS], (TIMER_PIN << 56) | ((i + 1) << 32))
        return
    hold = C[b + PN_HOLD_NS]
    if C[b + PN_JITTER_NS] > 0:
        hold += prandom_u32(C) % (C[b + PN_JITTER_NS] + 1)
    r = pin_user_page(S, C, 0, p, C[b + PN_LONGTERM] != 0, hold, scratch, i + 1)
    if r < 0:
        C[b + PN_FAILS] += 1
        timer_push(C, C[H_NOW] + C[b + PN_HOLD_NS], (TIMER_PIN << 56) | ((i + 1) << 32))
        return
    C[b + PN_PINS] += 1
    if get_pageblock_type_bits(S, C, r) == MIGRATE_CMA:
        C[b + PN_PINNED_IN_CMA] += 1
        held = C[H_HELD_CMA] + 1
        C[H_HELD_CMA] = held
        if C[H_ALLOC_ACTIVE]:
            C[H_PINS_CMA_DURING] += 1
            if held > C[H_HELD_CMA_MAX]:
                C[H_HELD_CMA_MAX] = held


@kjit
def pinner_unpinned(S, C, i, pfn):
    """The pin of a thread of pinner i on pfn ended: pin again after the gap."""
    if get_pageblock_type_bits(S, C, pfn) == MIGRATE_CMA and C[H_HELD_CMA] > 0:
        C[H_HELD_CMA] -= 1
    b = pinner_base(C, i)
    timer_push(C, C[H_NOW] + C[b + PN_GAP_NS], (TIMER_PIN << 56) | ((i + 1) << 32))


def new_scratch():
    return np.zeros(4, dtype=np.int64)
