"""The allocation entry point: __alloc_pages() with its fast and slow paths.

Kernel: mm/page_alloc.c — __alloc_pages_noprof(), __alloc_pages_slowpath(),
wake_all_kswapds(), __alloc_pages_direct_compact(), __alloc_pages_direct_reclaim(),
should_reclaim_retry(), __alloc_pages_may_oom(); mm/compaction.c try_to_compact_pages();
mm/huge_memory.c THP fault accounting (thp_fault_alloc, thp_fault_fallback). Checked
against v6.18 (v6.1 has the same slow path for everything modelled here).

Slow path, in the kernel's order: wake kswapd (every retry); retry at the MIN watermark
with gfp_to_alloc_flags(); requests that may direct-reclaim and are costly (or non-movable
high-order) first try async direct compaction (a costly __GFP_NORETRY request gives up if
that was skipped); then the retry loop: a direct-reclaim round (drain_all_pages() and one
more try when it made progress), direct compaction for order > 0, __GFP_NORETRY and
costly requests without __GFP_RETRY_MAYFAIL give up, should_reclaim_retry() (at most
MAX_RECLAIM_RETRIES rounds without progress; progress resets the count for order <= 3;
some zone must pass its MIN mark counting its reclaimable pages as free); with
vm.defrag_mode (v6.15+) the loop first runs with ALLOC_NOFRAGMENT and drops it only when it
would give up; then __alloc_pages_may_oom(): no OOM kill for costly orders, __GFP_RETRY_MAYFAIL,
__GFP_THISNODE or lowmem-only requests; a kill (oom_kill.py) restarts the retry loop.

Simplifications: no should_compact_retry() (compaction is retried only through the
reclaim loop, at async priority for the first pass and sync after), no compaction
deferral, no highatomic reserves to unreserve, no cpusets, no ALLOC_OOM reserves for a
killed task, no __GFP_NOFAIL looping.
"""

from cmasim.mm.jit import kjit, kjit_fixed, kjit_inline
from cmasim.mm.mmzone import (
    ALLOC_CMA, ALLOC_CPUSET, ALLOC_KSWAPD, ALLOC_WMARK_HIGH, ALLOC_WMARK_LOW, GFP_CMA_,
    ALLOC_NOFRAGMENT, GFP_COMP_, GFP_DIRECT_RECLAIM_, GFP_NORETRY_, GFP_RETRY_MAYFAIL_, GFP_THISNODE_, H_PARAM, H_POL,
    PL_DEFRAG_MODE,
    HPAGE_PMD_ORDER, MIGRATE_CMA, MIGRATE_MOVABLE, PAGE_ALLOC_COSTLY_ORDER, PG_ALLOC, T_COMPACTION_ENABLED,
    TR_MM_PAGE_ALLOC, VM_ALLOC_EVENTS, VM_ALLOC_FAIL, VM_CMA_TO_NON_CMA, VM_COMPACT_FAIL, VM_COMPACT_STALL,
    VM_COMPACT_SUCCESS, VM_GFP_CMA_THP, VM_GFP_CMA_THP_NO_CMA, VM_PGALLOC_PAGES, VM_SLOWPATH,
    VM_THP_FAULT_ALLOC, VM_THP_FAULT_FALLBACK, Z_VM_NR_FREE, ZONE_NORMAL,
)
from cmasim.mm.compaction import (
    COMPACT_CONTINUE, COMPACT_SKIPPED, COMPACT_SUCCESS, compact_zone, compaction_suit_allocation_order,
)
from cmasim.mm.freelist import get_pageblock_type_bits, set_pinfo, trace_emit, vm_add, zone_base
from cmasim.mm.oom_kill import out_of_memory
from cmasim.mm.zone_stat import zone_page_state_snapshot
from cmasim.mm.pcp import drain_all_pages
from cmasim.mm.rmqueue import (  # noqa: F401  (free_pages is re-exported for callers)
    alloc_flags_nofragment, free_pages, get_page_from_freelist, gfp_migratetype, gfp_to_alloc_flags,
    gfp_to_alloc_flags_cma, gfp_zone, preferred_zone,
)
from cmasim.mm.vmscan import try_to_free_pages, wake_all_kswapds, wakeup_kswapd, zone_reclaimable_pages  # noqa: F401
from cmasim.mm.watermark import __zone_watermark_ok, wmark_pages

MAX_RECLAIM_RETRIES = 16


@kjit_inline
def try_to_compact_pages(S, C, cpu, order, mt, af, highest, pref, sync):
    """try_to_compact_pages(): walk the zonelist; a zone where compaction_suit_allocation_order()
    says the allocation would already succeed ends the walk (COMPACT_SUCCESS), a skipped zone
    is passed over, otherwise compact_zone(); stop at the first COMPACT_SUCCESS.
    Returns the highest status seen (COMPACT_SKIPPED when nothing ran).
    Kernel: mm/compaction.c try_to_compact_pages(), compact_zone_order(), compact_zone().
    Inlined into its one caller (kjit_inline): not compiled as a library of its own, which
    would generate its whole call tree once more in a cold compile (docs/performance.md)."""
    rc = COMPACT_SKIPPED
    for z in range(pref, -1, -1):
        st = compaction_suit_allocation_order(C, z, order, highest, af, not sync, False)
        if st == COMPACT_CONTINUE:
            st = compact_zone(S, C, cpu, z, order, mt, sync)
        if st > rc:
            rc = st
        if st == COMPACT_SUCCESS:
            break
    return rc


@kjit_inline
def __alloc_pages_direct_compact(S, C, cpu, order, mt, af, highest, pref, sync):
    """__alloc_pages_direct_compact(): compact, then retry the freelists; COMPACTSTALL and
    COMPACTSUCCESS/COMPACTFAIL only when some zone was not skipped. Returns (pfn or -1,
    compaction status).
    Inlined into its one caller (kjit_inline): not compiled as a library of its own, which
    would generate its whole call tree once more in a cold compile (docs/performance.md)."""
    if order == 0 or C[C[H_PARAM] + T_COMPACTION_ENABLED] == 0:
        return -1, COMPACT_SKIPPED
    rc = try_to_compact_pages(S, C, cpu, order, mt, af, highest, pref, sync)
    if rc == COMPACT_SKIPPED:
        return -1, rc
    vm_add(C, VM_COMPACT_STALL, 1)
    p = get_page_from_freelist(S, C, cpu, order, mt, af, highest, pref)
    vm_add(C, VM_COMPACT_SUCCESS if p >= 0 else VM_COMPACT_FAIL, 1)
    return p, rc


@kjit_inline
def __alloc_pages_direct_reclaim(S, C, cpu, order, mt, af, highest, pref):
    """__alloc_pages_direct_reclaim(): one try_to_free_pages() round; if it made progress, try
    the freelists, and once more after drain_all_pages() (the kernel also unreserves
    highatomic blocks there; none exist here). Without progress nothing is drained
    (`if (!*did_some_progress) goto out;`). Returns (pfn or -1, pages reclaimed).
    Inlined into its one caller (kjit_inline): not compiled as a library of its own, which
    would generate its whole call tree once more in a cold compile (docs/performance.md)."""
    progress = try_to_free_pages(S, C, cpu, pref, highest)
    if progress == 0:
        return -1, 0
    p = get_page_from_freelist(S, C, cpu, order, mt, af, highest, pref)
    if p < 0:
        drain_all_pages(S, C, -1)
        p = get_page_from_freelist(S, C, cpu, order, mt, af, highest, pref)
    return p, progress


@kjit
def should_reclaim_retry(S, C, order, af, highest, pref, did_some_progress, no_progress_loops):
    """should_reclaim_retry(): count a round without progress (every round for costly
    orders), give up after MAX_RECLAIM_RETRIES of them, else retry while some zone of the
    zonelist would pass its MIN mark (+ boost) at this order if all its reclaimable pages
    were free. The free count is zone_page_state_snapshot(NR_FREE_PAGES) (folded + every
    CPU's diff, i.e. exact). Returns (retry, no_progress_loops). Kernel: mm/page_alloc.c
    should_reclaim_retry() (v6.18; the highatomic unreserve before OOM is not modelled)."""
    if did_some_progress and order <= PAGE_ALLOC_COSTLY_ORDER:
        no_progress_loops = 0
    else:
        no_progress_loops += 1
    if no_progress_loops > MAX_RECLAIM_RETRIES:
        return False, no_progress_loops
    for z in range(pref, -1, -1):
        zb = zone_base(C, z)
        mark = wmark_pages(C, zb, 0)
        available = zone_page_state_snapshot(C, zb, Z_VM_NR_FREE)
        if not __zone_watermark_ok(C, z, order, mark, highest, af, available):
            available += zone_reclaimable_pages(S, C, z)
            if not __zone_watermark_ok(C, z, order, mark, highest, af, available):
                continue
        return True, no_progress_loops
    return False, no_progress_loops


@kjit_inline
def __alloc_pages_may_oom(S, C, cpu, order, gfp, mt, highest, pref):
    """__alloc_pages_may_oom(): one last try at the HIGH mark (a parallel kill may have freed
    memory), then the OOM killer unless the request is costly, __GFP_RETRY_MAYFAIL or
    __GFP_THISNODE, or may only use zones below Normal (__GFP_NORETRY never gets here).
    Returns (pfn or -1, did_some_progress). Kernel: mm/page_alloc.c __alloc_pages_may_oom().
    Inlined into its one caller (kjit_inline): not compiled as a library of its own, which
    would generate its whole call tree once more in a cold compile (docs/performance.md)."""
    af_high = ALLOC_WMARK_HIGH | ALLOC_CPUSET  # literally these flags: no ALLOC_CMA
    p = get_page_from_freelist(S, C, cpu, order, mt, af_high, highest, pref)
    if p >= 0:
        return p, False
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return -1, False
    if gfp & (GFP_RETRY_MAYFAIL_ | GFP_THISNODE_):
        return -1, False
    if highest < ZONE_NORMAL:
        return -1, False
    return -1, out_of_memory(S, C, cpu, gfp)


@kjit_fixed
def __alloc_pages_slowpath(S, C, cpu, order, gfp, mt, highest, pref):
    """__alloc_pages_slowpath() (see the module docstring for the order of steps)."""
    af = gfp_to_alloc_flags(C, gfp, order)
    costly = order > PAGE_ALLOC_COSTLY_ORDER
    can_direct_reclaim = (gfp & GFP_DIRECT_RECLAIM_) != 0
    if af & ALLOC_KSWAPD:
        wake_all_kswapds(C, order, gfp, highest)
    p = get_page_from_freelist(S, C, cpu, order, mt, af, highest, pref)
    if p >= 0:
        return p
    sync = 1
    if can_direct_reclaim and order > 0 and (costly or mt != MIGRATE_MOVABLE):
        p, cres = __alloc_pages_direct_compact(S, C, cpu, order, mt, af, highest, pref, 0)
        if p >= 0:
            return p
        if costly and (gfp & GFP_NORETRY_):
            if cres == COMPACT_SKIPPED:
                return -1
            sync = 0  # keep using async compaction (compact_priority = INIT_COMPACT_PRIORITY)
    if not can_direct_reclaim:
        return -1
    no_progress_loops = 0
    while True:
        if af & ALLOC_KSWAPD:
            wake_all_kswapds(C, order, gfp, highest)
        p = get_page_from_freelist(S, C, cpu, order, mt, af, highest, pref)
        if p >= 0:
            return p
        p, progress = __alloc_pages_direct_reclaim(S, C, cpu, order, mt, af, highest, pref)
        if p >= 0:
            return p
        p, cres = __alloc_pages_direct_compact(S, C, cpu, order, mt, af, highest, pref, sync)
        if p >= 0:
            return p
        if gfp & GFP_NORETRY_:
            return -1
        if costly and not (gfp & GFP_RETRY_MAYFAIL_):
            return -1
        retry, no_progress_loops = should_reclaim_retry(S, C, order, af, highest, pref, progress > 0,
                                                        no_progress_loops)
        if retry:
            continue
        if C[C[H_POL] + PL_DEFRAG_MODE] and (af & ALLOC_NOFRAGMENT):
            af &= ~ALLOC_NOFRAGMENT  # vm.defrag_mode: reclaim/compaction failed to prevent the fallback
            continue
        p, oom_progress = __alloc_pages_may_oom(S, C, cpu, order, gfp, mt, highest, pref)
        if p >= 0:
            return p
        if not oom_progress:
            return -1
        no_progress_loops = 0


@kjit_fixed
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
