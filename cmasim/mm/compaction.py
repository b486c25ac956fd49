"""Memory compaction: direct compaction for high-order requests, and kcompactd.

Kernel: mm/compaction.c — compaction_suit_allocation_order() (v6.10+; v6.13+ non-CMA check),
compaction_suitable(), __compact_finished(), compact_zone(),
isolate_migratepages_block() (migrate scanner, upward from the zone start),
isolate_freepages_block()/suitable_migration_target() (free scanner, downward from the
zone end), compaction_alloc(); kcompactd_do_work().

The migrate scanner walks pageblocks upward and moves every movable, unpinned in-use
block below pageblock order; the free scanner walks pageblocks downward and supplies free
pages from MOVABLE or CMA blocks (never isolated ones, never free blocks of pageblock
order or more), so compaction moves pages *into* CMA blocks near the top of a zone. The
scan ends when the scanners meet (COMPACT_COMPLETE) or at a pageblock boundary once a
free block of the requested order exists (COMPACT_SUCCESS). Freed source pages go to the
per-CPU list and are drained after each pageblock (drain_local_pages()).

kcompactd (kcompactd_do_work()) compacts every zone up to kcompactd_highest_zoneidx for
kcompactd_max_order with the GFP_KERNEL migratetype (MIGRATE_UNMOVABLE: __compact_finished()
then ignores the CMA lists), skips a zone whose MIN mark already passes at that order
without ALLOC_CMA, and drains only that zone's per-CPU lists, only after COMPACT_COMPLETE.
It is woken by kswapd and by wakeup_kswapd() (wakeup.py), not by the allocation slow path.

Simplifications: no cached scanner positions, no skip bits, no deferral; async mode
only differs in which source blocks it considers; kcompactd's wake-up delay
(T_KCOMPACTD_PERIOD_NS) stands in for deferral.
"""

from cmasim.mm.jit import kjit, kjit_fixed, kjit_inline
from cmasim.mm.mmzone import (
    ALLOC_CMA, ALLOC_WMARK_MASK, ALLOC_WMARK_MIN, H_COST_NS, H_KCOMPACTD_HIGHEST, H_KCOMPACTD_NEXT,
    H_KCOMPACTD_ORDER, H_NZONES, H_PARAM, MIGRATE_CMA, MIGRATE_MOVABLE, MIGRATE_UNMOVABLE,
    NR_PAGE_ORDERS, OW_AREA_SHIFT, OW_KIND_MASK,
    PAGE_ALLOC_COSTLY_ORDER, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, PG_ALLOC, PG_BUDDY, PG_TAIL,
    T_MIGRATE_COST_NS,
    TR_COMPACTION_BEGIN, TR_COMPACTION_END,
    VM_COMPACT_DAEMON_WAKE, VM_COMPACT_FREE_SCANNED, VM_COMPACT_ISOLATED, VM_COMPACT_MIGRATE_SCANNED,
    VM_PGMIGRATE_SUCCESS, Z_AREA, Z_END, Z_IDX, Z_MANAGED, Z_START, Z_VM_NR_FREE, Z_WMARK_LOW, Z_WMARK_MIN,
    NODE_W, F_OWNER,
)
from cmasim.mm.folio import folio_is_movable, folio_maybe_dma_pinned, handle_move, release_block
from cmasim.mm.freelist import (
    free_list_id, free_list_mt, get_pfnblock_migratetype, list_empty, pi_list, pi_order, pi_state, pinfo,
    policy_version, set_pinfo, trace_emit, vm_add, zone_base,
)
from cmasim.mm.page_alloc import find_suitable_fallback, page_del_and_expand, should_try_claim_block
from cmasim.mm.pcp import drain_all_pages, drain_pages_zone
from cmasim.mm.wakeup import wakeup_kcompactd  # noqa: F401  (re-exported)
from cmasim.mm.watermark import __zone_watermark_ok, wmark_pages
from cmasim.mm.zone_stat import zone_page_state

COMPACT_SKIPPED = 1
COMPACT_CONTINUE = 2
COMPACT_COMPLETE = 3
COMPACT_SUCCESS = 4
EXTFRAG_THRESHOLD = 500  # vm.extfrag_threshold


@kjit
def fragmentation_index(C, zb, order):
    """__fragmentation_index() over the zone's free_area counts (x1000; -1000: would succeed)."""
    free_pages = 0
    blocks = 0
    suitable = 0
    for o in range(NR_PAGE_ORDERS):
        n = C[zb + Z_AREA + o]
        free_pages += n << o
        blocks += n
        if o >= order:
            suitable += n << (o - order)
    if blocks == 0:
        return 0
    if suitable:
        return -1000
    return 1000 - (1000 + free_pages * 1000 // (1 << order)) // blocks


@kjit
def compaction_suitable(C, zslot, order, highest):
    """compaction_suitable(): enough free memory for the migration targets, and a failure that
    is due to fragmentation rather than lack of memory (fragmentation index > 500). The free
    count is the folded zone_page_state(NR_FREE_PAGES). Kernel: mm/compaction.c
    compaction_suitable(), __compaction_suitable()."""
    zb = zone_base(C, zslot)
    mark = C[zb + Z_WMARK_LOW] if order > PAGE_ALLOC_COSTLY_ORDER else C[zb + Z_WMARK_MIN]
    mark += 2 << order
    if not __zone_watermark_ok(C, zslot, 0, mark, highest, ALLOC_CMA, zone_page_state(C, zb, Z_VM_NR_FREE)):
        return False
    if order > PAGE_ALLOC_COSTLY_ORDER:
        fi = fragmentation_index(C, zb, order)
        if fi >= 0 and fi <= EXTFRAG_THRESHOLD:
            return False
    return True


@kjit
def compaction_suit_allocation_order(C, zslot, order, highest, alloc_flags, is_async, kcompactd):
    """compaction_suit_allocation_order(): COMPACT_SUCCESS if the zone already passes the
    request's watermark at this order (nothing to do), COMPACT_SKIPPED if an async costly
    request without ALLOC_CMA lacks non-CMA free memory for the migration targets (v6.13+:
    the high-order page would otherwise form in CMA pageblocks it cannot use) or if
    compaction_suitable() fails, else COMPACT_CONTINUE.
    Kernel: mm/compaction.c compaction_suit_allocation_order() (v6.10+; the non-CMA check
    from "mm: compaction: skip memory compaction when there are not enough migratable
    pages", v6.13). Simplification: with vm.defrag_mode kcompactd would count
    NR_FREE_PAGES_BLOCKS; it uses NR_FREE_PAGES here. Both tests read the folded
    zone_page_state(NR_FREE_PAGES) (zone_watermark_ok())."""
    zb = zone_base(C, zslot)
    free = zone_page_state(C, zb, Z_VM_NR_FREE)
    mark = wmark_pages(C, zb, alloc_flags & ALLOC_WMARK_MASK)
    if __zone_watermark_ok(C, zslot, order, mark, highest, alloc_flags, free):
        return COMPACT_SUCCESS
    if (policy_version(C) >= 613 and order > PAGE_ALLOC_COSTLY_ORDER and is_async
            and not (alloc_flags & ALLOC_CMA)):
        if not __zone_watermark_ok(C, zslot, 0, mark + (2 << order), highest, 0, free):
            return COMPACT_SKIPPED
    if not compaction_suitable(C, zslot, order, highest):
        return COMPACT_SKIPPED
    return COMPACT_CONTINUE


@kjit
def __compact_finished(S, C, zslot, order, mt):
    """__compact_finished(): a free block of the order on the request's list (or CMA for
    MOVABLE), or a claimable fallback, exists."""
    for o in range(order, NR_PAGE_ORDERS):
        if not list_empty(C, free_list_id(C, zslot, o, mt)):
            return True
        if mt == MIGRATE_MOVABLE and not list_empty(C, free_list_id(C, zslot, o, MIGRATE_CMA)):
            return True
        if find_suitable_fallback(S, C, zslot, o, mt) >= 0 and should_try_claim_block(o, mt):
            return True
    return False


@kjit
def suitable_target_block(S, C, pfn):
    mt = get_pfnblock_migratetype(S, C, pfn)
    return mt == MIGRATE_MOVABLE or mt == MIGRATE_CMA


@kjit
def take_free_target(S, C, zslot, blk, order):
    """isolate_freepages_block(): a free block of at least `order` (below pageblock order) in
    pageblock `blk`, split down to `order`; -1 if none. Returns (pfn, pages scanned)."""
    pfn = blk
    end = blk + PAGEBLOCK_NR_PAGES
    scanned = 0
    while pfn < end:
        w = pinfo(S, C, pfn)
        o = pi_order(w)
        st = pi_state(w)
        if st == PG_TAIL:
            return -1, scanned + 1
        scanned += 1
        if st == PG_BUDDY:
            if o >= PAGEBLOCK_ORDER:
                return -1, scanned
            if o >= order:
                page_del_and_expand(S, C, zslot, pfn, order, o, free_list_mt(C, pi_list(w)))
                return pfn, scanned
        pfn += 1 << o
    return -1, scanned


@kjit_fixed
def compact_zone(S, C, cpu, zslot, order, mt, sync):
    """compact_zone(): run both scanners over the zone; returns a COMPACT_* status."""
    zb = zone_base(C, zslot)
    zstart = C[zb + Z_START]
    zend = C[zb + Z_END]
    migrate_pfn = (zstart + PAGEBLOCK_NR_PAGES - 1) & ~(PAGEBLOCK_NR_PAGES - 1)
    free_blk = (zend - PAGEBLOCK_NR_PAGES) & ~(PAGEBLOCK_NR_PAGES - 1)
    trace_emit(C, TR_COMPACTION_BEGIN, zstart, migrate_pfn, free_blk, zend, sync, 0, 0)
    status = COMPACT_CONTINUE
    cost = C[C[H_PARAM] + T_MIGRATE_COST_NS]
    if __compact_finished(S, C, zslot, order, mt):
        status = COMPACT_SUCCESS
    while status == COMPACT_CONTINUE:
        if migrate_pfn >= free_blk:
            status = COMPACT_COMPLETE
            break
        bmt = get_pfnblock_migratetype(S, C, migrate_pfn)
        suitable = True
        if not sync:
            if mt == MIGRATE_MOVABLE:
                suitable = bmt == MIGRATE_MOVABLE or bmt == MIGRATE_CMA
            else:
                suitable = bmt == mt
        if bmt == 5:  # MIGRATE_ISOLATE
            suitable = False
        moved = 0
        if suitable:
            pfn = migrate_pfn
            end = migrate_pfn + PAGEBLOCK_NR_PAGES
            if pi_state(pinfo(S, C, pfn)) == PG_TAIL:
                pfn = end
            while pfn < end and status == COMPACT_CONTINUE:
                w = pinfo(S, C, pfn)
                o = pi_order(w)
                vm_add(C, VM_COMPACT_MIGRATE_SCANNED, 1)
                if pi_state(w) == PG_ALLOC and o < PAGEBLOCK_ORDER:
                    ow = S[NODE_W * pfn + F_OWNER]
                    if folio_is_movable(ow) and not folio_maybe_dma_pinned(ow):
                        tgt = -1
                        while tgt < 0:
                            if free_blk <= migrate_pfn:
                                status = COMPACT_COMPLETE
                                break
                            if suitable_target_block(S, C, free_blk):
                                tgt, sc = take_free_target(S, C, zslot, free_blk, o)
                                vm_add(C, VM_COMPACT_FREE_SCANNED, sc)
                            if tgt < 0:
                                free_blk -= PAGEBLOCK_NR_PAGES
                        if tgt >= 0:
                            set_pinfo(S, C, tgt, o, PG_ALLOC, MIGRATE_MOVABLE, 0)
                            S[NODE_W * tgt + F_OWNER] = ow & (OW_KIND_MASK | (0x3F << OW_AREA_SHIFT))
                            handle_move(S, C, pfn, tgt)
                            release_block(S, C, cpu, pfn)
                            vm_add(C, VM_COMPACT_ISOLATED, 1 << o)
                            vm_add(C, VM_PGMIGRATE_SUCCESS, 1 << o)
                            C[H_COST_NS] += cost << o
                            moved += 1
                pfn += 1 << o
        if moved:
            drain_pages_zone(S, C, zslot, cpu)
        migrate_pfn += PAGEBLOCK_NR_PAGES
        if status == COMPACT_CONTINUE and __compact_finished(S, C, zslot, order, mt):
            status = COMPACT_SUCCESS
    trace_emit(C, TR_COMPACTION_END, zstart, migrate_pfn, free_blk, zend, sync, status, 0)
    return status


@kjit_fixed
def kcompactd_run(S, C):
    """kcompactd_do_work(): for every zone up to kcompactd_highest_zoneidx, unless
    compaction_suit_allocation_order(order, zone, ALLOC_WMARK_MIN, sync, kcompactd) says
    SUCCESS (the MIN mark already passes without ALLOC_CMA) or SKIPPED, compact it for
    kcompactd_max_order, MIGRATE_SYNC_LIGHT, GFP_KERNEL (MIGRATE_UNMOVABLE target); after
    COMPACT_COMPLETE drain that zone's per-CPU lists. Then forget the request.
    Kernel: mm/compaction.c kcompactd_do_work() (v6.18).
    A library of its own (kjit_fixed), not inlined into its one caller (clock.run_due_work):
    its tree is generated once more in a cold compile, but on worker processes it compiles
    while the allocator's slow path does, off the chain the compile waits on
    (cmasim.compile_pool; docs/performance.md, "Cold compile on two processes")."""
    C[H_KCOMPACTD_NEXT] = 0
    order = C[H_KCOMPACTD_ORDER]
    highest = C[H_KCOMPACTD_HIGHEST] - 1
    if highest < 0:
        highest = C[zone_base(C, C[H_NZONES] - 1) + Z_IDX]
    C[H_KCOMPACTD_ORDER] = 0
    C[H_KCOMPACTD_HIGHEST] = 0
    if order == 0:
        return
    vm_add(C, VM_COMPACT_DAEMON_WAKE, 1)
    for z in range(C[H_NZONES]):
        zb = zone_base(C, z)
        zidx = C[zb + Z_IDX]
        if zidx > highest or C[zb + Z_MANAGED] == 0:
            continue
        if compaction_suit_allocation_order(C, z, order, zidx, ALLOC_WMARK_MIN, False, True) != COMPACT_CONTINUE:
            continue
        status = compact_zone(S, C, 0, z, order, MIGRATE_UNMOVABLE, 1)
        if status == COMPACT_COMPLETE:
            drain_all_pages(S, C, z)
