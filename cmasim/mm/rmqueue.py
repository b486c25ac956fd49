"""Allocation below the slow path, and freeing: GFP decoding, watermarks, zonelist walk, rmqueue.

Kernel: include/linux/gfp.h (gfp_migratetype, gfp_zone), mm/page_alloc.c —
__alloc_pages_noprof, alloc_flags_nofragment, gfp_to_alloc_flags, gfp_to_alloc_flags_cma,
get_page_from_freelist, zone_watermark_fast, __zone_watermark_ok,
__zone_watermark_unusable_free, rmqueue, rmqueue_buddy, __free_pages_ok,
free_frozen_pages (was free_unref_page).

Simplifications (docs/model.md): the slow path has no reclaim, compaction, OOM or
highatomic reserve yet; it retries at the MIN watermark with gfp_to_alloc_flags() and,
for a request that may enter direct reclaim, drains all per-CPU lists once (as
__alloc_pages_direct_reclaim() does after reclaim made no progress) and retries.
kswapd itself lives in vmscan.py; this module only wakes it.
"""

from cmasim.mm.jit import kjit_fixed, kjit_inline
from cmasim.mm.mmzone import (
    ALLOC_CMA, ALLOC_CPUSET, ALLOC_HIGHATOMIC, ALLOC_KSWAPD, ALLOC_MIN_RESERVE, ALLOC_NOFRAGMENT,
    ALLOC_NON_BLOCK, ALLOC_NO_WATERMARKS, ALLOC_OOM, ALLOC_WMARK_HIGH, ALLOC_WMARK_MASK, ALLOC_WMARK_MIN,
    GFP_DIRECT_RECLAIM_, GFP_DMA32_, GFP_DMA_, GFP_HIGH_, GFP_HIGHMEM_, GFP_KSWAPD_RECLAIM_,
    GFP_CMA_, GFP_MOVABLE_, GFP_NOMEMALLOC_, GFP_RECLAIMABLE_, PL_CMA_FIRST_BUDDY, PL_CMA_GFP_REQUIRED, MIGRATE_CMA,
    H_N, H_NZONES, H_POL, H_RMQM,
    MIGRATE_HIGHATOMIC, MIGRATE_MOVABLE, PG_ALLOC, PL_DEFRAG_MODE, PL_NOFRAGMENT,
    TR_MM_PAGE_FREE,
    VM_BUDDY_ALLOCS, VM_FREE_EVENTS, VM_NOFRAG_RETRY,
    VM_PCP_ALLOC_HITS, VM_PGALLOC, VM_PGFREE, VM_WMARK_FAIL,
    VM_ZONE_LOCK, H_VM, VM_NON_CMA_TO_CMA_ALLOC, VM_RQ_SERVED, VM_RQ_PCP_HITS, VM_RQ_ZONE_LOCK, VM_RQ_CMA_TO_NON_CMA,
    PL_PCP_SKIP_MOVABLE_NO_CMA, PL_PCP_FAIL_NO_BUDDY, Z_NR_FREE_CMA,
    Z_FLAGS, Z_IDX, ZONE_BELOW_HIGH, ZONE_BOOSTED_WATERMARK,
    ZONE_DMA, ZONE_DMA32, ZONE_MOVABLE, ZONE_NORMAL,
)
from cmasim.mm.freelist import (
    clear_pinfo, get_pageblock_type_bits, pageblock_zone, pi_order, pi_state, pinfo, policy_version,
    trace_emit, vm_add, zone_base, get_pfnblock_migratetype,
)
from cmasim.mm.page_alloc import RMQUEUE_NORMAL, __rmqueue, __rmqueue_smallest, free_one_page, pcp_allowed_order
from cmasim.mm.watermark import (  # noqa: F401  (re-exported)
    __zone_watermark_ok, wmark_pages, zone_watermark_fast, zone_watermark_unusable_free,
)
from cmasim.mm.pcp import (
    __rmqueue_cma, free_unref_page_commit, order_to_pindex, pcp_free_pindex, rmqueue_cma_only, rmqueue_pcplist,
)
from cmasim.mm.wakeup import wakeup_kswapd  # noqa: F401  (mm/vmscan.c; kept apart to avoid an import cycle)

E_OK = 0
E_NOT_ALLOCATED = -22  # -EINVAL: free of a pfn that is not the head of an allocated block


# --- GFP decoding -------------------------------------------------------------------------------
@kjit_inline
def gfp_migratetype(gfp):
    """gfp_migratetype(): (__GFP_MOVABLE | __GFP_RECLAIMABLE) >> 3."""
    return (gfp & (GFP_MOVABLE_ | GFP_RECLAIMABLE_)) >> 3


@kjit_inline
def gfp_zone(gfp):
    """gfp_zone() on x86-64 without highmem: DMA, DMA32, MOVABLE (HIGHMEM|MOVABLE) or NORMAL."""
    if gfp & GFP_DMA_:
        return ZONE_DMA
    if gfp & GFP_DMA32_:
        return ZONE_DMA32
    if (gfp & GFP_MOVABLE_) and (gfp & GFP_HIGHMEM_):
        return ZONE_MOVABLE
    return ZONE_NORMAL


@kjit_inline
def gfp_to_alloc_flags_cma(C, gfp, alloc_flags):
    """gfp_to_alloc_flags_cma(): mainline ALLOC_CMA iff the request is MOVABLE; Android
    (restrict_cma_redirect) additionally requires __GFP_CMA."""
    if gfp_migratetype(gfp) == MIGRATE_MOVABLE:
        if C[C[H_POL] + PL_CMA_GFP_REQUIRED] == 0 or (gfp & GFP_CMA_):
            alloc_flags |= ALLOC_CMA
    return alloc_flags


@kjit_fixed
def gfp_to_alloc_flags(C, gfp, order):
    """gfp_to_alloc_flags(): the slow path's flags (MIN watermark, reserves for atomic requests)."""
    af = ALLOC_WMARK_MIN | ALLOC_CPUSET
    if C[C[H_POL] + PL_DEFRAG_MODE]:
        af |= ALLOC_NOFRAGMENT  # v6.15+ vm.defrag_mode: kept until reclaim and compaction failed
    if gfp & GFP_HIGH_:
        af |= ALLOC_MIN_RESERVE
    if gfp & GFP_KSWAPD_RECLAIM_:
        af |= ALLOC_KSWAPD
    if not (gfp & GFP_DIRECT_RECLAIM_):
        if not (gfp & GFP_NOMEMALLOC_):
            af |= ALLOC_NON_BLOCK
        if order > 0 and (af & ALLOC_MIN_RESERVE):
            af |= ALLOC_HIGHATOMIC
        af &= ~ALLOC_CPUSET
    return gfp_to_alloc_flags_cma(C, gfp, af)


@kjit_inline
def preferred_zone(C, highest):
    """The first zone of the zonelist: the highest configured zone with index <= highest."""
    for z in range(C[H_NZONES] - 1, -1, -1):
        if C[zone_base(C, z) + Z_IDX] <= highest:
            return z
    return -1


@kjit_inline
def alloc_flags_nofragment(C, pref, gfp):
    """alloc_flags_nofragment(): ALLOC_NOFRAGMENT when the preferred zone is Normal (and DMA32
    exists), or always with vm.defrag_mode; plus ALLOC_KSWAPD from __GFP_KSWAPD_RECLAIM."""
    af = ALLOC_KSWAPD if (gfp & GFP_KSWAPD_RECLAIM_) else 0
    pol = C[H_POL]
    if C[pol + PL_DEFRAG_MODE]:
        return af | ALLOC_NOFRAGMENT
    if C[pol + PL_NOFRAGMENT] == 0 or pref < 0:
        return af
    if C[zone_base(C, pref) + Z_IDX] != ZONE_NORMAL:
        return af
    for z in range(C[H_NZONES]):
        if C[zone_base(C, z) + Z_IDX] == ZONE_DMA32:
            return af | ALLOC_NOFRAGMENT
    return af


# --- rmqueue ---------------------------------------------------------------------------------------
@kjit_fixed
def rmqueue_buddy(S, C, zslot, order, alloc_flags, mt):
    """rmqueue_buddy(): one block under the zone lock (HIGHATOMIC lists for reserve users).

    Android: ACK 5.10+ tries __rmqueue_cma() (CMA lists) first for ALLOC_CMA, then __rmqueue()
    (PL_CMA_FIRST_BUDDY); the 2020 posting's rmqueue() calls only __rmqueue_cma() for a
    __GFP_CMA request (PL_CMA_ONLY_RMQUEUE), no fallback."""
    vm_add(C, VM_ZONE_LOCK, 1)
    p = -1
    if alloc_flags & ALLOC_HIGHATOMIC:
        p = __rmqueue_smallest(S, C, zslot, order, MIGRATE_HIGHATOMIC)
    if p < 0 and rmqueue_cma_only(C, mt, alloc_flags):
        p = __rmqueue_cma(S, C, zslot, order)
    elif p < 0:
        if (alloc_flags & ALLOC_CMA) and C[C[H_POL] + PL_CMA_FIRST_BUDDY]:
            p = __rmqueue_smallest(S, C, zslot, order, MIGRATE_CMA)  # Android: __rmqueue_cma_fallback() first
        if p < 0:
            C[H_RMQM] = RMQUEUE_NORMAL
            p = __rmqueue(S, C, zslot, order, mt, alloc_flags)
            if p < 0 and (alloc_flags & (ALLOC_OOM | ALLOC_NON_BLOCK)):
                p = __rmqueue_smallest(S, C, zslot, order, MIGRATE_HIGHATOMIC)
    if p >= 0:
        vm_add(C, VM_BUDDY_ALLOCS, 1)
    return p


@kjit_inline
def rmqueue_class(alloc_flags, mt):
    """Request class for the per-class counters: 0 may use CMA (ALLOC_CMA: __GFP_CMA under
    Android, every MOVABLE request in mainline), 1 MOVABLE without ALLOC_CMA, 2 other types."""
    if alloc_flags & ALLOC_CMA:
        return 0
    if mt == MIGRATE_MOVABLE:
        return 1
    return 2


@kjit_fixed
def rmqueue(S, C, zslot, cpu, order, alloc_flags, mt):
    """rmqueue(): per-CPU list for PCP orders, else (or when the refill fails) the buddy.

    Android variants, as policy switches:
    * the CMA per-CPU list of the order first for ALLOC_CMA (ACK "ANDROID: mm: add cma pcp
      list": 5.10 __rmqueue_pcplist get_populated_pcp_list(…, get_cma_migrate_type()), 6.18
      order_to_pindex(MIGRATE_CMA, order)), then the request's own list;
    * PL_PCP_SKIP_MOVABLE_NO_CMA: a MOVABLE request without ALLOC_CMA skips the per-CPU lists
      and goes to the zone lock (mainline v5.9 1d91df85f399 "handle a missing case for
      memalloc_nocma_{save/restore}", rewritten by the 2020 __GFP_CMA patch to test __GFP_CMA);
    * PL_PCP_FAIL_NO_BUDDY: <= v5.10 rmqueue() `if (order == 0) { rmqueue_pcplist(); goto out; }`,
      an order-0 request that tried a per-CPU list and got nothing fails in this zone.

    Counters: a per-CPU hit (VM_PCP_ALLOC_HITS) is an allocation served from a per-CPU list by
    an rmqueue() call that took no zone lock (a page popped after a failed CMA-list refill is
    not a hit); per request class, pages served, hits and zone-lock trips; and pages of non-CMA
    blocks handed to ALLOC_CMA requests while the zone had free CMA pages, and pages of CMA blocks
    handed to requests without ALLOC_CMA, by class."""
    zb = zone_base(C, zslot)
    pol = C[H_POL]
    locks0 = C[C[H_VM] + VM_ZONE_LOCK]
    p = -1
    tried_pcp = False
    if pcp_allowed_order(order):
        pindex = order_to_pindex(C, order, mt)
        cma_pindex = order_to_pindex(C, order, MIGRATE_CMA)
        skip = (C[pol + PL_PCP_SKIP_MOVABLE_NO_CMA] != 0 and mt == MIGRATE_MOVABLE
                and (alloc_flags & ALLOC_CMA) == 0)
        if not skip:
            if (alloc_flags & ALLOC_CMA) and cma_pindex >= 0 and C[pol + PL_CMA_FIRST_BUDDY]:
                # Android: the CMA list of this order first (for THP the list it maps CMA to, shared
                # with MOVABLE THPs unless the RFC's own list), refilled from the CMA free lists only.
                tried_pcp = True
                p = rmqueue_pcplist(S, C, zslot, cpu, order, MIGRATE_CMA, alloc_flags, cma_pindex)
            if p < 0 and pindex >= 0:
                tried_pcp = True
                p = rmqueue_pcplist(S, C, zslot, cpu, order, mt, alloc_flags, pindex)
    from_pcp = p >= 0
    if p < 0 and not (tried_pcp and order == 0 and C[pol + PL_PCP_FAIL_NO_BUDDY]):
        p = rmqueue_buddy(S, C, zslot, order, alloc_flags, mt)
    cls = rmqueue_class(alloc_flags, mt)
    trips = C[C[H_VM] + VM_ZONE_LOCK] - locks0
    vm_add(C, VM_RQ_ZONE_LOCK + cls, trips)
    if p >= 0:
        vm_add(C, VM_RQ_SERVED + cls, 1)
        if from_pcp and trips == 0:
            vm_add(C, VM_PCP_ALLOC_HITS, 1)
            vm_add(C, VM_RQ_PCP_HITS + cls, 1)
        is_cma = get_pageblock_type_bits(S, C, p) == MIGRATE_CMA
        if (alloc_flags & ALLOC_CMA) and C[zb + Z_NR_FREE_CMA] > 0 and not is_cma:
            vm_add(C, VM_NON_CMA_TO_CMA_ALLOC, 1 << order)  # the seed thread's "consumed"
        if is_cma and not (alloc_flags & ALLOC_CMA):
            vm_add(C, VM_RQ_CMA_TO_NON_CMA + cls, 1 << order)  # "polluted", by class
        vm_add(C, VM_PGALLOC + C[zb + Z_IDX], 1 << order)
        if (alloc_flags & ALLOC_KSWAPD) and (C[zb + Z_FLAGS] & ZONE_BOOSTED_WATERMARK):
            C[zb + Z_FLAGS] &= ~ZONE_BOOSTED_WATERMARK
            wakeup_kswapd(C, 0, 0, C[zb + Z_IDX])
    return p


@kjit_fixed
def get_page_from_freelist(S, C, cpu, order, mt, alloc_flags, highest, pref):
    """get_page_from_freelist(): walk the zonelist; HIGH-mark fast accept (v6.7+), alloc mark,
    rmqueue; if every zone failed under ALLOC_NOFRAGMENT, retry without it."""
    v = policy_version(C)
    while True:
        for z in range(pref, -1, -1):
            zb = zone_base(C, z)
            ok = False
            if v >= 607 and not (C[zb + Z_FLAGS] & ZONE_BELOW_HIGH):
                if zone_watermark_fast(C, z, order, wmark_pages(C, zb, ALLOC_WMARK_HIGH), highest, alloc_flags):
                    ok = True
                else:
                    C[zb + Z_FLAGS] |= ZONE_BELOW_HIGH
            if not ok:
                mark = wmark_pages(C, zb, alloc_flags & ALLOC_WMARK_MASK)
                if zone_watermark_fast(C, z, order, mark, highest, alloc_flags):
                    ok = True
                elif alloc_flags & ALLOC_NO_WATERMARKS:
                    ok = True
                else:
                    vm_add(C, VM_WMARK_FAIL, 1)
            if ok:
                p = rmqueue(S, C, z, cpu, order, alloc_flags, mt)
                if p >= 0:
                    return p
        if (alloc_flags & ALLOC_NOFRAGMENT) and not C[C[H_POL] + PL_DEFRAG_MODE]:
            alloc_flags &= ~ALLOC_NOFRAGMENT
            vm_add(C, VM_NOFRAG_RETRY, 1)
            continue
        return -1


@kjit_fixed
def free_pages(S, C, cpu, p):
    """__free_pages(): per-CPU path for PCP orders (free_frozen_pages), else __free_pages_ok().

    Returns E_OK, or E_NOT_ALLOCATED (and changes nothing) if `p` is not an allocated head.
    """
    if p < 0 or p >= C[H_N]:
        return E_NOT_ALLOCATED
    w = pinfo(S, C, p)
    if pi_state(w) != PG_ALLOC:
        return E_NOT_ALLOCATED
    order = pi_order(w)
    vm_add(C, VM_FREE_EVENTS, 1)
    trace_emit(C, TR_MM_PAGE_FREE, p, order, 0, 0, 0, 0, 0)
    zslot = pageblock_zone(S, C, p)
    clear_pinfo(S, C, p)  # the block is about to be linked somewhere
    if pcp_allowed_order(order):
        mt = get_pfnblock_migratetype(S, C, p)
        pindex = pcp_free_pindex(C, order, mt)
        if pindex >= 0:
            free_unref_page_commit(S, C, zslot, cpu, p, mt, order, pindex)
            return E_OK
    vm_add(C, VM_PGFREE, 1 << order)
    vm_add(C, VM_ZONE_LOCK, 1)
    free_one_page(S, C, zslot, p, order, False)
    return E_OK
