"""Waking kswapd and kcompactd: the requested order and zone, and kswapd's balance test.

Kernel: mm/vmscan.c — pgdat_balanced(), pgdat_watermark_boosted(), wakeup_kswapd();
mm/compaction.c — wakeup_kcompactd(); mm/page_alloc.c — wake_all_kswapds(). Checked
against v6.18 (the same rules hold in v6.1 except where noted).

Kept apart from vmscan.py and compaction.py so that the allocation path (rmqueue.py, which
vmscan.py and compaction.py import through folio.py) can wake the threads without an
import cycle. One node: pgdat state lives in the C header (H_KSWAPD_*, H_KCOMPACTD_*);
zone indices stored there are kernel zone indices + 1, 0 meaning "none requested"
(MAX_NR_ZONES for kswapd, nr_zones - 1 for kcompactd).

Simplifications: no kswapd_failures (a hopeless node is not tracked: a kswapd run that
reclaims nothing goes to sleep, see vmscan.kswapd_run); kcompactd starts one
T_KCOMPACTD_PERIOD_NS after a wake-up instead of at once (a stand-in for compaction
deferral); kcompactd_node_suitable() is evaluated when kcompactd runs, not at the wake-up.
"""

from cmasim.mm.jit import kjit, kjit_fixed
from cmasim.mm.mmzone import (
    ALLOC_WMARK_HIGH, GFP_DIRECT_RECLAIM_, H_KCOMPACTD_HIGHEST, H_KCOMPACTD_NEXT, H_KCOMPACTD_ORDER,
    H_KSWAPD_HIGHEST, H_KSWAPD_NEXT, H_KSWAPD_ORDER, H_NOW, H_NZONES, H_PARAM, H_POL, PAGEBLOCK_ORDER,
    PL_DEFRAG_MODE, T_COMPACTION_ENABLED, T_KCOMPACTD_PERIOD_NS, VM_KSWAPD_WAKE, Z_BOOST, Z_IDX, Z_MANAGED,
)
from cmasim.mm.freelist import vm_add, zone_base
from cmasim.mm.watermark import wmark_pages, zone_watermark_ok_safe
from cmasim.mm.zone_stat import set_pgdat_percpu_threshold


@kjit
def pgdat_balanced(C, order, highest):
    """pgdat_balanced(): the node is balanced when ANY managed zone up to `highest` (kernel
    zone index) passes zone_watermark_ok_safe(zone, order, high_wmark_pages(zone), highest),
    i.e. __zone_watermark_ok() with alloc_flags 0: free CMA and free highatomic pages do not
    count, lowmem_reserve[highest] applies, the high mark includes the boost. The free count is
    the folded NR_FREE_PAGES, or the exact snapshot below the zone's percpu_drift_mark.
    Kernel: mm/vmscan.c pgdat_balanced() (v6.1, v6.18; no NUMA memory tiering here)."""
    for z in range(C[H_NZONES]):
        zb = zone_base(C, z)
        if C[zb + Z_IDX] > highest or C[zb + Z_MANAGED] == 0:
            continue
        if zone_watermark_ok_safe(C, z, order, wmark_pages(C, zb, ALLOC_WMARK_HIGH), highest):
            return True
    return False


@kjit
def pgdat_watermark_boosted(C, highest):
    """pgdat_watermark_boosted(): some zone up to `highest` has a watermark boost.
    Kernel: mm/vmscan.c pgdat_watermark_boosted()."""
    for z in range(C[H_NZONES]):
        zb = zone_base(C, z)
        if C[zb + Z_IDX] <= highest and C[zb + Z_BOOST] > 0:
            return True
    return False


@kjit
def wakeup_kcompactd(C, order, highest):
    """wakeup_kcompactd(): record the largest order and the lowest highest_zoneidx asked for,
    and wake kcompactd if it sleeps. Order 0 never wakes it.
    Kernel: mm/compaction.c wakeup_kcompactd()."""
    if order == 0 or C[C[H_PARAM] + T_COMPACTION_ENABLED] == 0:
        return
    if C[H_KCOMPACTD_ORDER] < order:
        C[H_KCOMPACTD_ORDER] = order
    if C[H_KCOMPACTD_HIGHEST] == 0 or C[H_KCOMPACTD_HIGHEST] > highest + 1:
        C[H_KCOMPACTD_HIGHEST] = highest + 1
    if C[H_KCOMPACTD_NEXT] == 0:
        C[H_KCOMPACTD_NEXT] = C[H_NOW] + C[C[H_PARAM] + T_KCOMPACTD_PERIOD_NS]


@kjit_fixed
def wakeup_kswapd(C, gfp, order, highest):
    """wakeup_kswapd(zone, gfp_flags, order, highest_zoneidx): record kswapd_order and
    kswapd_highest_zoneidx (largest asked for); if kswapd sleeps, wake it unless the node is
    balanced for this request and no zone is boosted. In that case a caller that cannot
    direct-reclaim wakes kcompactd instead (memory may be free but fragmented). A woken
    kswapd lowers the vmstat threshold of zones with a percpu_drift_mark to the pressure
    threshold (kswapd_try_to_sleep() after schedule(); restored in vmscan.balance_pgdat_end).
    Kernel: mm/vmscan.c wakeup_kswapd() (v6.1, v6.18). kswapd runs whether reclaim is
    enabled or not; with reclaim off it simply finds nothing to reclaim."""
    cur = C[H_KSWAPD_HIGHEST]
    if cur == 0 or cur - 1 < highest:
        C[H_KSWAPD_HIGHEST] = highest + 1
    if C[H_KSWAPD_ORDER] < order:
        C[H_KSWAPD_ORDER] = order
    if C[H_KSWAPD_NEXT] != 0:
        return  # running (or already woken): it reads the request when its run ends
    if pgdat_balanced(C, order, highest) and not pgdat_watermark_boosted(C, highest):
        if not (gfp & GFP_DIRECT_RECLAIM_):
            wakeup_kcompactd(C, order, highest)
        return
    C[H_KSWAPD_NEXT] = C[H_NOW] + 1
    set_pgdat_percpu_threshold(C, True)
    vm_add(C, VM_KSWAPD_WAKE, 1)


@kjit_fixed
def wake_all_kswapds(C, order, gfp, highest):
    """wake_all_kswapds(): one node, so one wakeup_kswapd(); with vm.defrag_mode (v6.15+)
    kswapd is asked for at least pageblock order. Kernel: mm/page_alloc.c wake_all_kswapds()."""
    reclaim_order = order
    if C[C[H_POL] + PL_DEFRAG_MODE] and reclaim_order < PAGEBLOCK_ORDER:
        reclaim_order = PAGEBLOCK_ORDER
    wakeup_kswapd(C, gfp, reclaim_order, highest)
