"""Reclaim: kswapd in the background and direct reclaim in the allocation slow path.

Kernel: mm/vmscan.c — kswapd()/kswapd_try_to_sleep()/balance_pgdat() (reclaim until the node
is balanced by pgdat_balanced(), boost reclaim without swap or writeback, then subtract the
boosts and wake kcompactd), set_reclaim_active()/clear_reclaim_active(),
kswapd_shrink_node() (drop to order 0 once compact_gap(order) pages are reclaimed),
try_to_free_pages() with SWAP_CLUSTER_MAX pages per round (ALLOCSTALL counted per call),
shrink_folio_list() (clean page cache is dropped, dirty page cache is written back first,
anonymous pages are swapped out while swap lasts), zone_reclaimable_pages(). Checked
against v6.18; the rules used here are the same in v6.1.

Simplifications (docs/model.md): there are no LRU lists; victims are found by sampling
random pfns of the zone and taking the allocated block there if it is reclaimable and
unpinned (an age-blind stand-in for the inactive LRU). kswapd reclaims at a configured
rate (T_KSWAPD_RATE pages per simulated second) in periodic steps; one step stands for one
pass of balance_pgdat()'s priority loop, and a step that reclaims nothing ends the run
(the kernel lowers the priority up to 12 times and counts a kswapd failure; kswapd then
sleeps here until the next wakeup_kswapd()). Reclaim is per zone (zones up to the run's
highest_zoneidx that fail the balance test, highest first) instead of node-wide LRUs.
Written-back dirty pages become clean at once. Reclaimable slab (shrinkers) is not
reclaimed. The wake-up side (wakeup_kswapd(), pgdat_balanced()) lives in wakeup.py.
"""

from cmasim.mm.jit import kjit, kjit_fixed, kjit_inline
from cmasim.mm.mmzone import (
    ALLOC_WMARK_HIGH, H_COST_NS, H_KSWAPD_BOOST_LEFT, H_KSWAPD_HIGHEST, H_KSWAPD_NEXT, H_KSWAPD_ORDER,
    H_KSWAPD_RECLAIMED, H_KSWAPD_RUN, H_KSWAPD_RUN_ALLOC_ORDER, H_KSWAPD_RUN_HIGHEST, H_KSWAPD_RUN_ORDER,
    H_NOW, H_NZONES, H_PARAM, MAX_NR_ZONES,
    OW_ANON, OW_FILE, OW_FILE_DIRTY, OW_KIND_MASK, PAGEBLOCK_ORDER, PG_ALLOC, PG_TAIL,
    T_CLEAN_DROP_COST_NS, T_KSWAPD_PERIOD_NS, T_KSWAPD_RATE, T_RECLAIM_ENABLED, T_SWAP_COST_NS, T_SWAP_FREE,
    VM_ALLOCSTALL, VM_PGSCAN_DIRECT, VM_PGSCAN_KSWAPD, VM_PGSTEAL_DIRECT, VM_PGSTEAL_KSWAPD, VM_PGWRITEBACK,
    VM_PSWPOUT, Z_BOOST, Z_BOOST_RECLAIM, Z_END, Z_FLAGS, Z_IDX, Z_LOWMEM, Z_MANAGED, Z_START,
    ZONE_RECLAIM_ACTIVE,
    NODE_W, F_OWNER,
)
from cmasim.mm.folio import folio_maybe_dma_pinned, reclaim_take
from cmasim.mm.freelist import pi_order, pi_state, pinfo, vm_add, zone_base
from cmasim.mm.page_alloc import block_head
from cmasim.mm.prandom import prandom_u32
from cmasim.mm.watermark import __zone_watermark_ok, free_pages_safe, wmark_pages, zone_watermark_unusable_free
from cmasim.mm.zone_stat import set_pgdat_percpu_threshold
from cmasim.mm.wakeup import (  # noqa: F401  (re-exported)
    pgdat_balanced, pgdat_watermark_boosted, wake_all_kswapds, wakeup_kcompactd, wakeup_kswapd,
)

SWAP_CLUSTER_MAX = 32
SAMPLE_TRIES = 256


@kjit_inline
def param(C, t):
    return C[C[H_PARAM] + t]


@kjit
def pick_reclaim_victim(S, C, zslot, may_swap, may_writepage):
    """Sample pfns of the zone for a reclaimable, unpinned allocated block (see module doc).

    Returns (head pfn or -1, pages scanned). A sampled block counts as scanned (pgscan_*) when
    the kernel's LRU scan would have isolated it: page cache always, anonymous memory only
    while swap is left and may_swap (get_scan_count() scans no anon LRU without swap), pinned
    folios included (shrink_folio_list() isolates them, then keeps them). So every page
    reclaimed was scanned first and pgscan >= pgsteal.
    Kernel: mm/vmscan.c shrink_inactive_list() (nr_scanned -> PGSCAN_KSWAPD/PGSCAN_DIRECT,
    counted in pages), shrink_folio_list(), pageout().
    """
    zb = zone_base(C, zslot)
    start = C[zb + Z_START]
    span = C[zb + Z_END] - start
    scanned = 0
    for _ in range(SAMPLE_TRIES):
        q = start + prandom_u32(C) % span
        h = block_head(S, C, zb, q)
        if h < 0 or pi_state(pinfo(S, C, h)) != PG_ALLOC:
            continue
        ow = S[NODE_W * h + F_OWNER]
        kind = ow & OW_KIND_MASK
        pages = 1 << pi_order(pinfo(S, C, h))
        swappable = kind == OW_ANON and may_swap and C[C[H_PARAM] + T_SWAP_FREE] >= pages
        if kind != OW_FILE and kind != OW_FILE_DIRTY and not swappable:
            continue
        scanned += pages
        if folio_maybe_dma_pinned(ow):
            continue
        if kind == OW_FILE_DIRTY:
            if may_writepage:
                # pageout(): start writeback; the page is clean (reclaimable) next time.
                S[NODE_W * h + F_OWNER] = (ow & ~OW_KIND_MASK) | OW_FILE
                vm_add(C, VM_PGWRITEBACK, pages)
            continue
        return h, scanned
    return -1, scanned


@kjit_fixed
def shrink_zone(S, C, cpu, zslot, nr_to_reclaim, direct, may_swap, may_writepage):
    """shrink_node()/shrink_folio_list() for one zone: reclaim up to nr_to_reclaim pages.

    pgscan_* and pgsteal_* both count pages (mm/vmscan.c shrink_inactive_list()). With the
    model's reclaim switched off (scenario reclaim.enabled = false) nothing is reclaimed, by
    kswapd (which still runs, for its boost bookkeeping) or directly.
    """
    if param(C, T_RECLAIM_ENABLED) == 0:
        return 0
    reclaimed = 0
    scanned = 0
    while reclaimed < nr_to_reclaim:
        h, sc = pick_reclaim_victim(S, C, zslot, may_swap, may_writepage)
        scanned += sc
        if h < 0:
            break
        pages = 1 << pi_order(pinfo(S, C, h))
        if (S[NODE_W * h + F_OWNER] & OW_KIND_MASK) == OW_ANON:
            C[C[H_PARAM] + T_SWAP_FREE] -= pages
            vm_add(C, VM_PSWPOUT, pages)
            C[H_COST_NS] += pages * param(C, T_SWAP_COST_NS)
        else:
            C[H_COST_NS] += pages * param(C, T_CLEAN_DROP_COST_NS)
        reclaim_take(S, C, cpu, h)
        reclaimed += pages
    if direct:
        vm_add(C, VM_PGSTEAL_DIRECT, reclaimed)
        vm_add(C, VM_PGSCAN_DIRECT, scanned)
    else:
        vm_add(C, VM_PGSTEAL_KSWAPD, reclaimed)
        vm_add(C, VM_PGSCAN_KSWAPD, scanned)
    return reclaimed


@kjit
def zone_reclaimable_pages(S, C, zslot):
    """zone_reclaimable_pages(): pages on the zone's file LRUs, plus its anon LRUs while swap
    is left (can_reclaim_anon_pages()); pinned folios count (they stay on the LRU). The
    model has no LRU lists, so the zone's allocated blocks are walked; 0 with reclaim off.
    Kernel: mm/vmscan.c zone_reclaimable_pages()."""
    if param(C, T_RECLAIM_ENABLED) == 0:
        return 0
    zb = zone_base(C, zslot)
    swap = param(C, T_SWAP_FREE) > 0
    n = 0
    p = C[zb + Z_START]
    end = C[zb + Z_END]
    while p < end:
        w = pinfo(S, C, p)
        if pi_state(w) == PG_TAIL:
            p += 1
            continue
        pages = 1 << pi_order(w)
        if pi_state(w) == PG_ALLOC:
            kind = S[NODE_W * p + F_OWNER] & OW_KIND_MASK
            if kind == OW_FILE or kind == OW_FILE_DIRTY or (kind == OW_ANON and swap):
                n += pages
        p += pages
    return n


@kjit
def set_reclaim_active(C, highest, on):
    """set_reclaim_active()/clear_reclaim_active(): ZONE_RECLAIM_ACTIVE on every managed zone up
    to highest while balance_pgdat() runs (pcp.py's nr_pcp_high() then caps pcp->high).
    Kernel: mm/vmscan.c set_reclaim_active(), clear_reclaim_active() (v5.14+)."""
    for z in range(C[H_NZONES]):
        zb = zone_base(C, z)
        if C[zb + Z_IDX] > highest or C[zb + Z_MANAGED] == 0:
            continue
        if on:
            C[zb + Z_FLAGS] |= ZONE_RECLAIM_ACTIVE
        else:
            C[zb + Z_FLAGS] &= ~ZONE_RECLAIM_ACTIVE


@kjit
def kswapd_zone_shortfall(C, z, order, highest):
    """Pages zone z lacks to pass the balance test (high mark + boost, alloc_flags 0, the
    run's order and highest_zoneidx); SWAP_CLUSTER_MAX when only the order is missing. The
    free count is pgdat_balanced()'s (folded, or the snapshot below the percpu_drift_mark)."""
    zb = zone_base(C, z)
    mark = wmark_pages(C, zb, ALLOC_WMARK_HIGH)
    free = free_pages_safe(C, zb)
    if __zone_watermark_ok(C, z, order, mark, highest, 0, free):
        return 0
    usable = free - zone_watermark_unusable_free(C, zb, order, 0)
    need = mark + C[zb + Z_LOWMEM + highest] - usable + 1
    return need if need > SWAP_CLUSTER_MAX else SWAP_CLUSTER_MAX


@kjit
def balance_pgdat_start(C):
    """kswapd(): read and reset kswapd_order / kswapd_highest_zoneidx, then start
    balance_pgdat(): record each eligible zone's boost (zone_boosts[], nr_boost_reclaim) and
    set ZONE_RECLAIM_ACTIVE. Kernel: mm/vmscan.c kswapd(), balance_pgdat()."""
    order = C[H_KSWAPD_ORDER]
    highest = C[H_KSWAPD_HIGHEST] - 1 if C[H_KSWAPD_HIGHEST] > 0 else MAX_NR_ZONES - 1
    C[H_KSWAPD_ORDER] = 0
    C[H_KSWAPD_HIGHEST] = 0
    C[H_KSWAPD_RUN] = 1
    C[H_KSWAPD_RUN_ORDER] = order
    C[H_KSWAPD_RUN_ALLOC_ORDER] = order
    C[H_KSWAPD_RUN_HIGHEST] = highest
    C[H_KSWAPD_RECLAIMED] = 0
    boost = 0
    for z in range(C[H_NZONES]):
        zb = zone_base(C, z)
        C[zb + Z_BOOST_RECLAIM] = 0
        if C[zb + Z_IDX] <= highest and C[zb + Z_MANAGED] > 0:
            C[zb + Z_BOOST_RECLAIM] = C[zb + Z_BOOST]
            boost += C[zb + Z_BOOST]
    C[H_KSWAPD_BOOST_LEFT] = boost
    set_reclaim_active(C, highest, True)


@kjit
def balance_pgdat_end(C):
    """The end of balance_pgdat() and kswapd_try_to_sleep(): clear ZONE_RECLAIM_ACTIVE; if the
    run was boosted, subtract the boosts recorded at its start and wake kcompactd at
    pageblock order; if the node is balanced at the order kswapd reclaimed for, wake
    kcompactd for the order it was asked for and sleep. A request that arrived during the
    run starts the next run. Kernel: mm/vmscan.c balance_pgdat() (out:),
    kswapd_try_to_sleep(), prepare_kswapd_sleep(); kswapd_try_to_sleep() restores the normal
    vmstat threshold (set_pgdat_percpu_threshold(calculate_normal_threshold)) before it sleeps."""
    highest = C[H_KSWAPD_RUN_HIGHEST]
    set_reclaim_active(C, highest, False)
    boosted = False
    for z in range(C[H_NZONES]):
        zb = zone_base(C, z)
        b = C[zb + Z_BOOST_RECLAIM]
        if b > 0:
            boosted = True
            C[zb + Z_BOOST] -= b if b < C[zb + Z_BOOST] else C[zb + Z_BOOST]
            C[zb + Z_BOOST_RECLAIM] = 0
    if boosted:
        wakeup_kcompactd(C, PAGEBLOCK_ORDER, highest)
    if pgdat_balanced(C, C[H_KSWAPD_RUN_ORDER], highest):
        wakeup_kcompactd(C, C[H_KSWAPD_RUN_ALLOC_ORDER], highest)
    C[H_KSWAPD_RUN] = 0
    if C[H_KSWAPD_HIGHEST] > 0:
        C[H_KSWAPD_NEXT] = C[H_NOW] + param(C, T_KSWAPD_PERIOD_NS)
    else:
        C[H_KSWAPD_NEXT] = 0
        set_pgdat_percpu_threshold(C, False)  # kswapd_try_to_sleep(): normal threshold, then sleep


@kjit_fixed
def kswapd_run(S, C):
    """One kswapd step: one pass of balance_pgdat()'s loop, reclaiming up to one period's
    budget. Boost reclaim (the node is balanced but zones are boosted) neither swaps nor
    writes back; an unbalanced node drops the boost reclaim and reclaims normally. The run
    ends when the node is balanced and no boost is left to reclaim, or when a step makes
    no progress. Kernel: mm/vmscan.c balance_pgdat(), kswapd_shrink_node().
    A library of its own (kjit_fixed), not inlined into its one caller (clock.run_due_work):
    its tree is generated once more in a cold compile, but on worker processes it compiles
    while the allocator's slow path does, off the chain the compile waits on
    (cmasim.compile_pool; docs/performance.md, "Cold compile on two processes")."""
    if C[H_KSWAPD_RUN] == 0:
        balance_pgdat_start(C)
    highest = C[H_KSWAPD_RUN_HIGHEST]
    order = C[H_KSWAPD_RUN_ORDER]
    balanced = pgdat_balanced(C, order, highest)
    if not balanced and C[H_KSWAPD_BOOST_LEFT] > 0:
        C[H_KSWAPD_BOOST_LEFT] = 0  # "ignore boosting ... and restart"
    boost_left = C[H_KSWAPD_BOOST_LEFT]
    if balanced and boost_left == 0:
        balance_pgdat_end(C)
        return
    budget = param(C, T_KSWAPD_RATE) * param(C, T_KSWAPD_PERIOD_NS) // 1_000_000_000
    if budget < SWAP_CLUSTER_MAX:
        budget = SWAP_CLUSTER_MAX
    may_io = boost_left == 0
    got = 0
    for z in range(C[H_NZONES] - 1, -1, -1):
        zb = zone_base(C, z)
        if C[zb + Z_IDX] > highest or C[zb + Z_MANAGED] == 0 or got >= budget:
            continue
        if boost_left > 0:
            need = C[zb + Z_BOOST_RECLAIM] if C[zb + Z_BOOST_RECLAIM] < boost_left - got else boost_left - got
        else:
            need = kswapd_zone_shortfall(C, z, order, highest)
        if need <= 0:
            continue
        if need > budget - got:
            need = budget - got
        got += shrink_zone(S, C, 0, z, need, False, may_io, may_io)
    C[H_KSWAPD_RECLAIMED] += got
    if order > 0 and C[H_KSWAPD_RECLAIMED] >= (2 << order):
        C[H_KSWAPD_RUN_ORDER] = 0  # kswapd_shrink_node(): enough for compaction, balance at order 0
    if boost_left > 0:
        C[H_KSWAPD_BOOST_LEFT] = boost_left - got if got < boost_left else 0
    if got == 0:
        balance_pgdat_end(C)
    else:
        C[H_KSWAPD_NEXT] = C[H_NOW] + param(C, T_KSWAPD_PERIOD_NS)


@kjit
def try_to_free_pages(S, C, cpu, pref, highest):
    """try_to_free_pages(): one direct-reclaim round of SWAP_CLUSTER_MAX pages over the
    zonelist; counts ALLOCSTALL at the request's highest zone index (do_try_to_free_pages(),
    sc->reclaim_idx = gfp_zone()). Returns the pages reclaimed (did_some_progress)."""
    vm_add(C, VM_ALLOCSTALL + highest, 1)
    if param(C, T_RECLAIM_ENABLED) == 0:
        return 0
    total = 0
    for z in range(pref, -1, -1):
        total += shrink_zone(S, C, cpu, z, SWAP_CLUSTER_MAX - total, True, True, True)
        if total >= SWAP_CLUSTER_MAX:
            break
    return total
