"""The allocation entry point: __alloc_pages() with its fast and slow paths.

Kernel: mm/page_alloc.c — __alloc_pages_noprof(), __alloc_pages_slowpath(),
wake_all_kswapds(), __alloc_pages_direct_compact(), __alloc_pages_direct_reclaim(),
__alloc_pages_may_oom(); mm/huge_memory.c THP fault accounting (thp_fault_alloc,
thp_fault_fallback).

Slow path, in the kernel's order: wake kswapd; retry at the MIN watermark with
gfp_to_alloc_flags(); requests that may direct-reclaim and are costly (or non-movable
high-order) first try async direct compaction; then rounds of direct reclaim (each
followed by a retry, and one drain_all_pages() when reclaim made no progress); then sync
compaction for high orders; if nothing helps an order <= 3 request counts an OOM kill
(the model cannot kill a task, so the allocation fails).
"""

from cmasim.mm.jit import kjit
from cmasim.mm.mmzone import (
    ALLOC_CMA, ALLOC_KSWAPD, ALLOC_WMARK_LOW, GFP_CMA_, GFP_COMP_, MIGRATE_CMA, VM_CMA_TO_NON_CMA,
    VM_GFP_CMA_THP, VM_GFP_CMA_THP_NO_CMA, GFP_DIRECT_RECLAIM_, GFP_NORETRY_, H_PARAM,
    HPAGE_PMD_ORDER, MIGRATE_MOVABLE, PAGE_ALLOC_COSTLY_ORDER, PG_ALLOC, T_COMPACTION_ENABLED,
    TR_MM_PAGE_ALLOC, VM_ALLOC_EVENTS, VM_ALLOC_FAIL, VM_ALLOCSTALL, VM_COMPACT_FAIL, VM_COMPACT_STALL,
    VM_COMPACT_SUCCESS, VM_OOM_KILL, VM_PGALLOC_PAGES, VM_SLOWPATH, VM_THP_FAULT_ALLOC,
    VM_THP_FAULT_FALLBACK, Z_IDX,
)
from cmasim.mm.compaction import compact_zone, compaction_suitable, wakeup_kcompactd
from cmasim.mm.freelist import get_pageblock_type_bits, set_pinfo, trace_emit, vm_add, zone_base
from cmasim.mm.pcp import drain_all_pages
from cmasim.mm.rmqueue import (  # noqa: F401  (free_pages is re-exported for callers)
    alloc_flags_nofragment, free_pages, get_page_from_freelist, gfp_migratetype, gfp_to_alloc_flags,
    gfp_to_alloc_flags_cma, gfp_zone, preferred_zone,
)
from cmasim.mm.vmscan import try_to_free_pages, wakeup_kswapd

MAX_RECLAIM_RETRIES = 16


@kjit
def __alloc_pages_direct_compact(S, C, cpu, order, mt, af, highest, pref, sync):
    """Compact every suitable zone of the zonelist, then retry the freelists."""
    if C[C[H_PARAM] + T_COMPACTION_ENABLED] == 0:
        return -1
    ran = False
    for z in range(pref, -1, -1):
        if not compaction_suitable(C, z, order, highest):
            continue
        ran = True
        compact_zone(S, C, cpu, z, order, mt, sync)
    if not ran:
        return -1
    vm_add(C, VM_COMPACT_STALL, 1)
    p = get_page_from_freelist(S, C, cpu, order, mt, af, highest, pref)
    vm_add(C, VM_COMPACT_SUCCESS if p >= 0 else VM_COMPACT_FAIL, 1)
    return p


@kjit
def __alloc_pages_slowpath(S, C, cpu, order, gfp, mt, highest, pref):
    af = gfp_to_alloc_flags(C, gfp, order)
    if af & ALLOC_KSWAPD:
        wakeup_kswapd(C)
    p = get_page_from_freelist(S, C, cpu, order, mt, af, highest, pref)
    if p >= 0:
        return p
    can_reclaim = (gfp & GFP_DIRECT_RECLAIM_) != 0
    if order > 0:
        wakeup_kcompactd(C)
    if can_reclaim and order > 0 and (order > PAGE_ALLOC_COSTLY_ORDER or mt != MIGRATE_MOVABLE):
        p = __alloc_pages_direct_compact(S, C, cpu, order, mt, af, highest, pref, 0)
        if p >= 0:
            return p
        if order > PAGE_ALLOC_COSTLY_ORDER and (gfp & GFP_NORETRY_):
            return -1
    if not can_reclaim:
        return -1
    vm_add(C, VM_ALLOCSTALL + C[zone_base(C, pref) + Z_IDX], 1)
    drained = False
    no_progress = 0
    while no_progress < MAX_RECLAIM_RETRIES:
        progress = try_to_free_pages(S, C, cpu, pref)
        p = get_page_from_freelist(S, C, cpu, order, mt, af, highest, pref)
        if p >= 0:
            return p
        if not drained:
            drain_all_pages(S, C, -1)
            drained = True
            p = get_page_from_freelist(S, C, cpu, order, mt, af, highest, pref)
            if p >= 0:
                return p
        if progress == 0:
            no_progress += 1
            if no_progress >= 2:
                break
        if order > PAGE_ALLOC_COSTLY_ORDER:
            break
    if order > 0:
        p = __alloc_pages_direct_compact(S, C, cpu, order, mt, af, highest, pref, 1)
        if p >= 0:
            return p
    if order <= PAGE_ALLOC_COSTLY_ORDER:
        vm_add(C, VM_OOM_KILL, 1)
    return -1


@kjit
def alloc_pages(S, C, cpu, order, gfp):
    """__alloc_pages(): fast path at the LOW mark (with ALLOC_NOFRAGMENT), then the slow path.
    Returns the head pfn or -1."""
    vm_add(C, VM_ALLOC_EVENTS, 1)
    mt = gfp_migratetype(gfp)
    highest = gfp_zone(gfp)
    pref = preferred_zone(C, highest)
    may_cma = gfp_to_alloc_flags_cma(C, gfp, 0) & ALLOC_CMA
    p = -1
    if pref >= 0:
        af = ALLOC_WMARK_LOW | alloc_flags_nofragment(C, pref, gfp) | may_cma
        p = get_page_from_freelist(S, C, cpu, order, mt, af, highest, pref)
        if p < 0:
            vm_add(C, VM_SLOWPATH, 1)
            p = __alloc_pages_slowpath(S, C, cpu, order, gfp, mt, highest, pref)
    if p >= 0:
        set_pinfo(S, C, p, order, PG_ALLOC, mt, 0)
        vm_add(C, VM_PGALLOC_PAGES, 1 << order)
        if not may_cma and get_pageblock_type_bits(S, C, p) == MIGRATE_CMA:
            vm_add(C, VM_CMA_TO_NON_CMA, 1 << order)  # a CMA page for a request that may not use CMA
    else:
        vm_add(C, VM_ALLOC_FAIL, 1)
    if order == HPAGE_PMD_ORDER and (gfp & GFP_CMA_):
        vm_add(C, VM_GFP_CMA_THP, 1)
        if p < 0 or get_pageblock_type_bits(S, C, p) != MIGRATE_CMA:
            vm_add(C, VM_GFP_CMA_THP_NO_CMA, 1)
    if order == HPAGE_PMD_ORDER and (gfp & GFP_COMP_) and mt == MIGRATE_MOVABLE:
        vm_add(C, VM_THP_FAULT_ALLOC if p >= 0 else VM_THP_FAULT_FALLBACK, 1)
    trace_emit(C, TR_MM_PAGE_ALLOC, p, order, mt, gfp, 0, 0, 0)
    return p
