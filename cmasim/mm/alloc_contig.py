"""alloc_contig_range(): claim a specific physical range — the heart of cma_alloc().

Kernel: mm/page_alloc.c alloc_contig_range_noprof() and __alloc_contig_migrate_range(),
isolate_freepages_range(), split_free_pages(), free_contig_range(); mm/compaction.c
isolate_migratepages_range()/isolate_migratepages_block() (the batch collection).

Steps (kernel-model.md §7):
1. isolate every pageblock touching [start, end) (CMA blocks skip the unmovable check);
2. drain_all_pages(zone): per-CPU pages of the range now land on the ISOLATE lists;
3. migrate the in-use pages in batches of 32 base pages (COMPACT_CLUSTER_MAX counted with
   folio_nr_pages(), so a THP ends a batch); a batch is retried at most 5 times; a THP whose
   order-9 target cannot be allocated is split by migrate_pages() and its base pages stay
   in the batch for the remaining tries (R_SPLITS counts them); clean unpinned page cache is
   dropped instead (reclaim_clean_pages_from_list());
   pinned anonymous pages are skipped by isolate_migratepages_block() (refcount > mapcount),
   pinned page-cache pages fail every migrate_pages() pass;
4. test_pages_isolated(outer_start, end): every page must now be free, else -EBUSY;
5. take the free buddies, split them into order-0 pages owned by the device, give back
   [outer_start, start) and [end, outer_end);
6. undo the isolation (always).
Simulated cost (docs/model.md "Cost model"): T_CONTIG_CALL_COST_NS per call,
T_ISOLATE_COST_NS per pageblock, T_DRAIN_COST_NS per drain, T_SCAN_COST_NS per pfn the
migrate scanner walks, T_TEST_COST_NS per pfn test_pages_isolated() checks, plus the
migration cost (cmasim.mm.migrate.migrate_cost, T_MIGRATE_FAIL_COST_NS per failed folio
attempt), accumulated in C[H_COST_NS].

Time passes while the range is processed: after isolation, the drain, each batch's scan
(its clean-page drops) and every folio migration attempt of every migrate_pages() pass, the
simulated clock advances by the work done (cmasim.clock.advance_clock), so pin timers and
pinner threads run meanwhile. A range then fails with -EBUSY in the two ways the kernel's
does (R_CAUSE): a page pinned when the migrate scanner reaches it is skipped and later makes
test_pages_isolated() fail ("skipped at the isolation scan"); a page isolated into a batch
and pinned before it moves fails every pass of 5 migrate_pages() calls and the range gives
up ("migration gave up"). The scan costs T_SCAN_COST_NS per pfn (0 by default: tens of ns per pfn in a kernel).
The synthetic churn does not run during the call. Fatal signals are not modelled.
"""

import numpy as np

from cmasim.clock import advance_clock
from cmasim.mm.jit import kjit, kjit_inline
from cmasim.mm.mmzone import (
    GFP_DIRECT_RECLAIM_, GFP_FS_, GFP_HARDWALL_, GFP_IO_, GFP_KSWAPD_RECLAIM_, GFP_MOVABLE_,
    GFP_RETRY_MAYFAIL_, H_COST_NS, H_NOW, H_PARAM, H_VM, MAX_PAGE_ORDER, MIGRATE_ISOLATE, MIGRATE_SYNC,
    MIGRATE_UNMOVABLE, VM_THP_SPLIT_PAGE,
    MR_CONTIG_RANGE, OW_ANON, OW_AREA_SHIFT, OW_DEVICE, OW_FILE, OW_KIND_MASK, T_CLEAN_DROP_COST_NS,
    VM_CONTIG_RECLAIMED, VM_PGFREE, PAGEBLOCK_NR_PAGES, PG_ALLOC,
    PG_BUDDY, PG_TAIL, T_CONTIG_CALL_COST_NS, T_DRAIN_COST_NS, T_ISOLATE_COST_NS, T_SCAN_COST_NS,
    T_TEST_COST_NS,
    NODE_W, F_OWNER,
)
from cmasim.mm.folio import folio_is_movable, folio_maybe_dma_pinned, owner, reclaim_take
from cmasim.mm.freelist import (
    __del_page_from_free_list, pageblock_zone, pi_order, pi_state, pinfo, policy_version, set_pinfo, vm_add,
    zone_base,
)
from cmasim.mm.migrate import (
    EBUSY, EINVAL, ENOMEM, MIG_NOMEM, MIG_RETRY, NR_MAX_MIGRATE_PAGES_RETRY, migrate_entry, migrate_pages_account,
    migrate_split_entry, split_passes,
)
from cmasim.mm.page_alloc import block_head, free_one_page
from cmasim.mm.page_isolation import start_isolate_page_range, test_pages_isolated, undo_isolate_page_range
from cmasim.mm.pcp import drain_all_pages

GFP_CONTIG_TARGET = (GFP_DIRECT_RECLAIM_ | GFP_KSWAPD_RECLAIM_ | GFP_IO_ | GFP_FS_ | GFP_HARDWALL_
                     | GFP_MOVABLE_ | GFP_RETRY_MAYFAIL_)
COMPACT_CLUSTER_MAX = 32
CONTIG_MAX_TRIES = 5
# Migration list room: a batch of < 32 pages plus one folio of up to MAX_PAGE_ORDER, and the
# base pages migrate_pages() appends when it splits large folios of the batch.
MIGRATE_LIST_CAP = 2 * COMPACT_CLUSTER_MAX + (1 << MAX_PAGE_ORDER)

# Result slots written to `res` (int64[8]) by alloc_contig_range().
R_RET = 0
R_FIN_PFN = 1  # first busy pfn found by test_pages_isolated (or end)
R_MIGRATED = 2  # pages migrated
R_FAILED = 3  # pages that failed to migrate (last round)
R_PINNED_SKIPPED = 4  # pinned anonymous blocks skipped by isolation
R_COST_NS = 5
R_SPLITS = 6  # THPs split because no order-9 migration target could be allocated
R_CAUSE = 7  # why an -EBUSY range failed: BUSY_GAVE_UP or BUSY_LEFT_BEHIND (0 otherwise)

BUSY_GAVE_UP = 1  # "migration gave up": a batch still failed after 5 migrate_pages() calls
BUSY_LEFT_BEHIND = 2  # test_pages_isolated() found a page the scan skipped (pinned anon) or left


@kjit
def isolate_migratepages_range(S, C, zb, pfn, end, lst):
    """mm/compaction.c:isolate_migratepages_range()/isolate_migratepages_block() for
    alloc_contig_range(): collect movable in-use blocks from pfn upward until the batch holds
    COMPACT_CLUSTER_MAX (32) **base pages** (`cc->nr_migratepages += folio_nr_pages()`, so a
    THP ends a batch by itself) or the range ends. Pinned anonymous blocks are skipped
    (`!mapping && refcount - 1 > mapcount`).

    A pfn inside an allocated block whose head lies below it (the range starts inside a large
    folio): the kernel's folio_get_nontail_page() finds a tail page with refcount 0 and every
    pfn of the folio fails isolation, so the folio is skipped, not migrated (6.1 and 6.18
    alike); test_pages_isolated() then fails at that pfn.

    Returns (next pfn, number collected, pinned blocks skipped)."""
    n = 0
    pages = 0
    skipped = 0
    pfn0 = pfn
    if pfn < end and pi_state(pinfo(S, C, pfn)) == PG_TAIL:
        h = block_head(S, C, zb, pfn)
        if h >= 0 and h < pfn:
            pfn = h + (1 << pi_order(pinfo(S, C, h)))
    while pfn < end and pages < COMPACT_CLUSTER_MAX:
        w = pinfo(S, C, pfn)
        st = pi_state(w)
        if st == PG_ALLOC:
            ow = owner(S, C, pfn)
            if folio_is_movable(ow):
                if folio_maybe_dma_pinned(ow) and (ow & OW_KIND_MASK) == OW_ANON:
                    skipped += 1
                else:
                    lst[n] = pfn
                    n += 1
                    pages += 1 << pi_order(w)
        pfn += 1 << pi_order(w)
    C[H_COST_NS] += (min(pfn, end) - pfn0) * C[C[H_PARAM] + T_SCAN_COST_NS]
    return pfn, n, skipped


@kjit_inline
def pass_time(S, C, scratch):
    """Advance the clock by the work accumulated since the last call (scratch[3] holds the mark).
    Inlined into its callers (kjit_inline): not compiled as a library of its own, which would
    generate its whole call tree once more in a cold compile (docs/performance.md)."""
    delta = C[H_COST_NS] - scratch[3]
    if delta > 0:
        advance_clock(S, C, C[H_NOW] + delta, scratch)
    scratch[3] = C[H_COST_NS]


@kjit_inline
def migrate_pages_timed(S, C, cpu, pfns, n, gfp, mode, reason, scratch):
    """migrate_pages() (cmasim.mm.migrate.migrate_pages, same passes, splits and results) with
    the simulated clock advancing by the work of every folio attempt, so pins start and end
    between the batch's collection and its migration and across the passes: a page isolated
    into the batch and pinned before it moves fails with -EAGAIN until the pin ends.
    Inlined into its one caller (kjit_inline): not compiled as a library of its own, which
    would generate its whole call tree once more in a cold compile (docs/performance.md)."""
    n_in = n
    ok_pages = 0
    nomem = False
    for _ in range(NR_MAX_MIGRATE_PAGES_RETRY):
        retry = False
        for i in range(n_in):
            if pfns[i] < 0:
                continue
            ok, code, n = migrate_entry(S, C, cpu, pfns, i, n, gfp, reason)
            pass_time(S, C, scratch)
            ok_pages += ok
            if code == MIG_RETRY:
                retry = True
            elif code == MIG_NOMEM:
                nomem = True
                break
        if not retry or nomem:
            break
    if not nomem and n > n_in:
        for _ in range(split_passes(C)):
            retry = False
            stop = False
            for i in range(n_in, n):
                if pfns[i] < 0:
                    continue
                ok, code = migrate_split_entry(S, C, cpu, pfns, i, gfp)
                pass_time(S, C, scratch)
                ok_pages += ok
                if code == MIG_RETRY:
                    retry = True
                elif code == MIG_NOMEM:
                    stop = True
                    nomem = policy_version(C) < 603
                    break
            if stop or not retry:
                break
    failed_pages = migrate_pages_account(S, C, pfns, n, ok_pages, mode, reason)
    return ok_pages, failed_pages, nomem, n


@kjit_inline
def __alloc_contig_migrate_range(S, C, cpu, zb, start, end, res, scratch):
    """__alloc_contig_migrate_range(): 0, -EBUSY (a batch failed 5 times) or -ENOMEM.
    Inlined into its one caller (kjit_inline): not compiled as a library of its own, which
    would generate its whole call tree once more in a cold compile (docs/performance.md)."""
    lst = np.empty(2 * MIGRATE_LIST_CAP, dtype=np.int64)
    pfn = start
    n = 0
    tries = 0
    ret = 0
    while True:
        remaining = 0
        for i in range(n):
            if lst[i] >= 0:
                remaining += 1
        if remaining == 0:
            if pfn >= end:
                break
            pfn, n, skipped = isolate_migratepages_range(S, C, zb, pfn, end, lst)
            res[R_PINNED_SKIPPED] += skipped
            tries = 0
            # reclaim_clean_pages_from_list(): clean, unpinned page cache is simply dropped.
            for i in range(n):
                q = lst[i]
                ow = owner(S, C, q)
                if (ow & OW_KIND_MASK) == OW_FILE and not folio_maybe_dma_pinned(ow):
                    pages = 1 << pi_order(pinfo(S, C, q))
                    reclaim_take(S, C, cpu, q)
                    C[H_COST_NS] += pages * C[C[H_PARAM] + T_CLEAN_DROP_COST_NS]
                    vm_add(C, VM_CONTIG_RECLAIMED, pages)
                    lst[i] = -1
            pass_time(S, C, scratch)  # the scan's clean-page drops take time before migration starts
            if n == 0:
                continue
        else:
            tries += 1
            if tries == CONTIG_MAX_TRIES:
                ret = EBUSY
                res[R_CAUSE] = BUSY_GAVE_UP
                break
        splits0 = C[C[H_VM] + VM_THP_SPLIT_PAGE]
        ok, failed, nomem, n = migrate_pages_timed(S, C, cpu, lst, n, GFP_CONTIG_TARGET, MIGRATE_SYNC,
                                                   MR_CONTIG_RANGE, scratch)
        res[R_SPLITS] += C[C[H_VM] + VM_THP_SPLIT_PAGE] - splits0
        pass_time(S, C, scratch)
        res[R_MIGRATED] += ok
        res[R_FAILED] = failed
        if nomem:
            ret = ENOMEM
            break
    return ret


@kjit
def alloc_contig_range(S, C, cpu, start, end, cma_request, area_id, res):
    """alloc_contig_range(start, end): on success the pages [start, end) are allocated as
    order-0 device pages of CMA area `area_id`. Returns 0, -EBUSY, -ENOMEM or -EINVAL; details
    in `res` (R_* slots).

    Every outcome but -EINVAL leaves through one exit (the remaining work's time passes, then
    the report): `pass_time` is inlined, and numba's IR inliner types its body (and
    `advance_clock`'s) again at each call site, so each extra exit was another copy to
    compile (docs/performance.md, "Cold compile")."""
    for i in range(res.shape[0]):
        res[i] = 0
    cost0 = C[H_COST_NS]
    scratch = np.zeros(4, dtype=np.int64)
    scratch[3] = cost0
    zslot = pageblock_zone(S, C, start)
    if end <= start or pageblock_zone(S, C, end - 1) != zslot:
        res[R_RET] = EINVAL
        return EINVAL
    ret = __alloc_contig_range(S, C, cpu, zslot, start, end, cma_request, area_id, res, scratch)
    pass_time(S, C, scratch)
    res[R_RET] = ret
    res[R_COST_NS] = C[H_COST_NS] - cost0
    return ret


@kjit_inline
def __alloc_contig_range(S, C, cpu, zslot, start, end, cma_request, area_id, res, scratch):
    """The body of alloc_contig_range() for a valid range: steps 1-6 of the module docstring;
    returns 0, -EBUSY or -ENOMEM, the caller's one exit does the rest.
    Inlined into its one caller (kjit_inline): not compiled as a library of its own, which
    would generate its whole call tree once more in a cold compile (docs/performance.md)."""
    zb = zone_base(C, zslot)
    ret = start_isolate_page_range(S, C, zslot, start, end, cma_request)
    nblocks = ((end + PAGEBLOCK_NR_PAGES - 1) // PAGEBLOCK_NR_PAGES) - start // PAGEBLOCK_NR_PAGES
    C[H_COST_NS] += nblocks * C[C[H_PARAM] + T_ISOLATE_COST_NS] + C[C[H_PARAM] + T_CONTIG_CALL_COST_NS]
    if ret != 0:
        res[R_FIN_PFN] = start
        return ret
    pass_time(S, C, scratch)
    drain_all_pages(S, C, zslot)
    C[H_COST_NS] += C[C[H_PARAM] + T_DRAIN_COST_NS]
    pass_time(S, C, scratch)
    ret = __alloc_contig_migrate_range(S, C, cpu, zb, start, end, res, scratch)
    if ret != 0 and ret != EBUSY:
        undo_isolate_page_range(S, C, zslot, start, end)
        return ret
    outer_start = start
    if pi_state(pinfo(S, C, start)) != PG_BUDDY:
        h = block_head(S, C, zb, start)
        if h >= 0 and pi_state(pinfo(S, C, h)) == PG_BUDDY:
            outer_start = h
    fin = test_pages_isolated(S, C, outer_start, end)
    C[H_COST_NS] += (fin - outer_start) * C[C[H_PARAM] + T_TEST_COST_NS]
    res[R_FIN_PFN] = fin
    if fin < end:
        if res[R_CAUSE] == 0:
            res[R_CAUSE] = BUSY_LEFT_BEHIND
        undo_isolate_page_range(S, C, zslot, start, end)
        return EBUSY
    # isolate_freepages_range() + split_free_pages(): every page becomes an order-0 device page.
    outer_end = end
    pfn = outer_start
    while pfn < end:
        w = pinfo(S, C, pfn)
        o = pi_order(w)
        __del_page_from_free_list(S, C, zslot, pfn, o, MIGRATE_ISOLATE)
        for q in range(pfn, pfn + (1 << o)):
            set_pinfo(S, C, q, 0, PG_ALLOC, MIGRATE_UNMOVABLE, 0)
            S[NODE_W * q + F_OWNER] = OW_DEVICE | (area_id << OW_AREA_SHIFT)
        pfn += 1 << o
        outer_end = pfn
    # free_contig_range() of the surplus head and tail (they fall into isolated blocks).
    for q in range(outer_start, start):
        S[NODE_W * q + F_OWNER] = 0
        free_one_page(S, C, zslot, q, 0, False)
        vm_add(C, VM_PGFREE, 1)
    for q in range(end, outer_end):
        S[NODE_W * q + F_OWNER] = 0
        free_one_page(S, C, zslot, q, 0, False)
        vm_add(C, VM_PGFREE, 1)
    undo_isolate_page_range(S, C, zslot, start, end)
    return 0


@kjit
def range_owned_by(S, C, start, end, area_id):
    """True when every page of [start, end) is an order-0 device page of `area_id` (cma_release check)."""
    for q in range(start, end):
        w = pinfo(S, C, q)
        if pi_state(w) != PG_ALLOC or pi_order(w) != 0:
            return False
        ow = S[NODE_W * q + F_OWNER]
        if (ow & OW_KIND_MASK) != OW_DEVICE or (ow >> OW_AREA_SHIFT) != area_id:
            return False
    return True
