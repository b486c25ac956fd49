"""Mixed allocation churn generated inside the compiled core (the default scenario and `bench`).

Each step is one event: an allocation (order and migratetype drawn from the mix) or a free
of a uniformly random live block. Below the target usage 90% of steps allocate, above it
90% free, so memory hovers around the target. Movable allocations are owned by anonymous
memory, clean or dirty page cache in configured shares; THP-order ones are anonymous.
The PRNG is the core's xorshift (cmasim.mm.prandom), seeded explicitly: same seed, same
run, compiled or not. Live blocks are the dense handle table LIVE[0:NLIVE] of the core
(cmasim.mm.folio), so migration, compaction and reclaim keep it current.

W (int64) holds the mix parameters and the workload's own counters.
"""

import numpy as np

from cmasim.mm.jit import PREFETCH_HINTS, borrow, kjit, kjit_fixed, kjit_inline, prefetch
from cmasim.mm.mmzone import H_CPU, H_HANDLE, H_LIVE, H_LIVE_PAGES, H_N, H_NLIVE, H_NOW, H_RNG, H_UNMAPPED, OW_ANON, OW_FILE, OW_FILE_DIRTY, OW_SLAB, NODE_W
from cmasim.mm.mmzone import GFP_CMA_, OW_SLAB_RECLAIMABLE
from cmasim.mm.alloc_pages import alloc_pages
from cmasim.mm.folio import folio_put_live, live_add_owned
from cmasim.mm.prandom import prandom_next, prandom_u32
from cmasim.clock import advance_clock, trace_nearly_full

W_TARGET_PERMILLE = 2  # usage target, permille of managed pages
W_P_ORDER0 = 3  # permille of allocations at order 0
W_P_ORDER13 = 4  # permille at orders 1..3 (uniform); the rest at W_HIGH_ORDER
W_P_MOVABLE = 5  # permille movable
W_P_UNMOVABLE = 6  # permille unmovable; the rest reclaimable
W_NCPU = 7
W_DT_NS = 8  # simulated time per event
W_GFP_MOVABLE = 9
W_GFP_UNMOVABLE = 10
W_GFP_RECLAIMABLE = 11
W_GFP_HIGH_ORDER_MOVABLE = 12
W_ALLOC_FAIL = 13
W_MANAGED = 14
W_ALLOCS = 15
W_FREES = 16
W_HIGH_ORDER = 17
W_P_FILE = 18  # permille of movable base allocations that are clean page cache
W_P_FILE_DIRTY = 19  # permille that are dirty page cache (the rest anonymous)
W_EVENTS = 20  # events generated so far
W_GFP_CMA_OWNERS = 21  # which allocations carry __GFP_CMA: bits anon, THP, clean file, dirty file, order-0 anon
W_P_THP_GFP_CMA = 22  # permille of THP allocations that carry __GFP_CMA when THP is tagged
W_SIZE = 24


@kjit
def churn(S, C, W, n, t_end):
    """Run up to `n` churn events, stopping before simulated time t_end; returns events done.

    Fewer than n are done when t_end is reached or the trace buffer needs a flush.
    The state arrays are used through reference-count-free views (cmasim.mm.jit.borrow);
    the loop is `churn_events`.
    """
    scratch = np.zeros(4, dtype=np.int64)
    return churn_events(borrow(S), borrow(C), borrow(W), n, t_end, scratch)


@kjit_fixed
def churn_events(S, C, W, n, t_end, scratch):
    """The loop of `churn`, compiled without reference counting (`kjit_fixed`): the helpers
    inlined into it bind their array arguments to new variables, which with reference counting
    costs a call per helper and array and an atomic increment and decrement of `scratch`
    per event (for speed; `churn` allocates `scratch` and keeps it alive)."""
    for i in range(n):
        if trace_nearly_full(C):
            return i
        t = C[H_NOW] + W[W_DT_NS]
        if t > t_end:
            advance_clock(S, C, t_end, scratch)
            return i
        advance_clock(S, C, t, scratch)
        W[W_EVENTS] += 1
        r = prandom_u32(C)
        cpu = mod_u32(r, W[W_NCPU])
        C[H_CPU] = cpu
        below = C[H_LIVE_PAGES] * 1000 < W[W_TARGET_PERMILLE] * W[W_MANAGED]
        coin = prandom_u32(C) % 10
        do_alloc = (coin < 9) if below else (coin == 0)
        if C[H_NLIVE] == 0:
            do_alloc = True
        if do_alloc:
            r1 = prandom_u32(C) % 1000
            if r1 < W[W_P_ORDER0]:
                order = 0
            elif r1 < W[W_P_ORDER0] + W[W_P_ORDER13]:
                order = 1 + prandom_u32(C) % 3
            else:
                order = W[W_HIGH_ORDER]
            r2 = prandom_u32(C) % 1000
            if r2 < W[W_P_MOVABLE]:
                high = order == W[W_HIGH_ORDER] and order > 3
                gfp = W[W_GFP_HIGH_ORDER_MOVABLE] if high else W[W_GFP_MOVABLE]
                kind = OW_ANON
                tag = W[W_GFP_CMA_OWNERS]
                if high:
                    if (tag & 2) and prandom_u32(C) % 1000 < W[W_P_THP_GFP_CMA]:
                        gfp |= GFP_CMA_
                else:
                    r3 = prandom_u32(C) % 1000
                    if r3 < W[W_P_FILE]:
                        kind = OW_FILE
                        if tag & 4:
                            gfp |= GFP_CMA_
                    elif r3 < W[W_P_FILE] + W[W_P_FILE_DIRTY]:
                        kind = OW_FILE_DIRTY
                        if tag & 8:
                            gfp |= GFP_CMA_
                    elif (tag & 1) or ((tag & 16) and order == 0):
                        gfp |= GFP_CMA_
            elif r2 < W[W_P_MOVABLE] + W[W_P_UNMOVABLE]:
                gfp = W[W_GFP_UNMOVABLE]
                kind = OW_SLAB
            else:
                gfp = W[W_GFP_RECLAIMABLE]
                kind = OW_SLAB_RECLAIMABLE
            prefetch_next_free(S, C, C[H_NLIVE] + 1)
            p = alloc_pages(S, C, cpu, order, gfp)
            W[W_ALLOCS] += 1
            if p < 0:
                W[W_ALLOC_FAIL] += 1
            else:
                live_add_owned(S, C, p, kind, order)
        else:
            k = mod_u32(prandom_u32(C), C[H_NLIVE])
            p = S[C[H_LIVE] + k]
            prefetch_next_free(S, C, C[H_NLIVE] - 1)
            folio_put_live(S, C, cpu, p, k)
            W[W_FREES] += 1
    return n


@kjit_inline
def mod_u32(x, m):
    """x % m for 0 <= x < 2**32 and 0 < m < 2**32 as a 32-bit unsigned division: the same value
    as the 64-bit signed one, several times cheaper (for speed)."""
    return np.int64(np.uint32(x) % np.uint32(m))


@kjit_inline
def prefetch_next_free(S, C, nlive):
    """Prefetch the page words the next event would touch if it frees, the live table then
    holding `nlive` blocks: its block is LIVE[draw % nlive], the draw being the third after the
    current PRNG state (CPU, coin, victim). A hint only, it changes nothing: a wrong guess (the
    next event allocates, an allocation failed, a swap-remove moved the entry) costs a wasted
    prefetch. The free's loads of a random block's words are the churn's largest cost (for speed).
    Interpreted, it does nothing (`PREFETCH_HINTS`): there is no
    prefetch to issue, and three more PRNG steps per event would only slow the reference mode."""
    if not PREFETCH_HINTS or nlive <= 0:
        return
    k = mod_u32(prandom_next(prandom_next(prandom_next(C[H_RNG]))), nlive)
    if k >= C[H_NLIVE]:
        return
    q = S[C[H_LIVE] + k]
    if q < 0 or q >= C[H_N]:
        return
    prefetch(S, NODE_W * q)  # page record: links, page word, owner word (one line)
    prefetch(S, C[H_HANDLE] + q)
    prefetch(S, C[H_UNMAPPED] + q)


GFP_CMA_OWNER_BITS = {"anon": 1, "thp": 2, "file": 4, "file_dirty": 8, "anon0": 16}  # anon0: order-0 anon only


def churn_params(machine, *, target_usage=0.80, p_order0=0.80, p_order13=0.15, high_order=9,
                 p_movable=0.70, p_unmovable=0.20, p_file=0.0, p_file_dirty=0.0, dt_ns=1000, gfp=None,
                 gfp_cma_owners=(), p_thp_gfp_cma=1.0):
    """Build the W array for `churn` (Python side; not compiled)."""
    from cmasim import gfp as g

    W = np.zeros(W_SIZE, dtype=np.int64)
    gfps = {"movable": g.GFP_HIGHUSER_MOVABLE, "unmovable": g.GFP_KERNEL,
            "reclaimable": g.GFP_KERNEL | g.BITS["__GFP_RECLAIMABLE"],
            "high_order_movable": g.GFP_HIGHUSER_MOVABLE | g.BITS["__GFP_COMP"]}
    gfps.update(gfp or {})
    vals = {W_TARGET_PERMILLE: round(target_usage * 1000), W_P_ORDER0: round(p_order0 * 1000),
            W_P_ORDER13: round(p_order13 * 1000), W_P_MOVABLE: round(p_movable * 1000),
            W_P_UNMOVABLE: round(p_unmovable * 1000), W_NCPU: machine.cfg.nr_cpus, W_DT_NS: dt_ns,
            W_GFP_MOVABLE: gfps["movable"], W_GFP_UNMOVABLE: gfps["unmovable"],
            W_GFP_RECLAIMABLE: gfps["reclaimable"], W_GFP_HIGH_ORDER_MOVABLE: gfps["high_order_movable"],
            W_MANAGED: machine.n_pages, W_HIGH_ORDER: high_order, W_P_FILE: round(p_file * 1000),
            W_P_FILE_DIRTY: round(p_file_dirty * 1000),
            W_GFP_CMA_OWNERS: sum(GFP_CMA_OWNER_BITS[o] for o in gfp_cma_owners),
            W_P_THP_GFP_CMA: round(p_thp_gfp_cma * 1000)}
    for k, v in vals.items():
        W[k] = v
    return W
