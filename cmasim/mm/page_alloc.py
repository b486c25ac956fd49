"""The buddy allocator: merging on free, splitting on allocation, migratetype fallback.

Kernel: mm/page_alloc.c — __free_one_page, buddy_merge_likely, split_large_buddy,
__free_pages_ok/free_one_page, expand, page_del_and_expand, __rmqueue_smallest,
fallbacks[], find_suitable_fallback, should_try_claim_block (was can_steal_fallback),
boost_watermark, prep_move_freepages_block, __move_freepages_block, try_to_claim_block,
__rmqueue_claim, __rmqueue_steal, __rmqueue (v6.15+ rmqueue_mode), and the v6.1
__rmqueue_fallback/steal_suitable_fallback/move_freepages_block.

Two rule sets, chosen by the policy's ``PL_VERSION``:
* >= 610 ("freelist hygiene", v6.10+) with the v6.15 claim/steal split for >= 615
  (linux-6.18). Free lists always match their pageblock type.
* 601 (linux-6.1): fallback moves free pages to the requester's lists (a free list can
  disagree with its pageblock's type); merges never retype pageblocks.

Simplifications (docs/model.md): no compaction capture, no guard pages, no page
reporting, no shuffling; highatomic reserves are never created (the lists exist).
"""

from cmasim.mm.jit import PREFETCH_HINTS, kjit, kjit_fixed, kjit_inline, prefetch
from cmasim.mm.mmzone import (
    H_LAST_MT, H_POL, H_RMQM,
    MAX_PAGE_ORDER, MIGRATE_CMA, MIGRATE_HIGHATOMIC, MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES, MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE, NR_PAGE_ORDERS, PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER, PG_ALLOC, PG_BUDDY, PG_TAIL, PL_BOOST_FACTOR, PL_FALLBACK,
    TR_MM_PAGE_ALLOC_EXTFRAG, TR_MM_PAGE_ALLOC_ZONE_LOCKED,
    ALLOC_KSWAPD, ALLOC_NOFRAGMENT, ALLOC_CMA,
    VM_CLAIMS, VM_CMA_ALLOCS, VM_EXTFRAG, VM_MERGES, VM_SPLITS, VM_STEALS,
    Z_AREA, Z_BOOST, Z_END, Z_FLAGS, Z_MANAGED, Z_START, Z_VM_NR_FREE, Z_VM_NR_FREE_CMA, Z_WMARK_HIGH,
    ZONE_BOOSTED_WATERMARK, PL_CMA_NUM, PL_CMA_DEN, PL_CMA_BALANCE_MODE, PL_CMA_FIRST_RMQUEUE, PL_CMA_STAGE,
    Z_WMARK_LOW,
    NODE_W,
)
from cmasim.mm.freelist import (
    __add_to_free_list, __del_page_from_free_list, account_freepages, change_pageblock_range, clear_pinfo,
    del_page_from_free_list, free_list_id, get_pageblock_type_bits, get_pfnblock_migratetype,
    list_empty, list_first, migratetype_is_mergeable, move_to_free_list, pi_aux, pi_list, pi_order,
    pi_state, pinfo, policy_version, set_pageblock_migratetype, trace_emit, vm_add, zone_base,
    free_list_mt,
)
from cmasim.mm.zone_stat import zone_page_state

RMQUEUE_NORMAL = 0
RMQUEUE_CMA = 1
RMQUEUE_CLAIM = 2
RMQUEUE_STEAL = 3


# --- freeing ------------------------------------------------------------------------------------
@kjit_inline
def page_is_buddy_of_order(S, C, zb, q, order):
    """find_buddy_page_pfn()/page_is_buddy(): `q` is a free Buddy head of `order` in the zone."""
    if q < C[zb + Z_START] or q >= C[zb + Z_END]:
        return False
    w = pinfo(S, C, q)
    return pi_state(w) == PG_BUDDY and pi_order(w) == order


@kjit_inline
def buddy_merge_likely(S, C, zb, pfn, buddy_pfn, order):
    """buddy_merge_likely(): the order+1 buddy of the would-be merged block is free."""
    if order >= MAX_PAGE_ORDER - 1:
        return False
    higher = buddy_pfn & pfn
    return page_is_buddy_of_order(S, C, zb, higher ^ (1 << (order + 1)), order + 1)


@kjit_fixed
def __free_one_page(S, C, zslot, pfn, order, mt, to_tail):
    """__free_one_page(): merge with free buddies up to MAX_PAGE_ORDER and link the result.

    At order >= pageblock_order a buddy of a different type merges only if both types are
    mergeable (< MIGRATE_PCPTYPES). v6.10+: the buddy's pageblocks are retyped to `mt`
    on such a merge; v6.1 leaves them. Head placement unless FPI_TO_TAIL (`to_tail`) or
    buddy_merge_likely().
    """
    zb = zone_base(C, zslot)
    v = policy_version(C)
    clear_pinfo(S, C, pfn)  # it may still say PCP; it becomes a tail if it merges downward
    account_freepages(C, zb, 1 << order, mt)
    buddy_pfn = pfn
    while order < MAX_PAGE_ORDER:
        buddy_pfn = pfn ^ (1 << order)
        if not page_is_buddy_of_order(S, C, zb, buddy_pfn, order):
            break
        w = pinfo(S, C, buddy_pfn)
        list_mt = free_list_mt(C, pi_list(w))
        if order >= PAGEBLOCK_ORDER:
            buddy_mt = get_pfnblock_migratetype(S, C, buddy_pfn)
            if buddy_mt != mt and (not migratetype_is_mergeable(mt) or not migratetype_is_mergeable(buddy_mt)):
                break
            __del_page_from_free_list(S, C, zslot, buddy_pfn, order, list_mt)
            if buddy_mt != mt and v >= 610:
                change_pageblock_range(S, C, buddy_pfn, order, mt)
        else:
            __del_page_from_free_list(S, C, zslot, buddy_pfn, order, list_mt)
        # The buddy's pages were counted on its own list; re-count them on ours.
        if list_mt != mt:
            account_freepages(C, zb, -(1 << order), list_mt)
            account_freepages(C, zb, 1 << order, mt)
        vm_add(C, VM_MERGES, 1)
        pfn = buddy_pfn & pfn
        order += 1
    tail = to_tail
    if not tail:
        tail = buddy_merge_likely(S, C, zb, pfn, buddy_pfn, order)
    __add_to_free_list(S, C, zslot, pfn, order, mt, tail)


@kjit_fixed
def free_one_page(S, C, zslot, pfn, order, to_tail):
    """free_one_page()/split_large_buddy(): free straight to the buddy lists.

    v6.10+: a block larger than a pageblock is freed pageblock by pageblock, each with its
    own pageblock type. v6.1: one __free_one_page() with the first pageblock's type.
    """
    if policy_version(C) >= 610 and order > PAGEBLOCK_ORDER:
        end = pfn + (1 << order)
        while pfn < end:
            mt = get_pfnblock_migratetype(S, C, pfn)
            __free_one_page(S, C, zslot, pfn, PAGEBLOCK_ORDER, mt, to_tail)
            pfn += PAGEBLOCK_NR_PAGES
        return
    mt = get_pfnblock_migratetype(S, C, pfn)
    __free_one_page(S, C, zslot, pfn, order, mt, to_tail)


# --- allocation: splitting --------------------------------------------------------------------------
@kjit_fixed
def expand(S, C, zslot, p, low, high, mt):
    """expand(): put the upper halves of a split block on `mt`'s lists (head); return pages added."""
    size = 1 << high
    nr_added = 0
    while high > low:
        high -= 1
        size >>= 1
        __add_to_free_list(S, C, zslot, p + size, high, mt, False)
        nr_added += size
        vm_add(C, VM_SPLITS, 1)
    return nr_added


@kjit_fixed
def page_del_and_expand(S, C, zslot, p, low, high, mt):
    """page_del_and_expand(): take a free block off `mt`'s list, split it, account the difference."""
    nr = 1 << high
    __del_page_from_free_list(S, C, zslot, p, high, mt)
    nr -= expand(S, C, zslot, p, low, high, mt)
    account_freepages(C, zone_base(C, zslot), -nr, mt)


@kjit_inline
def pcp_allowed_order(order):
    """pcp_allowed_order(): orders 0..PAGE_ALLOC_COSTLY_ORDER and the THP order."""
    return order <= 3 or order == PAGEBLOCK_ORDER


@kjit_inline
def prefetch_take_next(S, C, lst):
    """A hint for the next __rmqueue_smallest() from the same free list (rmqueue_bulk() takes
    up to hundreds of blocks in a row): the list's new head, whose next link and page word
    the next take reads and clears (its prev link was just written), one page record. It is a
    cache miss on a random page otherwise, the list walked one dependent load after another;
    prefetched now, it overlaps with the refill's other work. Changes nothing. Compiled only
    (`PREFETCH_HINTS`): interpreted, it would only cost time."""
    nx = list_first(S, C, lst)
    if nx >= 0:
        prefetch(S, NODE_W * nx)  # its page record: links and page word, one line


@kjit_fixed
def __rmqueue_smallest(S, C, zslot, order, mt):
    """__rmqueue_smallest(): the head block of the smallest non-empty `mt` list >= order."""
    for cur in range(order, NR_PAGE_ORDERS):
        lst = free_list_id(C, zslot, cur, mt)
        p = list_first(S, C, lst)
        if p < 0:
            continue
        page_del_and_expand(S, C, zslot, p, order, cur, mt)
        if PREFETCH_HINTS:
            prefetch_take_next(S, C, lst)
        C[H_LAST_MT] = mt
        if mt == MIGRATE_CMA:
            vm_add(C, VM_CMA_ALLOCS, 1)
        refill = 1 if (pcp_allowed_order(order) and mt < MIGRATE_PCPTYPES) else 0
        trace_emit(C, TR_MM_PAGE_ALLOC_ZONE_LOCKED, p, order, mt, refill, 0, 0, 0)
        return p
    return -1


# --- fallback ---------------------------------------------------------------------------------------
@kjit_inline
def fallback_type(C, mt, i):
    """fallbacks[mt][i] from the policy record."""
    return C[C[H_POL] + PL_FALLBACK + mt * 2 + i]


@kjit_fixed
def should_try_claim_block(order, start_mt):
    """should_try_claim_block() (was can_steal_fallback()): whole-block conversion allowed."""
    if order >= PAGEBLOCK_ORDER:
        return True
    if order >= PAGEBLOCK_ORDER // 2 or start_mt == MIGRATE_RECLAIMABLE or start_mt == MIGRATE_UNMOVABLE:
        return True
    return False


@kjit_fixed
def find_suitable_fallback(S, C, zslot, order, mt):
    """find_suitable_fallback(): first fallback type (table order) with a block at `order`, or -1."""
    zb = zone_base(C, zslot)
    if C[zb + Z_AREA + order] == 0:
        return -1
    for i in range(MIGRATE_PCPTYPES - 1):
        fmt = fallback_type(C, mt, i)
        if not list_empty(C, free_list_id(C, zslot, order, fmt)):
            return fmt
    return -1


@kjit
def boost_watermark(C, zb):
    """boost_watermark(): raise the zone's watermark boost by a pageblock, up to HIGH*factor/10000."""
    factor = C[C[H_POL] + PL_BOOST_FACTOR]
    if factor == 0:
        return False
    if PAGEBLOCK_NR_PAGES * 4 > C[zb + Z_MANAGED]:
        return False
    max_boost = C[zb + Z_WMARK_HIGH] * factor // 10000
    if max_boost == 0:
        return False
    if max_boost < PAGEBLOCK_NR_PAGES:
        max_boost = PAGEBLOCK_NR_PAGES
    b = C[zb + Z_BOOST] + PAGEBLOCK_NR_PAGES
    C[zb + Z_BOOST] = b if b < max_boost else max_boost
    return True


@kjit
def block_head(S, C, zb, pfn):
    """The head of the block (free, per-CPU or allocated) covering `pfn` (find_large_buddy())."""
    q = pfn
    order = 0
    while pi_state(pinfo(S, C, q)) == PG_TAIL:
        order += 1
        if order > MAX_PAGE_ORDER:
            return -1
        q = pfn & ~((1 << order) - 1)
    return q


@kjit
def count_block_pages(S, C, zb, start):
    """prep_move_freepages_block() counting: (free pages, movable pages) of one pageblock.

    Movable = pages of allocated blocks whose request was MOVABLE (stand-in for PageLRU /
    __PageMovable). Walks block heads, so the cost is per block, not per page.
    Returns free * 65536 + movable.
    """
    end = start + PAGEBLOCK_NR_PAGES
    free = 0
    movable = 0
    pfn = start
    if pi_state(pinfo(S, C, pfn)) == PG_TAIL:
        h = block_head(S, C, zb, pfn)
        w = pinfo(S, C, h)
        if pi_state(w) == PG_ALLOC and pi_aux(w) == MIGRATE_MOVABLE:
            movable = PAGEBLOCK_NR_PAGES
        return movable
    while pfn < end:
        w = pinfo(S, C, pfn)
        st = pi_state(w)
        n = 1 << pi_order(w)
        if n > end - pfn:
            n = end - pfn
        if st == PG_BUDDY:
            free += n
        elif st == PG_ALLOC and pi_aux(w) == MIGRATE_MOVABLE:
            movable += n
        pfn += n
    return free * 65536 + movable


@kjit
def move_freepages_block(S, C, zslot, start, new_mt):
    """__move_freepages_block(): move every free block of the pageblock to new_mt (tail); return pages."""
    end = start + PAGEBLOCK_NR_PAGES
    moved = 0
    pfn = start
    while pfn < end:
        w = pinfo(S, C, pfn)
        n = 1 << pi_order(w)
        if pi_state(w) == PG_BUDDY:
            old = free_list_mt(C, pi_list(w))
            if old != new_mt:
                move_to_free_list(S, C, zslot, pfn, pi_order(w), old, new_mt)
            moved += n
        if pi_state(w) == PG_TAIL:
            n = 1
        pfn += n
    return moved


@kjit
def alike_pages(start_mt, block_type, free, movable):
    """try_to_claim_block()/steal_suitable_fallback(): pages compatible with the requester."""
    if start_mt == MIGRATE_MOVABLE:
        return movable
    if block_type == MIGRATE_MOVABLE:
        return PAGEBLOCK_NR_PAGES - (free + movable)
    return 0


@kjit_fixed
def extfrag(S, C, p, alloc_order, fallback_order, start_mt, fallback_mt):
    """mm_page_alloc_extfrag: change_ownership = pageblock type after == requester's type."""
    vm_add(C, VM_EXTFRAG, 1)
    owner = 1 if get_pageblock_type_bits(S, C, p) == start_mt else 0
    trace_emit(C, TR_MM_PAGE_ALLOC_EXTFRAG, p, alloc_order, fallback_order, start_mt, fallback_mt, owner, 0)


@kjit_fixed
def try_to_claim_block(S, C, zslot, p, cur, order, start_mt, block_type, alloc_flags):
    """try_to_claim_block() (v6.15+): convert the whole pageblock to start_mt, or fail (-1)."""
    zb = zone_base(C, zslot)
    if block_type == MIGRATE_HIGHATOMIC:
        return -1
    if cur >= PAGEBLOCK_ORDER:
        del_page_from_free_list(S, C, zslot, p, cur, block_type)
        change_pageblock_range(S, C, p, cur, start_mt)
        nr_added = expand(S, C, zslot, p, order, cur, start_mt)
        account_freepages(C, zb, nr_added, start_mt)
        C[H_LAST_MT] = start_mt
        return p
    if boost_watermark(C, zb) and (alloc_flags & ALLOC_KSWAPD):
        C[zb + Z_FLAGS] |= ZONE_BOOSTED_WATERMARK
    start = p & ~(PAGEBLOCK_NR_PAGES - 1)
    if start < C[zb + Z_START] or start + PAGEBLOCK_NR_PAGES > C[zb + Z_END]:
        return -1
    fm = count_block_pages(S, C, zb, start)
    free = fm // 65536
    movable = fm % 65536
    if free + alike_pages(start_mt, block_type, free, movable) >= (1 << (PAGEBLOCK_ORDER - 1)):
        move_freepages_block(S, C, zslot, start, start_mt)
        set_pageblock_migratetype(S, C, start, start_mt)
        return __rmqueue_smallest(S, C, zslot, order, start_mt)
    return -1


@kjit
def __rmqueue_claim(S, C, zslot, order, start_mt, alloc_flags):
    """__rmqueue_claim() (v6.15+): largest fallback block first; stop at unclaimable orders."""
    min_order = order
    if order < PAGEBLOCK_ORDER and (alloc_flags & ALLOC_NOFRAGMENT):
        min_order = PAGEBLOCK_ORDER
    cur = MAX_PAGE_ORDER
    while cur >= min_order:
        fmt = find_suitable_fallback(S, C, zslot, cur, start_mt)
        if fmt >= 0:
            if not should_try_claim_block(cur, start_mt):
                break
            p = list_first(S, C, free_list_id(C, zslot, cur, fmt))
            page = try_to_claim_block(S, C, zslot, p, cur, order, start_mt, fmt, alloc_flags)
            if page >= 0:
                vm_add(C, VM_CLAIMS, 1)
                extfrag(S, C, page, order, cur, start_mt, fmt)
                return page
        cur -= 1
    return -1


@kjit
def __rmqueue_steal(S, C, zslot, order, start_mt):
    """__rmqueue_steal() (v6.15+): smallest fallback block; the remainder stays on its own type."""
    for cur in range(order, NR_PAGE_ORDERS):
        fmt = find_suitable_fallback(S, C, zslot, cur, start_mt)
        if fmt < 0:
            continue
        p = list_first(S, C, free_list_id(C, zslot, cur, fmt))
        page_del_and_expand(S, C, zslot, p, order, cur, fmt)
        C[H_LAST_MT] = fmt
        vm_add(C, VM_STEALS, 1)
        extfrag(S, C, p, order, cur, start_mt, fmt)
        return p
    return -1


@kjit_inline
def cma_balance_first(C, zb, alloc_flags):
    """__rmqueue() CMA balancing: CMA first when free CMA > NR_FREE_PAGES * NUM / DEN (mainline 1/2).

    Both counters are the folded zone_page_state() values, as the kernel reads them (they lag
    the free lists by the per-CPU vmstat deltas, `cmasim.mm.zone_stat`).
    Kernel: mm/page_alloc.c __rmqueue() (zone_page_state(zone, NR_FREE_CMA_PAGES) >
    zone_page_state(zone, NR_FREE_PAGES) / 2).

    Candidate variants (PL_CMA_BALANCE_MODE): 1 — also when the zone's non-CMA free memory
    is below the low watermark ("use CMA first" recheck); 2 — compare against
    (NR_FREE_PAGES - low watermark) instead. Android-style policies set NUM = 0 (off) or
    take CMA first for every ALLOC_CMA request (PL_CMA_FIRST_RMQUEUE).
    """
    if not (alloc_flags & ALLOC_CMA):
        return False
    pol = C[H_POL]
    if C[pol + PL_CMA_FIRST_RMQUEUE]:
        return True
    num = C[pol + PL_CMA_NUM]
    den = C[pol + PL_CMA_DEN]
    if num <= 0:
        return False
    free = zone_page_state(C, zb, Z_VM_NR_FREE)
    cma = zone_page_state(C, zb, Z_VM_NR_FREE_CMA)
    mode = C[pol + PL_CMA_BALANCE_MODE]
    if mode == 2:
        free -= C[zb + Z_WMARK_LOW]
    if cma > free * num // den:
        return True
    if mode == 1 and free - cma < C[zb + Z_WMARK_LOW]:
        return True
    return False


@kjit_fixed
def __rmqueue(S, C, zslot, order, mt, alloc_flags):
    """__rmqueue(): CMA balancing, then the rmqueue_mode ladder NORMAL -> CMA -> CLAIM -> STEAL.

    The mode lives in C[H_RMQM] so that rmqueue_bulk() keeps it across its iterations
    (v6.15+); callers reset it to RMQUEUE_NORMAL. v6.1 dispatches to __rmqueue_v61().
    """
    if mt == MIGRATE_CMA:
        # A CMA per-CPU list refill (Android): only the CMA free lists.
        return __rmqueue_smallest(S, C, zslot, order, MIGRATE_CMA)
    if policy_version(C) < 615:
        return __rmqueue_v61(S, C, zslot, order, mt, alloc_flags)
    zb = zone_base(C, zslot)
    if cma_balance_first(C, zb, alloc_flags):
        p = __rmqueue_smallest(S, C, zslot, order, MIGRATE_CMA)
        if p >= 0:
            return p
    mode = C[H_RMQM]
    if mode == RMQUEUE_NORMAL:
        p = __rmqueue_smallest(S, C, zslot, order, mt)
        if p >= 0:
            return p
    if mode <= RMQUEUE_CMA and (alloc_flags & ALLOC_CMA) and C[C[H_POL] + PL_CMA_STAGE]:
        p = __rmqueue_smallest(S, C, zslot, order, MIGRATE_CMA)
        if p >= 0:
            C[H_RMQM] = RMQUEUE_CMA
            return p
    if mode <= RMQUEUE_CLAIM:
        p = __rmqueue_claim(S, C, zslot, order, mt, alloc_flags)
        if p >= 0:
            C[H_RMQM] = RMQUEUE_NORMAL
            return p
    if not (alloc_flags & ALLOC_NOFRAGMENT):
        p = __rmqueue_steal(S, C, zslot, order, mt)
        if p >= 0:
            C[H_RMQM] = RMQUEUE_STEAL
            return p
    return -1


# --- v6.1 fallback --------------------------------------------------------------------------------------
@kjit
def steal_suitable_fallback_v61(S, C, zslot, p, cur, alloc_flags, start_mt, whole_block):
    """steal_suitable_fallback() (v6.1): move the block's free pages to start_mt, maybe retype it."""
    zb = zone_base(C, zslot)
    old_block_type = get_pageblock_type_bits(S, C, p)
    w = pinfo(S, C, p)
    list_mt = free_list_mt(C, pi_list(w))
    if old_block_type == MIGRATE_HIGHATOMIC:
        move_to_free_list(S, C, zslot, p, cur, list_mt, start_mt)
        return
    if cur >= PAGEBLOCK_ORDER:
        change_pageblock_range(S, C, p, cur, start_mt)
        move_to_free_list(S, C, zslot, p, cur, list_mt, start_mt)
        vm_add(C, VM_CLAIMS, 1)
        return
    if boost_watermark(C, zb) and (alloc_flags & ALLOC_KSWAPD):
        C[zb + Z_FLAGS] |= ZONE_BOOSTED_WATERMARK
    start = p & ~(PAGEBLOCK_NR_PAGES - 1)
    if not whole_block or start < C[zb + Z_START] or start + PAGEBLOCK_NR_PAGES > C[zb + Z_END]:
        move_to_free_list(S, C, zslot, p, cur, list_mt, start_mt)
        vm_add(C, VM_STEALS, 1)
        return
    fm = count_block_pages(S, C, zb, start)
    movable = fm % 65536
    free_pages = move_freepages_block(S, C, zslot, start, start_mt)
    if free_pages == 0:
        move_to_free_list(S, C, zslot, p, cur, list_mt, start_mt)
        vm_add(C, VM_STEALS, 1)
        return
    if free_pages + alike_pages(start_mt, old_block_type, free_pages, movable) >= (1 << (PAGEBLOCK_ORDER - 1)):
        set_pageblock_migratetype(S, C, start, start_mt)
        vm_add(C, VM_CLAIMS, 1)
    else:
        vm_add(C, VM_STEALS, 1)


@kjit_fixed
def __rmqueue_fallback_v61(S, C, zslot, order, start_mt, alloc_flags):
    """__rmqueue_fallback() (v6.1): largest fallback first, or the smallest for MOVABLE if unclaimable."""
    min_order = order
    if order < PAGEBLOCK_ORDER and (alloc_flags & ALLOC_NOFRAGMENT):
        min_order = PAGEBLOCK_ORDER
    cur = MAX_PAGE_ORDER
    found = -1
    while cur >= min_order:
        fmt = find_suitable_fallback(S, C, zslot, cur, start_mt)
        if fmt >= 0:
            found = fmt
            break
        cur -= 1
    if found < 0:
        return False
    can_steal = should_try_claim_block(cur, start_mt)
    if not can_steal and start_mt == MIGRATE_MOVABLE and cur > order:
        cur = order
        while cur < NR_PAGE_ORDERS:
            found = find_suitable_fallback(S, C, zslot, cur, start_mt)
            if found >= 0:
                break
            cur += 1
        can_steal = should_try_claim_block(cur, start_mt)
    p = list_first(S, C, free_list_id(C, zslot, cur, found))
    steal_suitable_fallback_v61(S, C, zslot, p, cur, alloc_flags, start_mt, can_steal)
    extfrag(S, C, p, order, cur, start_mt, found)
    return True


@kjit_fixed
def __rmqueue_v61(S, C, zslot, order, mt, alloc_flags):
    """__rmqueue() (v6.1): balancing rule, smallest(mt), CMA, then fallback-and-retry."""
    zb = zone_base(C, zslot)
    if cma_balance_first(C, zb, alloc_flags):
        p = __rmqueue_smallest(S, C, zslot, order, MIGRATE_CMA)
        if p >= 0:
            return p
    while True:
        p = __rmqueue_smallest(S, C, zslot, order, mt)
        if p >= 0:
            return p
        if (alloc_flags & ALLOC_CMA) and C[C[H_POL] + PL_CMA_STAGE]:
            p = __rmqueue_smallest(S, C, zslot, order, MIGRATE_CMA)
            if p >= 0:
                return p
        if not __rmqueue_fallback_v61(S, C, zslot, order, mt, alloc_flags):
            return -1


@kjit
def free_pages_core_range(S, C, zslot, start, end):
    """memblock_free_pages()/__free_pages_core() at boot: free [start, end) in the largest
    naturally aligned blocks, to the tail (FPI_TO_TAIL), through __free_pages_ok()."""
    pfn = start
    while pfn < end:
        order = MAX_PAGE_ORDER
        while order > 0 and ((pfn & ((1 << order) - 1)) != 0 or pfn + (1 << order) > end):
            order -= 1
        free_one_page(S, C, zslot, pfn, order, True)
        pfn += 1 << order
