"""DMA pinners: threads that pin random in-use movable pages for a while, over and over.

Each pinner has `threads` concurrent threads (a closed loop, like the oracle's pinner
threads or a DMA engine's queue depth): a thread picks a random allocated movable block,
pins it for `hold_ns` (short-term, or FOLL_LONGTERM), and `gap_ns` after the unpin pins
again. Pin attempts and unpins are timers on the simulated clock (cmasim.mm.timers).
A thread that finds nothing to pin tries again after `hold_ns` (counted as a miss).
"""

import numpy as np

from cmasim.mm.jit import kjit
from cmasim.mm.mmzone import (
    H_LIVE, H_LIVE_DENSE, H_N, H_NLIVE, H_NOW, H_NPINNERS, H_OWNER, H_PINNERS, MIGRATE_CMA, PG_ALLOC,
    PN_CMA_ONLY, PN_FAILS, PN_GAP_NS, PN_HOLD_NS, PN_LONGTERM, PN_MISSES, PN_PINNED_IN_CMA, PN_PINS,
    PN_START_NS, PN_THREADS, PNS, TIMER_PIN,
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
        if not folio_is_movable(S[C[H_OWNER] + p]):
            continue
        if cma_only and get_pageblock_type_bits(S, C, p) != MIGRATE_CMA:
            continue
        return p
    return -1


@kjit
def pinners_start(C):
    """Schedule every pinner thread's first pin (jittered around the pinner's start time)."""
    for i in range(C[H_NPINNERS]):
        b = pinner_base(C, i)
        for _ in range(C[b + PN_THREADS]):
            t = C[b + PN_START_NS] + prandom_jitter(C, C[b + PN_HOLD_NS] + C[b + PN_GAP_NS])
            timer_push(C, t, (TIMER_PIN << 56) | ((i + 1) << 32))


@kjit
def pinner_fire(S, C, i, scratch):
    """A thread of pinner i wakes up: pin something (the unpin timer will wake it again)."""
    b = pinner_base(C, i)
    p = pick_pin_target(S, C, C[b + PN_CMA_ONLY])
    if p < 0:
        C[b + PN_MISSES] += 1
        timer_push(C, C[H_NOW] + C[b + PN_HOLD_NS], (TIMER_PIN << 56) | ((i + 1) << 32))
        return
    r = pin_user_page(S, C, 0, p, C[b + PN_LONGTERM] != 0, C[b + PN_HOLD_NS], scratch, i + 1)
    if r < 0:
        C[b + PN_FAILS] += 1
        timer_push(C, C[H_NOW] + C[b + PN_HOLD_NS], (TIMER_PIN << 56) | ((i + 1) << 32))
        return
    C[b + PN_PINS] += 1
    if get_pageblock_type_bits(S, C, r) == MIGRATE_CMA:
        C[b + PN_PINNED_IN_CMA] += 1


@kjit
def pinner_unpinned(C, i):
    """The pin of a thread of pinner i ended: pin again after the gap."""
    b = pinner_base(C, i)
    timer_push(C, C[H_NOW] + C[b + PN_GAP_NS], (TIMER_PIN << 56) | ((i + 1) << 32))


def new_scratch():
    return np.zeros(4, dtype=np.int64)
