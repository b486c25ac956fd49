"""Reclaim: kswapd in the background and direct reclaim in the allocation slow path.

Kernel: mm/vmscan.c — wakeup_kswapd(), kswapd()/balance_pgdat() (reclaim until every zone
is above its high watermark, then reset the watermark boost), try_to_free_pages() with
SWAP_CLUSTER_MAX pages per round, shrink_folio_list() (clean page cache is dropped, dirty
page cache is written back first, anonymous pages are swapped out while swap lasts).

Simplifications (docs/model.md): there are no LRU lists; victims are found by sampling
random pfns of the zone and taking the allocated block there if it is reclaimable and
unpinned (an age-blind stand-in for the inactive LRU). kswapd reclaims at a configured
rate (T_KSWAPD_RATE pages per simulated second) in periodic steps. Written-back dirty
pages become clean at once. Reclaimable slab (shrinkers) is not reclaimed.
"""

from cmasim.mm.jit import kjit
from cmasim.mm.mmzone import (
    H_COST_NS, H_KSWAPD_NEXT, H_NOW, H_NZONES, H_OWNER, H_PARAM,
    OW_ANON, OW_FILE, OW_FILE_DIRTY, OW_KIND_MASK, PG_ALLOC,
    T_CLEAN_DROP_COST_NS, T_KSWAPD_PERIOD_NS, T_KSWAPD_RATE, T_RECLAIM_ENABLED, T_SWAP_COST_NS, T_SWAP_FREE,
    VM_PGSCAN_DIRECT, VM_PGSCAN_KSWAPD, VM_PGSTEAL_DIRECT, VM_PGSTEAL_KSWAPD, VM_PGWRITEBACK,
    VM_PSWPOUT, Z_BOOST, Z_END, Z_NR_FREE, Z_START, Z_WMARK_HIGH,
)
from cmasim.mm.folio import folio_maybe_dma_pinned, reclaim_take
from cmasim.mm.freelist import pi_order, pi_state, pinfo, vm_add, zone_base
from cmasim.mm.page_alloc import block_head
from cmasim.mm.prandom import prandom_u32
from cmasim.mm.rmqueue import wakeup_kswapd  # noqa: F401  (re-exported)

SWAP_CLUSTER_MAX = 32
SAMPLE_TRIES = 256


@kjit
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
        ow = S[C[H_OWNER] + h]
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
                S[C[H_OWNER] + h] = (ow & ~OW_KIND_MASK) | OW_FILE
                vm_add(C, VM_PGWRITEBACK, pages)
            continue
        return h, scanned
    return -1, scanned


@kjit
def shrink_zone(S, C, cpu, zslot, nr_to_reclaim, direct, may_swap, may_writepage):
    """shrink_node()/shrink_folio_list() for one zone: reclaim up to nr_to_reclaim pages.

    pgscan_* and pgsteal_* both count pages (mm/vmscan.c shrink_inactive_list()).
    """
    reclaimed = 0
    scanned = 0
    while reclaimed < nr_to_reclaim:
        h, sc = pick_reclaim_victim(S, C, zslot, may_swap, may_writepage)
        scanned += sc
        if h < 0:
            break
        pages = 1 << pi_order(pinfo(S, C, h))
        if (S[C[H_OWNER] + h] & OW_KIND_MASK) == OW_ANON:
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
def zone_balanced(C, zb):
    return C[zb + Z_NR_FREE] > C[zb + Z_WMARK_HIGH] + C[zb + Z_BOOST]


@kjit
def kswapd_run(S, C):
    """One kswapd step (balance_pgdat()): reclaim one period's worth of pages in every zone
    below its high mark; sleep (and reset the boosts) once all zones are balanced."""
    budget = param(C, T_KSWAPD_RATE) * param(C, T_KSWAPD_PERIOD_NS) // 1_000_000_000
    if budget < SWAP_CLUSTER_MAX:
        budget = SWAP_CLUSTER_MAX
    all_ok = True
    for z in range(C[H_NZONES]):
        zb = zone_base(C, z)
        if zone_balanced(C, zb):
            continue
        need = C[zb + Z_WMARK_HIGH] + C[zb + Z_BOOST] - C[zb + Z_NR_FREE] + SWAP_CLUSTER_MAX
        got = shrink_zone(S, C, 0, z, need if need < budget else budget, False, True, True)
        if not zone_balanced(C, zb) and got > 0:
            all_ok = False
    if all_ok:
        for z in range(C[H_NZONES]):
            C[zone_base(C, z) + Z_BOOST] = 0
        C[H_KSWAPD_NEXT] = 0
    else:
        C[H_KSWAPD_NEXT] = C[H_NOW] + param(C, T_KSWAPD_PERIOD_NS)


@kjit
def try_to_free_pages(S, C, cpu, pref):
    """try_to_free_pages(): one direct-reclaim round of SWAP_CLUSTER_MAX pages over the zonelist."""
    if param(C, T_RECLAIM_ENABLED) == 0:
        return 0
    total = 0
    for z in range(pref, -1, -1):
        total += shrink_zone(S, C, cpu, z, SWAP_CLUSTER_MAX - total, True, True, True)
        if total >= SWAP_CLUSTER_MAX:
            break
    return total
