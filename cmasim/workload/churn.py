"""Mixed allocation churn generated inside the compiled core (the default scenario and `bench`).

Each step is one event: an allocation (order and migratetype drawn from the mix) or a free
of a uniformly random live block (swap-remove from a live array). Below the target usage
90% of steps allocate, above it 90% free, so memory hovers around the target. The PRNG is
a 32-bit xorshift kept in C[H_RNG], seeded explicitly: same seed, same run, compiled or not.

W (int64) layout: W_* header slots, then the live array of block-head pfns.
"""

from cmasim.mm.jit import kjit
from cmasim.mm.mmzone import H_CPU, H_NOW, H_RNG
from cmasim.mm.alloc_pages import alloc_pages, free_pages
from cmasim.mm.freelist import pi_order, pinfo
from cmasim.engine_core import advance_clock, trace_nearly_full

W_NLIVE = 0
W_LIVE_PAGES = 1
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
W_HDR = 24


@kjit
def prandom_u32(C):
    """xorshift32 (Marsaglia); state in C[H_RNG], never zero."""
    x = C[H_RNG]
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    C[H_RNG] = x
    return x


@kjit
def churn(S, C, W, n):
    """Run `n` churn events; returns the number done (less than n only to flush the trace)."""
    for i in range(n):
        if trace_nearly_full(C):
            return i
        advance_clock(S, C, C[H_NOW] + W[W_DT_NS])
        r = prandom_u32(C)
        cpu = r % W[W_NCPU]
        C[H_CPU] = cpu
        usage = W[W_LIVE_PAGES] * 1000
        below = usage < W[W_TARGET_PERMILLE] * W[W_MANAGED]
        coin = prandom_u32(C) % 10
        do_alloc = (coin < 9) if below else (coin == 0)
        if W[W_NLIVE] == 0:
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
                gfp = W[W_GFP_HIGH_ORDER_MOVABLE] if order == W[W_HIGH_ORDER] else W[W_GFP_MOVABLE]
            elif r2 < W[W_P_MOVABLE] + W[W_P_UNMOVABLE]:
                gfp = W[W_GFP_UNMOVABLE]
            else:
                gfp = W[W_GFP_RECLAIMABLE]
            p = alloc_pages(S, C, cpu, order, gfp)
            W[W_ALLOCS] += 1
            if p < 0:
                W[W_ALLOC_FAIL] += 1
            else:
                W[W_HDR + W[W_NLIVE]] = p
                W[W_NLIVE] += 1
                W[W_LIVE_PAGES] += 1 << order
        else:
            k = prandom_u32(C) % W[W_NLIVE]
            p = W[W_HDR + k]
            last = W[W_NLIVE] - 1
            W[W_HDR + k] = W[W_HDR + last]
            W[W_NLIVE] = last
            W[W_LIVE_PAGES] -= 1 << pi_order(pinfo(S, C, p))
            free_pages(S, C, cpu, p)
            W[W_FREES] += 1
    return n


def churn_params(machine, *, target_usage=0.80, p_order0=0.80, p_order13=0.15, high_order=9,
                 p_movable=0.70, p_unmovable=0.20, dt_ns=1000, capacity=None, gfp=None):
    """Build the W array for `churn` (Python side; not compiled)."""
    import numpy as np

    from cmasim import gfp as g

    managed = machine.n_pages
    cap = capacity if capacity is not None else managed + 16
    W = np.zeros(W_HDR + cap, dtype=np.int64)
    gfps = {"movable": g.GFP_HIGHUSER_MOVABLE, "unmovable": g.GFP_KERNEL,
            "reclaimable": g.GFP_KERNEL | g.BITS["__GFP_RECLAIMABLE"],
            "high_order_movable": g.GFP_HIGHUSER_MOVABLE | g.BITS["__GFP_COMP"]}
    gfps.update(gfp or {})
    vals = {W_TARGET_PERMILLE: round(target_usage * 1000), W_P_ORDER0: round(p_order0 * 1000),
            W_P_ORDER13: round(p_order13 * 1000), W_P_MOVABLE: round(p_movable * 1000),
            W_P_UNMOVABLE: round(p_unmovable * 1000), W_NCPU: machine.cfg.nr_cpus, W_DT_NS: dt_ns,
            W_GFP_MOVABLE: gfps["movable"], W_GFP_UNMOVABLE: gfps["unmovable"],
            W_GFP_RECLAIMABLE: gfps["reclaimable"], W_GFP_HIGH_ORDER_MOVABLE: gfps["high_order_movable"],
            W_MANAGED: managed, W_HIGH_ORDER: high_order}
    for k, v in vals.items():
        W[k] = v
    return W
