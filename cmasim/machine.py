"""A simulated machine: one node, its zones and CPUs, the packed allocator state and a policy.

`Machine` owns the two state arrays (see `cmasim.mm.mmzone`), sets the zones up as the
kernel does at boot (watermarks, lowmem reserve, per-CPU batch/high, all memory freed to
the buddy lists as MOVABLE pageblocks), and offers slow per-call helpers for tests plus
the batch entry points used by runs and benchmarks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from cmasim.mm import mmzone as mz
from cmasim.mm import mm_init
from cmasim.clock import advance_clock
from cmasim.mm.alloc_pages import alloc_pages
from cmasim.mm.cma import CmaArea
from cmasim.mm.folio import default_owner, folio_put, live_add
from cmasim.mm.gup import pin_user_page
from cmasim.mm.debug import check_state
from cmasim.mm.freelist import set_pinfo
from cmasim.mm.page_alloc import __free_one_page as free_one_block, free_pages_core_range, page_del_and_expand
from cmasim.mm.pcp import drain_all_pages
from cmasim.mm.zone_stat import fold_all_vm_stats
from cmasim.policy import Policy
from cmasim.workload.pinner import pinners_start

ZONE_INDEX = {name.lower(): i for i, name in enumerate(mz.ZONE_NAMES)}


class InvariantViolation(AssertionError):
    """The allocator state broke a rule the kernel relies on."""


class MachineTooLarge(ValueError):
    """The simulated machine's state would not fit in this computer's memory."""


# int32 words per simulated page in S: the page record (next and prev list links, page info,
# owner: mz.NODE_W), handle, live slot and unmapped count (cmasim.mm.mmzone); pageblock words and
# list heads are small beside them.
STATE_WORDS_PER_PAGE = mz.NODE_W + 3


def state_bytes(total_pages: int) -> int:
    """Bytes of the packed state `S` for a machine of `total_pages` pages (the dominant array)."""
    return 4 * STATE_WORDS_PER_PAGE * total_pages


def available_memory() -> int | None:
    """MemAvailable of this computer in bytes (Linux), else physical memory, else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(total_pages: int, what: str = "machine.memory") -> None:
    """Refuse, before allocating, a machine whose state needs more than 80% of the memory available
    here (numpy would fail half-way with an allocation error, or the OOM killer would end the run)."""
    need = state_bytes(total_pages)
    have = available_memory()
    if have is not None and need > 0.8 * have:
        raise MachineTooLarge(
            f"{what}: {total_pages * mz.PAGE_SIZE / (1 << 30):,.1f} GiB of simulated memory needs "
            f"{need / (1 << 30):,.1f} GiB of simulator state ({state_bytes(1)} bytes per 4 KiB page), but this "
            f"computer has {have / (1 << 30):,.1f} GiB available; simulate less memory")


_CHECK_MESSAGES = {
    1: "list links broken at node {pfn} (list {exp}, next {got})",
    2: "page {pfn} on a list is not a head in state {exp} (state {got})",
    3: "page {pfn} records list {got} but sits on list {exp}",
    4: "page {pfn} has order {got} on a free list of order {exp}",
    5: "list {pfn} holds {got} blocks but its count says {exp}",
    6: "list {exp} loops (page {pfn})",
    7: "block head {pfn} not aligned to order {exp}",
    8: "block at {pfn} runs past its zone end {exp}",
    9: "page {pfn} inside a block is not blank (info {got})",
    10: "{got} free/pcp block heads but {exp} list nodes",
    11: "free buddies {pfn} and {exp} of order {got} left unmerged",
    12: "zone {pfn}: NR_FREE_PAGES is {exp}, lists hold {got}",
    13: "zone {pfn}: NR_FREE_CMA_PAGES is {exp}, lists hold {got}",
    14: "zone {pfn}: free highatomic is {exp}, lists hold {got}",
    15: "zone {pfn}: NR_FREE_PAGES_BLOCKS is {exp}, lists hold {got}",
    16: "zone {pfn}: nr_free of an order is {exp}, lists hold {got}",
    17: "cpu {pfn}: pcp->count is {exp}, lists hold {got}",
    18: "free block {pfn} is on a {got} list in a pageblock of type {exp}",
    19: "zone {pfn}: nr_isolate_pageblock is {exp}, bits say {got}",
    20: "per-CPU list at page {pfn} mixes orders {exp} and {got}",
    21: "free block {pfn} still has owner word {got}",
    22: "handle {pfn} points at block {exp}, whose handle entry is {got}",
    23: "live-page counter is {exp}, handles hold {got}",
    24: "block {pfn} of zone {got} sits on a list of zone {exp}",
    25: "free block {pfn} spans pageblocks of types {exp} and {got}, which may not merge",
    26: "page {pfn} inside the allocated block at {exp} carries an owner word or handle {got}",
    32: "pfn {pfn} carries an unmapped-subpage count {got} that no allocated large folio of order {exp} heading "
        "it allows",
    27: "reclaim counters ({pfn}: 0 kswapd, 1 direct): pgscan {exp} < pgsteal {got}",
    28: "handle {pfn} still holds block {got} of OOM victim task {exp}",
    29: "zone {pfn}: folded NR_FREE_PAGES + per-CPU vmstat diffs = {got}, free lists hold {exp}",
    30: "zone {pfn}: folded NR_FREE_CMA_PAGES + per-CPU vmstat diffs = {got}, free lists hold {exp}",
    31: "CPU {pfn}: vmstat diffs {exp} / {got} beyond any stat_threshold",
}


@dataclass
class MachineConfig:
    """The hardware and boot parameters of one simulated node."""

    zones: list[tuple[str, int]]  # (zone name, pages), in kernel zone order; contiguous from pfn 0
    nr_cpus: int = 2
    min_free_kbytes: int | None = None  # None: the kernel's boot default
    thp: bool = True  # THP enabled: khugepaged raises min_free_kbytes
    watermark_scale_factor: int = 10
    percpu_pagelist_high_fraction: int = 0
    pcp_free_high_batch: bool = True  # PCPF_FREE_HIGH_BATCH (large cache slice per CPU)
    trace_capacity: int = 0  # trace records kept before a flush; 0 = tracing off
    trace_mask: int = 0xFFFE  # record kinds traced (bit k: cmasim.mm.mmzone TR_* kind k); all by default
    cma_areas: list[tuple[str, int, int, int]] = field(default_factory=list)  # (name, base_pfn, count, order_per_bit)
    # Costs and rates on the simulated clock (sources in docs/model.md).
    migrate_cost_ns: int = 4_000  # one 4 KiB page: copy + unmap/remap/TLB flush
    clean_drop_cost_ns: int = 1_000  # reclaiming one clean page-cache page
    swap_cost_ns: int = 20_000  # compressing one anonymous page to zram / writing to swap
    drain_cost_ns: int = 20_000  # drain_all_pages(): IPIs and per-CPU flushes
    isolate_cost_ns: int = 1_000  # isolating one pageblock
    migrate_eagain_ppm: int = 0  # transient -EAGAIN per migration attempt, per million (cmasim.mm.migrate)
    contig_call_cost_ns: int = 0  # fixed cost of one alloc_contig_range() call (cost model; 0 on hardware)
    scan_cost_ns: int = 0  # per pfn walked by the migrate scanner
    test_cost_ns: int = 0  # per pfn checked by test_pages_isolated()
    migrate_fail_cost_ns: int | None = None  # one failed folio migration attempt; None: 2.5 x migrate_cost_ns
    thp_cost_ppm: int = 1_000_000  # per-base-page cost of a large folio's migration relative to 4 KiB
    swap_bytes: int | None = None  # swap/zram capacity; None: a quarter of memory
    reclaim: bool = True  # kswapd and direct reclaim
    defrag_mode: bool = False  # vm.defrag_mode (v6.15+; ignored by older rule sets)
    oom_killer: bool = False  # out_of_memory() kills a task and the allocation retries (scenarios: on)
    kswapd_rate_pages_s: int = 262_144  # 1 GiB/s
    kswapd_period_ns: int = 1_000_000
    compaction: bool = True
    kcompactd_period_ns: int = 500_000_000
    timer_capacity: int = 4096  # outstanding timers (pins); a full heap refuses and counts
    pinners: list[dict] = field(default_factory=list)  # see cmasim.workload.pinner
    reserved_pages: int = 0  # kernel memory allocated at boot (unmovable, never freed)
    reserve_pfn0: bool = False  # pfn 0 is firmware-reserved on x86 and never handed out; scenario
    # runs set it so that a trace's pfn=0x0 (a failed allocation) stays unambiguous
    sparse_handles: bool = False  # handle ids chosen by the caller (run_events, replay) instead of dense churn
    extra: dict = field(default_factory=dict)

    @property
    def total_pages(self) -> int:
        return sum(p for _, p in self.zones)


class Machine:
    """The allocator state of one node under one policy."""

    def __init__(self, cfg: MachineConfig, policy: Policy, seed: int = 1):
        self.cfg = cfg
        self.policy = policy
        self.seed = seed
        self._build()

    # --- construction -------------------------------------------------------------------------
    def _build(self) -> None:
        cfg = self.cfg
        nz = len(cfg.zones)
        ncpu = cfg.nr_cpus
        n = cfg.total_pages
        lpz = mz.NR_BUDDY_LISTS + ncpu * mz.NR_PCP_LISTS_MAX
        nlists = nz * lpz
        nodes = n + nlists
        npb = n >> mz.PAGEBLOCK_ORDER
        self.n_pages = n
        check_fits(n)
        S = np.zeros(mz.NODE_W * nodes + npb + 3 * n, dtype=np.int32)
        off_pb = mz.NODE_W * nodes  # after the page records (NEXT, PREV, PINFO, OWNER)
        off_handle, off_live = off_pb + npb, off_pb + npb + n
        off_unmapped = off_pb + npb + 2 * n  # UNMAPPED[pfn] (cmasim.mm.folio)
        mz.unlink_nodes(S, 0, n)  # pages on no list; page and owner words 0
        rec = mz.node_records(S, nodes)
        sent = np.arange(n, nodes, dtype=np.int32)  # each list sentinel empty: linked to itself
        rec[n:, mz.F_NEXT] = sent
        rec[n:, mz.F_PREV] = sent
        S[off_pb:off_unmapped] = -1  # PB, HANDLE, LIVE; UNMAPPED stays 0
        off_zone = mz.H_SIZE
        off_pcp = off_zone + nz * mz.ZS
        off_lcnt = off_pcp + nz * ncpu * mz.PS
        off_vm = off_lcnt + nlists
        off_pol = off_vm + mz.NR_VM
        off_param = off_pol + mz.PL_SIZE
        off_pinners = off_param + mz.NR_T
        off_heap = off_pinners + max(1, len(cfg.pinners)) * mz.PNS
        ncand = max(1, sum(a[2] for a in cfg.cma_areas))  # the pinners' candidate list (CMA pages)
        off_cand = off_heap + cfg.timer_capacity * 3
        off_trace = off_cand + ncand
        C = np.zeros(off_trace + cfg.trace_capacity * mz.TR_SIZE, dtype=np.int64)
        hdr = {mz.H_N: n, mz.H_NZONES: nz, mz.H_NCPU: ncpu, mz.H_NLISTS: nlists, mz.H_LPZ: lpz,
               mz.H_PB: off_pb, mz.H_NPB: npb,
               mz.H_ZONE: off_zone, mz.H_PCP: off_pcp, mz.H_LCNT: off_lcnt, mz.H_VM: off_vm,
               mz.H_POL: off_pol, mz.H_RNG: (self.seed * 2654435761 + 1) & 0xFFFFFFFF or 1,
               mz.H_TRACE_ON: cfg.trace_mask if cfg.trace_capacity else 0, mz.H_TRACE_CAP: cfg.trace_capacity,
               mz.H_TRACE_BASE: off_trace, mz.H_NEXT_TICK: 1_000_000_000,
               mz.H_HANDLE: off_handle, mz.H_LIVE: off_live, mz.H_LIVE_DENSE: 0 if cfg.sparse_handles else 1, mz.H_HEAP: off_heap,
               mz.H_HEAP_CAP: cfg.timer_capacity, mz.H_PARAM: off_param, mz.H_PINNERS: off_pinners,
               mz.H_NPINNERS: len(cfg.pinners), mz.H_CAND: off_cand, mz.H_NCAND_CAP: ncand,
               mz.H_UNMAPPED: off_unmapped}
        for k, v in hdr.items():
            C[k] = v
        self.S, self.C = S, C
        self._write_params()
        self._write_policy()
        self._setup_zones()
        self._init_cma_reserved_pageblocks()
        # memblock_free_all(): boot memory in max-order chunks, CMA ranges excluded (they are
        # reserved until cma_activate_area() frees them pageblock by pageblock).
        start = 0
        cma = sorted((base, base + count) for _, base, count, _ in cfg.cma_areas)
        for z, (_, pages) in enumerate(cfg.zones):
            pos, end = start, start + pages
            for lo, hi in cma:
                if hi <= pos or lo >= end:
                    continue
                if lo > pos:
                    free_pages_core_range(S, C, z, pos, lo)
                pos = max(pos, hi)
            if pos < end:
                free_pages_core_range(S, C, z, pos, end)
            start += pages
        for lo, hi in cma:
            z = self.zone_of(lo)
            for pb in range(lo, hi, mz.PAGEBLOCK_NR_PAGES):
                free_one_block(S, C, z, pb, mz.PAGEBLOCK_ORDER, mz.MIGRATE_CMA, False)
        if cfg.reserve_pfn0:
            self._reserve_pfn0()
        self._reserve_boot_memory(cfg.reserved_pages)
        # Boot-time frees and allocations are not part of the workload's statistics; the
        # vmstat worker has folded the boot-time deltas by the time the workload starts.
        fold_all_vm_stats(C)
        C[off_vm:off_vm + mz.NR_VM] = 0
        self.cma_areas = [CmaArea(name, base, count, opb, i) for i, (name, base, count, opb) in enumerate(cfg.cma_areas)]
        self._scratch = np.zeros(4, dtype=np.int64)
        if cfg.pinners:
            pinners_start(C)

    def _write_params(self) -> None:
        cfg, C = self.cfg, self.C
        b = int(C[mz.H_PARAM])
        swap = cfg.swap_bytes if cfg.swap_bytes is not None else cfg.total_pages * mz.PAGE_SIZE // 4
        vals = {mz.T_MIGRATE_COST_NS: cfg.migrate_cost_ns, mz.T_KSWAPD_RATE: cfg.kswapd_rate_pages_s,
                mz.T_KSWAPD_PERIOD_NS: cfg.kswapd_period_ns, mz.T_SWAP_FREE: swap // mz.PAGE_SIZE,
                mz.T_RECLAIM_ENABLED: int(cfg.reclaim), mz.T_OOM_KILLER: int(cfg.oom_killer),
                mz.T_COMPACTION_ENABLED: int(cfg.compaction), mz.T_KCOMPACTD_PERIOD_NS: cfg.kcompactd_period_ns,
                mz.T_CLEAN_DROP_COST_NS: cfg.clean_drop_cost_ns, mz.T_SWAP_COST_NS: cfg.swap_cost_ns,
                mz.T_DRAIN_COST_NS: cfg.drain_cost_ns, mz.T_ISOLATE_COST_NS: cfg.isolate_cost_ns,
                mz.T_MIGRATE_EAGAIN_PPM: cfg.migrate_eagain_ppm, mz.T_CONTIG_CALL_COST_NS: cfg.contig_call_cost_ns,
                mz.T_SCAN_COST_NS: cfg.scan_cost_ns, mz.T_TEST_COST_NS: cfg.test_cost_ns,
                mz.T_MIGRATE_FAIL_COST_NS: (cfg.migrate_fail_cost_ns if cfg.migrate_fail_cost_ns is not None
                                            else 10 * cfg.migrate_cost_ns // 4),
                mz.T_THP_COST_PPM: cfg.thp_cost_ppm}
        for k, v in vals.items():
            C[b + k] = v
        pb = int(C[mz.H_PINNERS])
        for i, pn in enumerate(cfg.pinners):
            row = {mz.PN_HOLD_NS: pn["hold_ns"], mz.PN_GAP_NS: pn.get("gap_ns", 0),
                   mz.PN_LONGTERM: int(pn.get("longterm", False)), mz.PN_CMA_ONLY: int(pn.get("cma_only", False)),
                   mz.PN_THREADS: pn.get("threads", 1), mz.PN_START_NS: pn.get("start_ns", 0),
                   mz.PN_PICK: pn.get("pick", mz.PICK_ANY), mz.PN_JITTER_NS: pn.get("jitter_ns", 0),
                   mz.PN_END_NS: pn.get("end_ns", 0)}
            for k, v in row.items():
                C[pb + i * mz.PNS + k] = v

    def _write_policy(self) -> None:
        C, pol = self.C, self.policy
        b = int(C[mz.H_POL])
        C[b + mz.PL_VERSION] = pol.version
        C[b + mz.PL_CMA_NUM], C[b + mz.PL_CMA_DEN] = pol.cma_balance
        C[b + mz.PL_NOFRAGMENT] = int(pol.nofragment)
        C[b + mz.PL_DEFRAG_MODE] = int(pol.defrag_mode or (self.cfg.defrag_mode and pol.version >= 615))
        C[b + mz.PL_BOOST_FACTOR] = pol.watermark_boost_factor
        C[b + mz.PL_NR_PCP_LISTS] = pol.nr_pcp_lists
        C[b + mz.PL_LONGTERM_MIGRATE] = int(pol.longterm_pin_migrates)
        C[b + mz.PL_CMA_GFP_REQUIRED] = int(pol.cma_gfp_required)
        C[b + mz.PL_CMA_FIRST_BUDDY] = int(pol.cma_first_buddy)
        C[b + mz.PL_CMA_FIRST_RMQUEUE] = int(pol.cma_first_rmqueue)
        C[b + mz.PL_CMA_STAGE] = int(pol.cma_stage)
        C[b + mz.PL_CMA_BALANCE_MODE] = pol.cma_balance_mode
        C[b + mz.PL_PIN_ISOLATED_MIGRATE] = int(pol.pin_isolated_migrate)
        C[b + mz.PL_SHORT_PIN_MIGRATES_CMA] = int(pol.short_pin_migrates_cma)
        C[b + mz.PL_PCP_SKIP_MOVABLE_NO_CMA] = int(pol.pcp_skip_movable_without_cma)
        C[b + mz.PL_CMA_ONLY_RMQUEUE] = int(pol.cma_only_rmqueue)
        C[b + mz.PL_PCP_FAIL_NO_BUDDY] = int(pol.pcp_fail_no_buddy)
        for order in range(mz.NR_PAGE_ORDERS):
            for mt in range(mz.MIGRATE_TYPES):
                C[b + mz.PL_PCP_PINDEX + order * mz.MIGRATE_TYPES + mt] = pol.pcp_pindex[order][mt]
        for mt in range(3):
            for i in range(2):
                C[b + mz.PL_FALLBACK + mt * 2 + i] = pol.fallbacks[mt][i]

    def _setup_zones(self) -> None:
        cfg, C, S = self.cfg, self.C, self.S
        managed = {}
        for name, pages in cfg.zones:
            managed[ZONE_INDEX[name.lower()]] = pages
        self.min_free_kbytes = (cfg.min_free_kbytes if cfg.min_free_kbytes is not None
                                else mm_init.default_min_free_kbytes(managed, cfg.thp))
        marks = mm_init.setup_per_zone_wmarks(managed, self.min_free_kbytes, cfg.watermark_scale_factor)
        reserve = mm_init.setup_per_zone_lowmem_reserve(managed)
        start = 0
        self.zone_names = []
        for z, (name, pages) in enumerate(cfg.zones):
            idx = ZONE_INDEX[name.lower()]
            self.zone_names.append(mz.ZONE_NAMES[idx])
            zb = int(C[mz.H_ZONE]) + z * mz.ZS
            batch = mm_init.zone_batchsize(pages)
            hmin, hmax = mm_init.pcp_high_limits(pages, marks[idx].low, batch, cfg.nr_cpus,
                                                 cfg.percpu_pagelist_high_fraction)
            vals = {mz.Z_START: start, mz.Z_END: start + pages, mz.Z_IDX: idx, mz.Z_MANAGED: pages,
                    mz.Z_PRESENT: pages, mz.Z_WMARK_MIN: marks[idx].min, mz.Z_WMARK_LOW: marks[idx].low,
                    mz.Z_WMARK_HIGH: marks[idx].high, mz.Z_WMARK_PROMO: marks[idx].promo,
                    mz.Z_BATCH: batch, mz.Z_HIGH_MIN: hmin, mz.Z_HIGH_MAX: hmax,
                    mz.Z_STAT_THRESHOLD: mm_init.calculate_normal_threshold(pages, cfg.nr_cpus)}
            for k, v in vals.items():
                C[zb + k] = v
            for j in range(4):
                C[zb + mz.Z_LOWMEM + j] = reserve[idx][j]
            for cpu in range(cfg.nr_cpus):
                pc = int(C[mz.H_PCP]) + (z * cfg.nr_cpus + cpu) * mz.PS
                # v6.1: high fixed at boot; v6.7+: pcp->high starts at 0 and is clamped on use.
                C[pc + mz.P_HIGH] = hmin if self.policy.version < 607 else 0
                C[pc + mz.P_FLAGS] = mz.PCPF_FREE_HIGH_BATCH if cfg.pcp_free_high_batch else 0
            pb0, pb1 = start >> mz.PAGEBLOCK_ORDER, (start + pages) >> mz.PAGEBLOCK_ORDER
            S[int(C[mz.H_PB]) + pb0:int(C[mz.H_PB]) + pb1] = mz.MIGRATE_MOVABLE | (z << mz.PB_ZONE_SHIFT)
            start += pages

    def _init_cma_reserved_pageblocks(self) -> None:
        """cma_activate_area()/init_cma_reserved_pageblock(): the area's pageblocks become
        MIGRATE_CMA before boot memory is freed, so they reach the buddy as CMA blocks."""
        S, C = self.S, self.C
        pb = int(C[mz.H_PB])
        for _name, base, count, _opb in self.cfg.cma_areas:
            for b in range(base >> mz.PAGEBLOCK_ORDER, (base + count) >> mz.PAGEBLOCK_ORDER):
                S[pb + b] = (S[pb + b] & ~mz.PB_MT_MASK) | mz.MIGRATE_CMA
            z = self.zone_of(base)
            C[int(C[mz.H_ZONE]) + z * mz.ZS + mz.Z_CMA_PAGES] += count

    def _reserve_pfn0(self) -> None:
        """Keep pfn 0 out of the allocator: split it off its boot free block and mark it allocated
        (memblock-reserved low memory; the real DMA zone starts at pfn 1)."""
        S, C = self.S, self.C
        w = int(S[mz.F_PINFO])  # pfn 0's page word
        order = w & mz.PI_ORDER_MASK
        lst = w >> mz.PI_LIST_SHIFT
        mt = (lst % int(C[mz.H_LPZ])) % mz.MIGRATE_TYPES
        page_del_and_expand(S, C, 0, 0, 0, order, mt)
        set_pinfo(S, C, 0, 0, mz.PG_ALLOC, mz.MIGRATE_UNMOVABLE, 0)
        S[mz.F_OWNER] = mz.OW_SLAB

    def _reserve_boot_memory(self, pages: int) -> None:
        """Kernel memory taken at boot (text, memmap, early slab): unmovable blocks, largest first."""
        gfp_kernel = mz.GFP_DIRECT_RECLAIM_ | mz.GFP_KSWAPD_RECLAIM_ | mz.GFP_IO_ | mz.GFP_FS_
        order = mz.MAX_PAGE_ORDER
        left = pages
        while left > 0 and order >= 0:
            if (1 << order) > left:
                order -= 1
                continue
            p = int(alloc_pages(self.S, self.C, 0, order, gfp_kernel))
            if p < 0:
                order -= 1
                continue
            self.S[mz.NODE_W * p + mz.F_OWNER] = mz.OW_SLAB
            left -= 1 << order
        if left > 0:
            raise ValueError(f"cannot reserve {pages} pages of boot memory")
        drain_all_pages(self.S, self.C, -1)

    def zone_of(self, pfn: int) -> int:
        for z in range(self.nr_zones):
            if self.zone_field(z, mz.Z_START) <= pfn < self.zone_field(z, mz.Z_END):
                return z
        raise ValueError(f"pfn {pfn} outside memory")

    # --- per-call helpers (slow in compiled mode; for tests and small tools) ----------------------
    def alloc(self, order: int, gfp: int, cpu: int = 0, owner: int | None = None, track: bool = True) -> int:
        """__alloc_pages(): the head pfn, or -1 on failure. The block gets an owner (default by
        GFP: anonymous if movable, slab otherwise) and, with `track`, a live handle."""
        self.C[mz.H_CPU] = cpu
        p = int(alloc_pages(self.S, self.C, cpu, order, gfp))
        if p >= 0:
            mt = (gfp & (mz.GFP_MOVABLE_ | mz.GFP_RECLAIMABLE_)) >> 3
            self.S[mz.NODE_W * p + mz.F_OWNER] = default_owner(mt) if owner is None else owner
            if track:
                live_add(self.S, self.C, p)
        return p

    def free(self, pfn: int, cpu: int = 0) -> int:
        """The owner drops the block: 0, or -EINVAL (nothing changed) if pfn is not an allocated
        head. A pinned block is released at its unpin."""
        self.C[mz.H_CPU] = cpu
        w = int(self.S[mz.NODE_W * pfn + mz.F_PINFO]) if 0 <= pfn < self.n_pages else 0
        if (w >> mz.PI_STATE_SHIFT) & 3 != mz.PG_ALLOC:
            return -22
        if int(self.S[mz.NODE_W * pfn + mz.F_OWNER]) & mz.OW_FREE_PENDING:
            return -22  # already freed by its owner; released at unpin
        return int(folio_put(self.S, self.C, cpu, pfn))

    def pin(self, pfn: int, duration_ns: int, longterm: bool = False, cpu: int = 0) -> int:
        """pin_user_pages() of one block: the pinned pfn (it moves for FOLL_LONGTERM on CMA) or -errno."""
        return int(pin_user_page(self.S, self.C, cpu, pfn, longterm, duration_ns, self._scratch, 0))

    def advance(self, t_ns: int) -> None:
        """Let simulated time pass to t_ns: timers, kswapd, kcompactd and the vmstat worker run."""
        advance_clock(self.S, self.C, t_ns, self._scratch)

    def live_blocks(self) -> list[int]:
        n = int(self.C[mz.H_NLIVE])
        b = int(self.C[mz.H_LIVE])
        return [int(x) for x in self.S[b:b + n]]

    def area(self, name: str) -> CmaArea:
        for a in self.cma_areas:
            if a.name == name:
                return a
        raise KeyError(f"no CMA area {name!r}; areas: {', '.join(a.name for a in self.cma_areas) or 'none'}")

    def drain_all(self) -> None:
        drain_all_pages(self.S, self.C, -1)

    def check(self) -> None:
        """Run the invariant checker; raise InvariantViolation naming the broken rule."""
        code, pfn, exp, got = (int(x) for x in check_state(self.S, self.C))
        if code:
            msg = _CHECK_MESSAGES.get(code, "invariant {code} broken").format(code=code, pfn=pfn, exp=exp, got=got)
            raise InvariantViolation(f"[{self.policy.name}] {msg}")

    # --- views -----------------------------------------------------------------------------------
    def zone_field(self, z: int, field_: int) -> int:
        return int(self.C[int(self.C[mz.H_ZONE]) + z * mz.ZS + field_])

    def vm(self, idx: int) -> int:
        return int(self.C[int(self.C[mz.H_VM]) + idx])

    def pcp_field(self, z: int, cpu: int, field_: int) -> int:
        return int(self.C[int(self.C[mz.H_PCP]) + (z * self.cfg.nr_cpus + cpu) * mz.PS + field_])

    def list_count(self, lst: int) -> int:
        return int(self.C[int(self.C[mz.H_LCNT]) + lst])

    def free_list_count(self, z: int, order: int, mt: int) -> int:
        return self.list_count(z * int(self.C[mz.H_LPZ]) + order * mz.MIGRATE_TYPES + mt)

    def pageblock_types(self, z: int) -> list[int]:
        """Pageblock type per block of zone z, ISOLATE when the isolate bit is set."""
        start, end = self.zone_field(z, mz.Z_START), self.zone_field(z, mz.Z_END)
        words = self.S[int(self.C[mz.H_PB]) + (start >> 9):int(self.C[mz.H_PB]) + (end >> 9)]
        return [mz.MIGRATE_ISOLATE if w & mz.PB_ISOLATE else int(w & mz.PB_MT_MASK) for w in words]

    @property
    def nr_zones(self) -> int:
        return len(self.cfg.zones)

    @property
    def now_ns(self) -> int:
        return int(self.C[mz.H_NOW])

    def state_bytes(self) -> int:
        return self.S.nbytes + self.C.nbytes
