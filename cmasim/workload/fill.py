"""Memory fill and recycle steps (the oracle's set-up: fill with anonymous memory until a
given amount is free; before each cma_alloc free part of the fill and touch it again).

Both allocate order-0 GFP_HIGHUSER_MOVABLE anonymous pages through the normal allocator,
so the CMA balancing rule decides how much of the fill is borrowed from CMA.
"""

from cmasim.mm.jit import kjit
from cmasim.mm.mmzone import H_CPU, H_LIVE, H_NCPU, H_NLIVE, H_NZONES, H_OWNER, OW_ANON, OW_KIND_MASK, Z_NR_FREE
from cmasim.mm.alloc_pages import alloc_pages
from cmasim.mm.folio import folio_put, live_add
from cmasim.mm.freelist import pi_order, pinfo, zone_base
from cmasim.mm.prandom import prandom_u32


@kjit
def total_free(C):
    n = 0
    for z in range(C[H_NZONES]):
        n += C[zone_base(C, z) + Z_NR_FREE]
    return n


@kjit
def touch_anon_page(S, C, cpu, gfp):
    """One anonymous page fault on `cpu`: allocate, own and track an order-0 page; False if it failed."""
    C[H_CPU] = cpu
    p = alloc_pages(S, C, cpu, 0, gfp)
    if p < 0:
        return False
    S[C[H_OWNER] + p] = OW_ANON
    live_add(S, C, p)
    return True


@kjit
def fill_anon(S, C, free_target, gfp, max_pages):
    """Allocate anonymous order-0 pages (round-robin over CPUs) until NR_FREE_PAGES <= free_target
    or max_pages were taken or an allocation fails. Returns pages allocated."""
    n = 0
    cpus = C[H_NCPU]
    while total_free(C) > free_target and n < max_pages:
        if not touch_anon_page(S, C, n % cpus, gfp):
            break
        n += 1
    return n


@kjit
def recycle_anon(S, C, pages, gfp):
    """Free about `pages` pages of random anonymous live blocks, then allocate as many again."""
    freed = 0
    tries = 0
    while freed < pages and C[H_NLIVE] > 0 and tries < 16 * pages + 64:
        tries += 1
        p = S[C[H_LIVE] + prandom_u32(C) % C[H_NLIVE]]
        if (S[C[H_OWNER] + p] & OW_KIND_MASK) != OW_ANON:
            continue
        freed += 1 << pi_order(pinfo(S, C, p))
        folio_put(S, C, freed % C[H_NCPU], p)
    got = 0
    while got < freed:
        if not touch_anon_page(S, C, got % C[H_NCPU], gfp):
            break
        got += 1
    return got
