"""Memory fill and recycle steps (the oracle's set-up: fill with anonymous memory until a
given amount is free; before each cma_alloc free part of the fill and touch it again).

Both allocate order-0 GFP_HIGHUSER_MOVABLE anonymous pages through the normal allocator,
so the CMA balancing rule decides how much of the fill is borrowed from CMA.

The oracle's re-borrow cycle (tools/oracle-tool.c drop_noncma(), retouch(), scan_fill()):
`drop_outside_cma` frees fill pages that sit outside CMA (MADV_DONTNEED), `touch_anon_pages`
faults as many again (they land in CMA first while the balancing rule says so) and
`rescan_candidates` records which fill handles sit in CMA (the pinners' candidate list);
`release_anon` frees the whole fill (the tool's process exit).
Simplification: the tool drops a run of consecutive virtual pages from a random start; the
model walks the live handles from a random start (their order is allocation order, mixed
by earlier drops).
"""

from cmasim.mm.jit import kjit
import numpy as np

from cmasim.mm.mmzone import (
    H_CAND, H_CPU, H_LIVE, H_NCAND, H_NCAND_CAP, H_NCPU, H_NLIVE, H_NZONES, H_OWNER, MIGRATE_CMA, OW_ANON,
    OW_KIND_MASK, Z_NR_FREE,
)
from cmasim.mm.alloc_pages import alloc_pages
from cmasim.mm.folio import folio_put, live_add
from cmasim.mm.freelist import get_pageblock_type_bits, pi_order, pinfo, zone_base
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


@kjit
def is_anon(S, C, p):
    return p >= 0 and (S[C[H_OWNER] + p] & OW_KIND_MASK) == OW_ANON


@kjit
def drop_outside_cma(S, C, pages):
    """drop_noncma(): free up to `pages` anonymous order-0 fill pages that sit outside CMA
    pageblocks, walking the live handles from a random start. Returns pages dropped."""
    n = C[H_NLIVE]
    if n <= 0 or pages <= 0:
        return 0
    picked = np.empty(pages, dtype=np.int64)
    got = 0
    start = prandom_u32(C) % n
    live = C[H_LIVE]
    for k in range(n):
        p = S[live + (start + k) % n]
        if not is_anon(S, C, p) or pi_order(pinfo(S, C, p)) != 0:
            continue
        if get_pageblock_type_bits(S, C, p) == MIGRATE_CMA:
            continue
        picked[got] = p
        got += 1
        if got == pages:
            break
    cpus = C[H_NCPU]
    for i in range(got):
        folio_put(S, C, i % cpus, picked[i])
    return got


@kjit
def touch_anon_pages(S, C, pages, gfp):
    """retouch(): fault `pages` anonymous pages again (round-robin CPUs); returns pages faulted."""
    got = 0
    while got < pages:
        if not touch_anon_page(S, C, got % C[H_NCPU], gfp):
            break
        got += 1
    return got


@kjit
def rescan_candidates(S, C):
    """scan_fill(): the candidate list becomes the live anonymous handles whose block sits
    in a CMA pageblock; returns how many (the tool's fill_pages_in_cma)."""
    n = 0
    cap = C[H_NCAND_CAP]
    live = C[H_LIVE]
    base = C[H_CAND]
    for h in range(C[H_NLIVE]):
        p = S[live + h]
        if is_anon(S, C, p) and get_pageblock_type_bits(S, C, p) == MIGRATE_CMA:
            if n < cap:
                C[base + n] = h
            n += 1
    C[H_NCAND] = min(n, cap)
    return n


@kjit
def release_anon(S, C):
    """The fill's owner exits: free every live anonymous block (pinned ones at unpin)."""
    freed = 0
    i = C[H_NLIVE] - 1
    while i >= 0:
        if i < C[H_NLIVE]:
            p = S[C[H_LIVE] + i]
            if is_anon(S, C, p):
                freed += 1 << pi_order(pinfo(S, C, p))
                folio_put(S, C, i % C[H_NCPU], p)
        i -= 1
    C[H_NCAND] = 0
    return freed
