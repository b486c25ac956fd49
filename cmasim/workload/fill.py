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

from cmasim.mm.jit import kjit, kjit_inline
import numpy as np

from cmasim.mm.mmzone import (
    H_CAND, H_CPU, H_LIVE, H_NCAND, H_NCAND_CAP, H_NCPU, H_NLIVE, H_NZONES, H_UNMAPPED, HPAGE_PMD_ORDER,
    MIGRATE_CMA, OW_ANON, OW_KIND_MASK, Z_NR_FREE,
    NODE_W, F_OWNER,
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


@kjit_inline
def touch_anon_page(S, C, cpu, gfp):
    """One anonymous page fault on `cpu`: allocate, own and track an order-0 page; False if it failed.
    Inlined into its callers (kjit_inline): not compiled as a library of its own, which would
    generate its whole call tree once more in a cold compile (docs/performance.md)."""
    C[H_CPU] = cpu
    p = alloc_pages(S, C, cpu, 0, gfp)
    if p < 0:
        return False
    S[NODE_W * p + F_OWNER] = OW_ANON
    live_add(S, C, p)
    return True


# The order-0 fault loops called from Python share one compiled entry point (`anon_faults`).
ANON_FILL = 0
ANON_RECYCLE = 1
ANON_TOUCH = 2


@kjit
def anon_faults(S, C, op, a, gfp, b):
    """The order-0 anonymous fault loops, one compiled function: `fill_anon` (op ANON_FILL,
    a = free_target, b = max_pages), `recycle_anon` (ANON_RECYCLE, a = pages) and
    `touch_anon_pages` (ANON_TOUCH, a = pages). Each compiled function called from Python is a
    library of its own holding another copy of the allocator it reaches (alloc_pages() and
    below), the cold compile's main cost (docs/performance.md); the Python functions of the
    same names call this one."""
    if op == ANON_FILL:
        return _fill_anon(S, C, a, gfp, b)
    if op == ANON_RECYCLE:
        return _recycle_anon(S, C, a, gfp)
    return _touch_anon_pages(S, C, a, gfp)


def fill_anon(S, C, free_target, gfp, max_pages):
    """Allocate anonymous order-0 pages (round-robin over CPUs) until NR_FREE_PAGES <= free_target
    or max_pages were taken or an allocation fails. Returns pages allocated (`anon_faults`)."""
    return anon_faults(S, C, ANON_FILL, free_target, gfp, max_pages)


def recycle_anon(S, C, pages, gfp):
    """Free about `pages` pages of random anonymous live blocks, then allocate as many again
    (`anon_faults`)."""
    return anon_faults(S, C, ANON_RECYCLE, pages, gfp, 0)


def touch_anon_pages(S, C, pages, gfp):
    """retouch(): fault `pages` anonymous pages again (round-robin CPUs); returns pages faulted
    (`anon_faults`)."""
    return anon_faults(S, C, ANON_TOUCH, pages, gfp, 0)


@kjit_inline
def _fill_anon(S, C, free_target, gfp, max_pages):
    """fill_anon()'s loop (inlined into `anon_faults`)."""
    n = 0
    cpus = C[H_NCPU]
    while total_free(C) > free_target and n < max_pages:
        if not touch_anon_page(S, C, n % cpus, gfp):
            break
        n += 1
    return n


@kjit_inline
def _recycle_anon(S, C, pages, gfp):
    """recycle_anon()'s loops (inlined into `anon_faults`)."""
    freed = 0
    tries = 0
    while freed < pages and C[H_NLIVE] > 0 and tries < 16 * pages + 64:
        tries += 1
        p = S[C[H_LIVE] + prandom_u32(C) % C[H_NLIVE]]
        if (S[NODE_W * p + F_OWNER] & OW_KIND_MASK) != OW_ANON:
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
    return p >= 0 and (S[NODE_W * p + F_OWNER] & OW_KIND_MASK) == OW_ANON


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


@kjit_inline
def _touch_anon_pages(S, C, pages, gfp):
    """touch_anon_pages()'s loop (inlined into `anon_faults`)."""
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


# --- THP fill (machine.thp = "always"; issue 9 item 5) -------------------------------------------
# The tool's fill is one anonymous mmap touched page by page (oracle-tool.c cmd_run()). With THP
# "always" the first touch of every PMD-sized (2 MiB) region faults a THP; whether a region is
# PMD-mapped or PTE-mapped decides how its later drops and re-touches behave. A fill block is a
# region when it is an order-9 folio (PMD-mapped until part of it is dropped) and a single
# PTE-mapped page otherwise. Simplification: every region is PMD-aligned (the 6.1 mmap of an
# anonymous range is not THP-aligned, so its first and last partial 2 MiB are 4 KiB pages there),
# and khugepaged never collapses the PTE-mapped regions (it scans 4096 pages every 10 s).


@kjit_inline
def do_huge_pmd_anonymous_page(S, C, cpu, thp_gfp):
    """The first write to an empty PMD-sized region of a THP "always" mapping: an order-9
    folio with the vma_thp_gfp_mask() flags, mapped by the PMD; False when the allocation
    failed (the fault falls back to do_anonymous_page(), thp_fault_fallback).
    Kernel: mm/huge_memory.c do_huge_pmd_anonymous_page() (v6.1).
    Inlined into its callers (kjit_inline): not compiled as a library of its own, which would
    generate its whole call tree once more in a cold compile (docs/performance.md)."""
    C[H_CPU] = cpu
    p = alloc_pages(S, C, cpu, HPAGE_PMD_ORDER, thp_gfp)
    if p < 0:
        return False
    S[NODE_W * p + F_OWNER] = OW_ANON
    S[C[H_UNMAPPED] + p] = 0
    live_add(S, C, p)
    return True


@kjit_inline
def fault_anon_region(S, C, cpu, gfp, thp_gfp, pages):
    """Touch a region of `pages` not-present pages: a whole empty PMD region (pages = 512)
    tries a THP first; otherwise, or after the THP fallback, one order-0 page per 4 KiB
    (mm/memory.c __handle_mm_fault(): create_huge_pmd() -> do_huge_pmd_anonymous_page(),
    VM_FAULT_FALLBACK -> handle_pte_fault() -> do_anonymous_page(); once the PMD points to a
    page table the region's later faults are 4 KiB ones). Returns pages faulted.
    Inlined into its callers (kjit_inline): not compiled as a library of its own, which would
    generate its whole call tree once more in a cold compile (docs/performance.md)."""
    if thp_gfp != 0 and pages == 1 << HPAGE_PMD_ORDER:
        if do_huge_pmd_anonymous_page(S, C, cpu, thp_gfp):
            return pages
    got = 0
    while got < pages:
        if not touch_anon_page(S, C, cpu, gfp):
            break
        got += 1
    return got


@kjit
def fill_anon_thp(S, C, free_target, gfp, thp_gfp, max_pages):
    """fill_anon() for a THP "always" mapping: region by region (round-robin CPUs), a THP
    where a whole region still fits above `free_target`, 4 KiB pages for the rest. Returns
    pages allocated."""
    n = 0
    k = 0
    cpus = C[H_NCPU]
    nr = 1 << HPAGE_PMD_ORDER
    while n < max_pages:
        free = total_free(C)
        if free <= free_target:
            break
        pages = nr if free - free_target >= nr else 1
        got = fault_anon_region(S, C, k % cpus, gfp, thp_gfp, pages)
        n += got
        k += 1
        if got < pages:
            break
    return n


@kjit
def mapped_pages(S, C, p):
    """Pages of the fill block headed at p its owner still maps."""
    return (1 << pi_order(pinfo(S, C, p))) - S[C[H_UNMAPPED] + p]


@kjit
def drop_outside_cma_thp(S, C, pages, out):
    """drop_noncma() over a fill of THPs and 4 KiB pages: MADV_DONTNEED of up to `pages`
    mapped pages outside CMA pageblocks, walking the live handles from a random start
    (madv_dontneed_fill(); returns pages dropped, out as there)."""
    return madv_dontneed_fill(S, C, pages, True, out)


@kjit
def madv_dontneed_fill(S, C, pages, outside_cma_only, out):
    """MADV_DONTNEED of up to `pages` mapped fill pages (only those outside CMA pageblocks
    when `outside_cma_only`: the tool's drop_noncma(); all of them: its -R churn, which drops
    a random run of the mapping), walking the live handles from a random start.

    * a 4 KiB page: freed;
    * a PMD-mapped THP covered whole: freed whole (mm/memory.c zap_pmd_range() ->
      zap_huge_pmd()); its region is empty again and the re-touch faults a THP;
    * part of a THP (the walk's first folio: the random start lands inside it, a uniform
      share of its mapped pages; the last one: what is left to drop): the PMD is split and
      only the PTEs are zapped (zap_pmd_range() -> __split_huge_pmd()); nothing is freed, the
      folio goes on the deferred split queue (mm/rmap.c page_remove_rmap() ->
      deferred_split_huge_page()) and its unmapped count grows (cmasim.mm.folio UNMAPPED);
    * the rest of a partly unmapped THP: its last mapping goes, the folio is freed whole.

    Pages of a PTE-mapped region are re-touched as 4 KiB pages. Writes out[0] = 4 KiB pages
    to re-touch, out[1] = empty PMD regions to re-touch; returns pages dropped."""
    out[0] = 0
    out[1] = 0
    n = C[H_NLIVE]
    if n <= 0 or pages <= 0:
        return 0
    picked = np.empty(min(n, pages), dtype=np.int64)
    npick = 0
    got = 0
    first = True
    start = prandom_u32(C) % n
    live = C[H_LIVE]
    U = C[H_UNMAPPED]
    for k in range(n):
        p = S[live + (start + k) % n]
        if not is_anon(S, C, p):
            continue
        if outside_cma_only and get_pageblock_type_bits(S, C, p) == MIGRATE_CMA:
            continue
        order = pi_order(pinfo(S, C, p))
        mapped = mapped_pages(S, C, p)
        take = min(mapped, pages - got)
        if first and order > 0 and take > 1:
            take = 1 + prandom_u32(C) % take
        first = False
        if take == mapped:
            if order > 0 and S[U + p] == 0:
                out[1] += 1
            else:
                out[0] += take
            picked[npick] = p
            npick += 1
        else:
            S[U + p] += take
            out[0] += take
        got += take
        if got == pages:
            break
    cpus = C[H_NCPU]
    for i in range(npick):
        folio_put(S, C, i % cpus, picked[i])
    return got


@kjit
def touch_anon_regions(S, C, gfp, thp_gfp, loose, regions):
    """retouch() after drop_outside_cma_thp(): `regions` empty PMD regions (a THP each, or
    512 4 KiB pages after a fallback) and `loose` pages of PTE-mapped regions (4 KiB each),
    interleaved in proportion (the tool touches them in address order). Returns pages."""
    got = 0
    k = 0
    nr = 1 << HPAGE_PMD_ORDER
    cpus = C[H_NCPU]
    while regions > 0 or loose > 0:
        if regions > 0 and regions * nr >= loose:
            want = nr
            g = fault_anon_region(S, C, k % cpus, gfp, thp_gfp, nr)
            regions -= 1
        else:
            want = 1
            g = fault_anon_region(S, C, k % cpus, gfp, thp_gfp, 1)
            loose -= 1
        got += g
        k += 1
        if g < want:
            break
    return got


@kjit
def rescan_candidates_thp(S, C):
    """scan_fill() over a fill with THPs: one candidate entry per mapped page in CMA (the
    tool lists virtual pages from /proc/self/pagemap, so a THP weighs its mapped pages);
    returns how many pages (fill_pages_in_cma)."""
    n = 0
    cap = C[H_NCAND_CAP]
    live = C[H_LIVE]
    base = C[H_CAND]
    for h in range(C[H_NLIVE]):
        p = S[live + h]
        if is_anon(S, C, p) and get_pageblock_type_bits(S, C, p) == MIGRATE_CMA:
            for _ in range(mapped_pages(S, C, p)):
                if n < cap:
                    C[base + n] = h
                n += 1
    C[H_NCAND] = min(n, cap)
    return n
