"""Pageblock isolation: take pageblocks out of the allocator while a range is claimed.

Kernel: mm/page_isolation.c — set_migratetype_isolate(), has_unmovable_pages(),
unset_migratetype_isolate(), start_isolate_page_range(), undo_isolate_page_range(),
test_pages_isolated(); mm/page_alloc.c move_freepages_block_isolate(), find_large_buddy(),
split_large_buddy().

v6.17+ layout: isolation sets a standalone bit, so the underlying type (CMA, MOVABLE)
survives and is restored by clearing the bit. Free pages of an isolated block sit on the
ISOLATE free lists and are not counted in NR_FREE_PAGES.
"""

from cmasim.mm.jit import kjit
from cmasim.mm.mmzone import (
    H_PB, MAX_PAGE_ORDER, MIGRATE_CMA, MIGRATE_ISOLATE, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER,
    PB_ISOLATE, PG_ALLOC, PG_BUDDY, PG_TAIL, TR_TEST_PAGES_ISOLATED, Z_END, Z_NR_ISOLATE_PB, Z_START,
)
from cmasim.mm.folio import folio_is_movable, owner
from cmasim.mm.freelist import (
    __del_page_from_free_list, del_page_from_free_list, free_list_mt, get_pageblock_type_bits,
    get_pfnblock_migratetype, pi_list, pi_order, pi_state, pinfo, trace_emit, zone_base,
)
from cmasim.mm.page_alloc import __free_one_page, block_head, move_freepages_block

EBUSY = -16


@kjit
def is_isolated(S, C, p):
    return (S[C[H_PB] + (p >> PAGEBLOCK_ORDER)] & PB_ISOLATE) != 0


@kjit
def set_isolate_bit(S, C, p, on):
    i = C[H_PB] + (p >> PAGEBLOCK_ORDER)
    if on:
        S[i] = S[i] | PB_ISOLATE
    else:
        S[i] = S[i] & ~PB_ISOLATE


@kjit
def has_unmovable_pages(S, C, zb, start):
    """has_unmovable_pages(): an allocated block that cannot move sits in the pageblock."""
    end = start + PAGEBLOCK_NR_PAGES
    pfn = start
    if pi_state(pinfo(S, C, pfn)) == PG_TAIL:
        pfn = block_head(S, C, zb, pfn)
    while pfn < end:
        w = pinfo(S, C, pfn)
        st = pi_state(w)
        if st == PG_ALLOC and not folio_is_movable(owner(S, C, pfn)):
            return True
        pfn += 1 << pi_order(w)
    return False


@kjit
def move_freepages_block_isolate(S, C, zslot, start, isolate):
    """move_freepages_block_isolate(): move the block's free pages to/from the ISOLATE lists.

    A free buddy larger than a pageblock that covers this block is split pageblock by
    pageblock (split_large_buddy()) after the bit changes, so each half goes where its
    own pageblock type says.
    """
    zb = zone_base(C, zslot)
    head = start
    if pi_state(pinfo(S, C, start)) == PG_TAIL:
        head = block_head(S, C, zb, start)
    w = pinfo(S, C, head)
    if head >= 0 and pi_state(w) == PG_BUDDY and pi_order(w) > PAGEBLOCK_ORDER:
        order = pi_order(w)
        del_page_from_free_list(S, C, zslot, head, order, free_list_mt(C, pi_list(w)))
        set_isolate_bit(S, C, start, isolate)
        pfn = head
        while pfn < head + (1 << order):
            __free_one_page(S, C, zslot, pfn, PAGEBLOCK_ORDER, get_pfnblock_migratetype(S, C, pfn), False)
            pfn += PAGEBLOCK_NR_PAGES
        return
    if isolate:
        move_freepages_block(S, C, zslot, start, MIGRATE_ISOLATE)
        set_isolate_bit(S, C, start, True)
    else:
        set_isolate_bit(S, C, start, False)
        move_freepages_block(S, C, zslot, start, get_pageblock_type_bits(S, C, start))


@kjit
def set_migratetype_isolate(S, C, zslot, start, cma_request):
    """set_migratetype_isolate(): isolate one pageblock or return -EBUSY.

    For a CMA request on a CMA pageblock the unmovable-page check is skipped entirely;
    for other requests a CMA block counts as unmovable.
    """
    zb = zone_base(C, zslot)
    if is_isolated(S, C, start):
        return EBUSY
    mt = get_pageblock_type_bits(S, C, start)
    if not (cma_request and mt == MIGRATE_CMA):
        if mt == MIGRATE_CMA or has_unmovable_pages(S, C, zb, start):
            return EBUSY
    move_freepages_block_isolate(S, C, zslot, start, True)
    C[zb + Z_NR_ISOLATE_PB] += 1
    return 0


@kjit
def unset_migratetype_isolate(S, C, zslot, start):
    """unset_migratetype_isolate(): restore the type; re-free a whole free pageblock so it can merge."""
    zb = zone_base(C, zslot)
    w = pinfo(S, C, start)
    if pi_state(w) == PG_BUDDY:
        order = pi_order(w)
        if order >= PAGEBLOCK_ORDER and order < MAX_PAGE_ORDER:
            buddy = start ^ (1 << order)
            if buddy >= C[zb + Z_START] and buddy < C[zb + Z_END]:
                wb = pinfo(S, C, buddy)
                if pi_state(wb) == PG_BUDDY and pi_order(wb) == order and not is_isolated(S, C, buddy):
                    # __isolate_free_page() + __putback_isolated_page(): off the ISOLATE list, back via merge.
                    __del_page_from_free_list(S, C, zslot, start, order, MIGRATE_ISOLATE)
                    set_isolate_bit(S, C, start, False)
                    C[zb + Z_NR_ISOLATE_PB] -= 1
                    __free_one_page(S, C, zslot, start, order, get_pfnblock_migratetype(S, C, start), True)
                    return
    move_freepages_block_isolate(S, C, zslot, start, False)
    C[zb + Z_NR_ISOLATE_PB] -= 1


@kjit
def undo_isolate_page_range(S, C, zslot, start, end):
    """undo_isolate_page_range(): unisolate every isolated pageblock of [start, end)."""
    pfn = start & ~(PAGEBLOCK_NR_PAGES - 1)
    while pfn < end:
        if is_isolated(S, C, pfn):
            unset_migratetype_isolate(S, C, zslot, pfn)
        pfn += PAGEBLOCK_NR_PAGES


@kjit
def start_isolate_page_range(S, C, zslot, start, end, cma_request):
    """start_isolate_page_range(): isolate every pageblock touching [start, end), or undo and fail."""
    pb0 = start & ~(PAGEBLOCK_NR_PAGES - 1)
    pfn = pb0
    while pfn < end:
        if set_migratetype_isolate(S, C, zslot, pfn, cma_request) != 0:
            q = pb0
            while q < pfn:
                unset_migratetype_isolate(S, C, zslot, q)
                q += PAGEBLOCK_NR_PAGES
            return EBUSY
        pfn += PAGEBLOCK_NR_PAGES
    return 0


@kjit
def test_pages_isolated(S, C, start, end):
    """test_pages_isolated(): the first pfn in [start, end) that is not free in an isolated
    pageblock (end when the whole range is). Emits the test_pages_isolated tracepoint."""
    pfn = start & ~(PAGEBLOCK_NR_PAGES - 1)
    fin = end
    while pfn < end:
        if not is_isolated(S, C, pfn):
            fin = pfn if pfn > start else start
            trace_emit(C, TR_TEST_PAGES_ISOLATED, start, end, fin, 0, 0, 0, 0)
            return fin
        pfn += PAGEBLOCK_NR_PAGES
    pfn = start
    while pfn < end:
        w = pinfo(S, C, pfn)
        if pi_state(w) != PG_BUDDY:
            fin = pfn
            break
        pfn += 1 << pi_order(w)
    trace_emit(C, TR_TEST_PAGES_ISOLATED, start, end, fin, 0, 0, 0, 0)
    return fin
