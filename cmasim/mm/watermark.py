"""Watermark arithmetic (mm/page_alloc.c __zone_watermark_ok() and friends).

Kernel: mm/page_alloc.c — wmark_pages(), __zone_watermark_unusable_free(),
__zone_watermark_ok(), zone_watermark_fast(), zone_watermark_ok(), zone_watermark_ok_safe().
Kept apart so that both the allocation path and the per-CPU free path (which clears
ZONE_BELOW_HIGH) can use it. The free counts are the folded vmstat counters
(zone_page_state(), `cmasim.mm.zone_stat`) where the kernel reads them, the snapshot in
zone_watermark_ok_safe() below the percpu_drift_mark.
"""

from cmasim.mm.jit import kjit, kjit_fixed, kjit_inline
from cmasim.mm.mmzone import (
    ALLOC_CMA, ALLOC_HIGHATOMIC, ALLOC_MIN_RESERVE, ALLOC_NON_BLOCK, ALLOC_OOM, ALLOC_RESERVES,
    ALLOC_WMARK_LOW, ALLOC_WMARK_MASK, ALLOC_WMARK_MIN, MIGRATE_CMA, MIGRATE_HIGHATOMIC, MIGRATE_PCPTYPES,
    NR_PAGE_ORDERS, Z_AREA, Z_BOOST, Z_LOWMEM, Z_NR_FREE_HIGHATOMIC, Z_VM_NR_FREE, Z_VM_NR_FREE_CMA,
    Z_WMARK_HIGH, Z_WMARK_LOW, Z_WMARK_MIN,
)
from cmasim.mm.zone_stat import percpu_drift_mark, zone_page_state, zone_page_state_snapshot
from cmasim.mm.freelist import free_list_id, list_empty, zone_base


@kjit_inline
def wmark_pages(C, zb, which):
    """wmark_pages(): the watermark plus the current boost."""
    if which == ALLOC_WMARK_MIN:
        m = C[zb + Z_WMARK_MIN]
    elif which == ALLOC_WMARK_LOW:
        m = C[zb + Z_WMARK_LOW]
    else:
        m = C[zb + Z_WMARK_HIGH]
    return m + C[zb + Z_BOOST]


@kjit_inline
def zone_watermark_unusable_free(C, zb, order, alloc_flags):
    """__zone_watermark_unusable_free(): 2^order-1, free highatomic (zone->nr_free_highatomic,
    exact), and free CMA without ALLOC_CMA (zone_page_state(NR_FREE_CMA_PAGES), folded).
    Kernel: mm/page_alloc.c __zone_watermark_unusable_free()."""
    unusable = (1 << order) - 1
    if not (alloc_flags & ALLOC_RESERVES):
        unusable += C[zb + Z_NR_FREE_HIGHATOMIC]
    if not (alloc_flags & ALLOC_CMA):
        unusable += zone_page_state(C, zb, Z_VM_NR_FREE_CMA)
    return unusable


@kjit_fixed
def __zone_watermark_ok(C, zslot, order, mark, highest, alloc_flags, free_pages):
    """__zone_watermark_ok(): order-0 arithmetic, then a suitable free block for order > 0."""
    zb = zone_base(C, zslot)
    mn = mark
    free_pages -= zone_watermark_unusable_free(C, zb, order, alloc_flags)
    if alloc_flags & ALLOC_RESERVES:
        if alloc_flags & ALLOC_MIN_RESERVE:
            mn -= mn // 2
            if alloc_flags & ALLOC_NON_BLOCK:
                mn -= mn // 4
        if alloc_flags & ALLOC_OOM:
            mn -= mn // 2
    if free_pages <= mn + C[zb + Z_LOWMEM + highest]:
        return False
    if order == 0:
        return True
    for o in range(order, NR_PAGE_ORDERS):
        if C[zb + Z_AREA + o] == 0:
            continue
        for mt in range(MIGRATE_PCPTYPES):
            if not list_empty(C, free_list_id(C, zslot, o, mt)):
                return True
        if (alloc_flags & ALLOC_CMA) and not list_empty(C, free_list_id(C, zslot, o, MIGRATE_CMA)):
            return True
        if (alloc_flags & (ALLOC_HIGHATOMIC | ALLOC_OOM)) and not list_empty(
                C, free_list_id(C, zslot, o, MIGRATE_HIGHATOMIC)):
            return True
    return False


@kjit_inline
def zone_watermark_fast(C, zslot, order, mark, highest, alloc_flags):
    """zone_watermark_fast(): the order-0 shortcut, then __zone_watermark_ok(), on the folded
    zone_page_state(NR_FREE_PAGES). Kernel: mm/page_alloc.c zone_watermark_fast()."""
    zb = zone_base(C, zslot)
    free_pages = zone_page_state(C, zb, Z_VM_NR_FREE)
    if order == 0:
        reserved = zone_watermark_unusable_free(C, zb, 0, alloc_flags)
        usable = free_pages - (reserved if reserved < free_pages else free_pages)
        if usable > mark + C[zb + Z_LOWMEM + highest]:
            return True
    if __zone_watermark_ok(C, zslot, order, mark, highest, alloc_flags, free_pages):
        return True
    if (order == 0 and (alloc_flags & ALLOC_MIN_RESERVE) and C[zb + Z_BOOST] > 0
            and (alloc_flags & ALLOC_WMARK_MASK) == ALLOC_WMARK_MIN):
        return __zone_watermark_ok(C, zslot, order, C[zb + Z_WMARK_MIN], highest, alloc_flags, free_pages)
    return False




@kjit
def zone_watermark_ok(C, zslot, order, mark, highest, alloc_flags):
    """zone_watermark_ok(): __zone_watermark_ok() on the folded zone_page_state(NR_FREE_PAGES).
    Kernel: mm/page_alloc.c zone_watermark_ok()."""
    free_pages = zone_page_state(C, zone_base(C, zslot), Z_VM_NR_FREE)
    return __zone_watermark_ok(C, zslot, order, mark, highest, alloc_flags, free_pages)


@kjit
def free_pages_safe(C, zb):
    """The free count zone_watermark_ok_safe() and pgdat_balanced() use: the folded
    NR_FREE_PAGES, or the snapshot (folded + every CPU's diff) when the zone has a
    percpu_drift_mark and the folded value is below it. Kernel: mm/page_alloc.c
    zone_watermark_ok_safe(), mm/vmscan.c pgdat_balanced()."""
    free_pages = zone_page_state(C, zb, Z_VM_NR_FREE)
    mark = percpu_drift_mark(C, zb)
    if mark > 0 and free_pages < mark:
        free_pages = zone_page_state_snapshot(C, zb, Z_VM_NR_FREE)
    return free_pages


@kjit
def zone_watermark_ok_safe(C, zslot, order, mark, highest):
    """zone_watermark_ok_safe(): __zone_watermark_ok() with alloc_flags 0 on `free_pages_safe`.
    Kernel: mm/page_alloc.c zone_watermark_ok_safe()."""
    return __zone_watermark_ok(C, zslot, order, mark, highest, 0, free_pages_safe(C, zone_base(C, zslot)))
