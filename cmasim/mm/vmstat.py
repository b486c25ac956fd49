"""Counters in /proc/vmstat vocabulary and the /proc renderers, in the kernel's exact layouts.

Kernel: mm/vmstat.c — frag_show_print (/proc/buddyinfo), pagetypeinfo_showfree_print and
pagetypeinfo_showblockcount_print (/proc/pagetypeinfo), zoneinfo_show_print
(/proc/zoneinfo), vmstat_show (/proc/vmstat), unusable_show/extfrag_show (debugfs).

Only counters the model keeps are printed: a line that the model cannot fill is left out
rather than printed as a misleading 0 (docs/model.md lists them). The renderers take any
object with the `cmasim.machine.Machine` views; they return text and never print.
"""

from __future__ import annotations

from cmasim.mm import mmzone as mz

# /proc/vmstat order of the names the model can produce (from a 6.18 kernel; cma_alloc_*
# sit after htlb_buddy_alloc_fail as in 6.1).
VMSTAT_ORDER = (
    "nr_free_pages", "nr_free_pages_blocks", "nr_free_cma", "pswpout",
    "pgalloc_dma", "pgalloc_dma32", "pgalloc_normal", "pgalloc_movable",
    "allocstall_dma", "allocstall_dma32", "allocstall_normal", "allocstall_movable",
    "pgfree", "pgsteal_kswapd", "pgsteal_direct", "pgscan_kswapd", "pgscan_direct", "oom_kill",
    "pgmigrate_success", "pgmigrate_fail", "thp_migration_success",
    "compact_migrate_scanned", "compact_free_scanned", "compact_isolated", "compact_stall", "compact_fail",
    "compact_success", "compact_daemon_wake",
    "cma_alloc_success", "cma_alloc_fail", "thp_fault_alloc", "thp_fault_fallback",
    "thp_split_page",
)


def vmstat_counters(m) -> dict[str, int]:
    """The /proc/vmstat counters the model keeps, by kernel name (node totals).

    nr_free_pages and nr_free_cma are the folded counters (global_zone_page_state(), per-CPU
    vmstat deltas not included), as vmstat_start() prints them."""
    out: dict[str, int] = {}
    out["nr_free_pages"] = sum(m.zone_field(z, mz.Z_VM_NR_FREE) for z in range(m.nr_zones))
    if m.policy.version >= 615:
        out["nr_free_pages_blocks"] = sum(m.zone_field(z, mz.Z_NR_FREE_BLOCKS) for z in range(m.nr_zones))
    out["nr_free_cma"] = sum(m.zone_field(z, mz.Z_VM_NR_FREE_CMA) for z in range(m.nr_zones))
    for idx, name in enumerate(("dma", "dma32", "normal", "movable")):
        out[f"pgalloc_{name}"] = m.vm(mz.VM_PGALLOC + idx)
    out["pgfree"] = m.vm(mz.VM_PGFREE)
    for idx, name in enumerate(("dma", "dma32", "normal", "movable")):
        out[f"allocstall_{name}"] = m.vm(mz.VM_ALLOCSTALL + idx)
    simple = {"pgsteal_kswapd": mz.VM_PGSTEAL_KSWAPD, "pgsteal_direct": mz.VM_PGSTEAL_DIRECT,
              "pgscan_kswapd": mz.VM_PGSCAN_KSWAPD, "pgscan_direct": mz.VM_PGSCAN_DIRECT, "oom_kill": mz.VM_OOM_KILL,
              "pgmigrate_success": mz.VM_PGMIGRATE_SUCCESS, "pgmigrate_fail": mz.VM_PGMIGRATE_FAIL,
              "thp_migration_success": mz.VM_THP_MIGRATION_SUCCESS,
              "compact_migrate_scanned": mz.VM_COMPACT_MIGRATE_SCANNED,
              "compact_free_scanned": mz.VM_COMPACT_FREE_SCANNED, "compact_isolated": mz.VM_COMPACT_ISOLATED,
              "compact_stall": mz.VM_COMPACT_STALL, "compact_fail": mz.VM_COMPACT_FAIL,
              "compact_success": mz.VM_COMPACT_SUCCESS, "compact_daemon_wake": mz.VM_COMPACT_DAEMON_WAKE,
              "cma_alloc_success": mz.VM_CMA_ALLOC_SUCCESS, "cma_alloc_fail": mz.VM_CMA_ALLOC_FAIL,
              "thp_fault_alloc": mz.VM_THP_FAULT_ALLOC, "thp_fault_fallback": mz.VM_THP_FAULT_FALLBACK,
              "pswpout": mz.VM_PSWPOUT, "thp_split_page": mz.VM_THP_SPLIT_PAGE}
    for k, idx in simple.items():
        out[k] = m.vm(idx)
    return {k: out[k] for k in VMSTAT_ORDER if k in out}


# Simulator counters that have no /proc/vmstat name (metrics.json "events").
EVENT_NAMES = {
    "alloc_calls": mz.VM_ALLOC_EVENTS, "alloc_fail": mz.VM_ALLOC_FAIL, "free_calls": mz.VM_FREE_EVENTS,
    "pcp_alloc_hits": mz.VM_PCP_ALLOC_HITS, "pcp_refills": mz.VM_PCP_REFILLS,
    "pcp_refill_pages": mz.VM_PCP_REFILL_PAGES, "pcp_drains": mz.VM_PCP_DRAINS,
    "pcp_drain_pages": mz.VM_PCP_DRAIN_PAGES, "pcp_frees": mz.VM_PCP_FREES,
    "buddy_allocs": mz.VM_BUDDY_ALLOCS, "zone_lock": mz.VM_ZONE_LOCK, "merges": mz.VM_MERGES,
    "splits": mz.VM_SPLITS, "extfrag": mz.VM_EXTFRAG, "claims": mz.VM_CLAIMS, "steals": mz.VM_STEALS,
    "cma_blocks_allocated": mz.VM_CMA_ALLOCS, "drain_all_pages": mz.VM_DRAIN_ALL,
    "slowpath": mz.VM_SLOWPATH, "watermark_fail": mz.VM_WMARK_FAIL, "nofragment_retry": mz.VM_NOFRAG_RETRY,
    "pgalloc_pages": mz.VM_PGALLOC_PAGES, "pin_short": mz.VM_PIN_SHORT, "pin_longterm": mz.VM_PIN_LONGTERM,
    "pin_fail": mz.VM_PIN_FAIL, "pin_migrated_out_of_cma": mz.VM_PIN_MIGRATED, "unpin": mz.VM_UNPIN,
    "deferred_free": mz.VM_DEFERRED_FREE, "kswapd_wake": mz.VM_KSWAPD_WAKE, "pgwriteback": mz.VM_PGWRITEBACK,
    "reclaim_dropped_handles": mz.VM_RECLAIM_DROPPED_HANDLES, "longterm_pin_on_cma": mz.VM_LONGTERM_PIN_ON_CMA,
    "cma_to_non_cma_alloc": mz.VM_CMA_TO_NON_CMA, "gfp_cma_thp": mz.VM_GFP_CMA_THP,
    "gfp_cma_thp_no_cma": mz.VM_GFP_CMA_THP_NO_CMA, "short_pin_migrated": mz.VM_SHORT_PIN_MIGRATED,
    "pin_refused_isolated": mz.VM_PIN_REFUSED_ISOLATED, "oom_kill_pages": mz.VM_OOM_KILL_PAGES,
    "oom_no_victim": mz.VM_OOM_NO_VICTIM, "contig_reclaimed_clean": mz.VM_CONTIG_RECLAIMED,
    "migrate_transient_eagain": mz.VM_MIGRATE_TRANSIENT,
    "non_cma_to_cma_alloc": mz.VM_NON_CMA_TO_CMA_ALLOC,
    **{f"rmqueue_{what}_{cls}": base + i
       for what, base in (("served", mz.VM_RQ_SERVED), ("pcp_hits", mz.VM_RQ_PCP_HITS),
                          ("zone_lock", mz.VM_RQ_ZONE_LOCK), ("cma_pages", mz.VM_RQ_CMA_TO_NON_CMA))
       for i, cls in enumerate(("cma", "movable_no_cma", "other"))},
}


def event_counters(m) -> dict[str, int]:
    return {name: m.vm(idx) for name, idx in EVENT_NAMES.items()}


def render_vmstat(m) -> str:
    return "".join(f"{k} {v}\n" for k, v in vmstat_counters(m).items())


def zone_nr_free(m, z: int) -> list[int]:
    """free_area[order].nr_free for every order (blocks on all migratetype lists)."""
    return [m.zone_field(z, mz.Z_AREA + o) for o in range(mz.NR_PAGE_ORDERS)]


def render_buddyinfo(m, node: int = 0) -> str:
    """frag_show_print(): `Node %d, zone %8s ` then `%6lu ` per order."""
    lines = []
    for z in range(m.nr_zones):
        lines.append(f"Node {node}, zone {m.zone_names[z]:>8} " + "".join(f"{n:6d} " for n in zone_nr_free(m, z)))
    return "\n".join(lines) + "\n"


def render_pagetypeinfo(m, node: int = 0) -> str:
    """pagetypeinfo_show(): free blocks per (zone, type, order), then pageblocks per type."""
    out = [f"Page block order: {mz.PAGEBLOCK_ORDER}\n", f"Pages per block:  {mz.PAGEBLOCK_NR_PAGES}\n", "\n"]
    out.append(f"{'Free pages count per migrate type at order':<43} " + "".join(f"{o:6d} " for o in range(11)) + "\n")
    for z in range(m.nr_zones):
        for mt in range(mz.MIGRATE_TYPES):
            row = f"Node {node:4d}, zone {m.zone_names[z]:>8}, type {mz.MIGRATETYPE_NAMES[mt]:>12} "
            for o in range(mz.NR_PAGE_ORDERS):
                n = m.free_list_count(z, o, mt)
                row += f">{100000:6d} " if n >= 100000 else f"{n:6d} "
            out.append(row + "\n")
    out.append(f"\n{'Number of blocks type ':<23}" + "".join(f"{n:>12} " for n in mz.MIGRATETYPE_NAMES) + "\n")
    for z in range(m.nr_zones):
        types = m.pageblock_types(z)
        out.append(f"Node {node}, zone {m.zone_names[z]:>8} "
                   + "".join(f"{types.count(mt):12d} " for mt in range(mz.MIGRATE_TYPES)) + "\n")
    return "".join(out)


def render_zoneinfo(m, node: int = 0) -> str:
    """zoneinfo_show_print(): watermarks, sizes, protection, zone counters and pagesets.

    'pages free', nr_free_pages and nr_free_cma are the folded zone_page_state() values, as
    the kernel prints them (the per-CPU vmstat deltas are not included).

    Simplified: the per-node stats block and the zone counters the model does not keep
    (LRU sizes, NUMA events) are left out. 6.1 flavour: no promo, pagesets without
    high_min/high_max.
    """
    v = m.policy.version
    out = []
    for z in range(m.nr_zones):
        f = lambda k, z=z: m.zone_field(z, k)  # noqa: E731
        boost = f(mz.Z_BOOST)
        out.append(f"Node {node}, zone {m.zone_names[z]:>8}\n")
        out.append(f"  pages free     {f(mz.Z_VM_NR_FREE)}\n")
        out.append(f"        boost    {boost}\n")
        out.append(f"        min      {f(mz.Z_WMARK_MIN) + boost}\n")
        out.append(f"        low      {f(mz.Z_WMARK_LOW) + boost}\n")
        out.append(f"        high     {f(mz.Z_WMARK_HIGH) + boost}\n")
        if v >= 607:
            out.append(f"        promo    {f(mz.Z_WMARK_PROMO) + boost}\n")
        spanned = f(mz.Z_END) - f(mz.Z_START)
        out.append(f"        spanned  {spanned}\n")
        out.append(f"        present  {f(mz.Z_PRESENT)}\n")
        out.append(f"        managed  {f(mz.Z_MANAGED)}\n")
        out.append(f"        cma      {f(mz.Z_CMA_PAGES)}\n")
        prot = ", ".join(str(f(mz.Z_LOWMEM + j)) for j in range(mz.MAX_NR_ZONES))
        out.append(f"        protection: ({prot}, {f(mz.Z_LOWMEM + mz.MAX_NR_ZONES - 1)})\n")
        out.append(f"      {'nr_free_pages':<12} {f(mz.Z_VM_NR_FREE)}\n")
        if v >= 615:
            out.append(f"      {'nr_free_pages_blocks':<12} {f(mz.Z_NR_FREE_BLOCKS)}\n")
        out.append(f"      {'nr_free_cma':<12} {f(mz.Z_VM_NR_FREE_CMA)}\n")
        out.append("  pagesets\n")
        for cpu in range(m.cfg.nr_cpus):
            high = m.pcp_field(z, cpu, mz.P_HIGH)
            out.append(f"    cpu: {cpu}\n")
            out.append(f"              count:    {m.pcp_field(z, cpu, mz.P_COUNT)}\n")
            out.append(f"              high:     {high}\n")
            out.append(f"              batch:    {f(mz.Z_BATCH)}\n")
            if v >= 618:
                out.append(f"              high_min: {f(mz.Z_HIGH_MIN)}\n")
                out.append(f"              high_max: {f(mz.Z_HIGH_MAX)}\n")
            out.append(f"  vm stats threshold: {f(mz.Z_STAT_THRESHOLD)}\n")
        out.append(f"  node_unreclaimable:  0\n  start_pfn:           {f(mz.Z_START)}\n")
    return "".join(out)


def fragmentation_index(nr_free: list[int], order: int) -> int:
    """__fragmentation_index(): 0..1000, or -1000 when the request would succeed (extfrag_index)."""
    free_pages = sum(n << o for o, n in enumerate(nr_free))
    blocks = sum(nr_free)
    suitable = sum(n << (o - order) for o, n in enumerate(nr_free) if o >= order)
    if blocks == 0:
        return 0
    if suitable:
        return -1000
    return 1000 - (1000 + free_pages * 1000 // (1 << order)) // blocks


def unusable_index(nr_free: list[int], order: int) -> int:
    """unusable_free_index(): the share (x1000) of free memory unusable for `order`."""
    free_pages = sum(n << o for o, n in enumerate(nr_free))
    if free_pages == 0:
        return 1000
    suitable = sum(n << (o - order) for o, n in enumerate(nr_free) if o >= order)
    return (free_pages - (suitable << order)) * 1000 // free_pages
