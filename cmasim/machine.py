"""A simulated machine: one node, its zones and CPUs, the packed allocator state and a policy.

`Machine` owns the two state arrays (see `cmasim.mm.mmzone`), sets the zones up as the
kernel does at boot (watermarks, lowmem reserve, per-CPU batch/high, all memory freed to
the buddy lists as MOVABLE pageblocks), and offers slow per-call helpers for tests plus
the batch entry points used by runs and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cmasim.mm import mmzone as mz
from cmasim.mm import mm_init
from cmasim.mm.alloc_pages import alloc_pages, free_pages
from cmasim.mm.debug import check_state
from cmasim.mm.page_alloc import free_pages_core_range
from cmasim.mm.pcp import drain_all_pages
from cmasim.policy import Policy

ZONE_INDEX = {name.lower(): i for i, name in enumerate(mz.ZONE_NAMES)}


class InvariantViolation(AssertionError):
    """The allocator state broke a rule the kernel relies on."""


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
    cma_areas: list[tuple[str, int, int, int]] = field(default_factory=list)  # (name, base_pfn, count, order_per_bit)
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
        cfg, pol = self.cfg, self.policy
        nz = len(cfg.zones)
        ncpu = cfg.nr_cpus
        n = cfg.total_pages
        lpz = mz.NR_BUDDY_LISTS + ncpu * mz.NR_PCP_LISTS_MAX
        nlists = nz * lpz
        nodes = n + nlists
        npb = n >> mz.PAGEBLOCK_ORDER
        self.n_pages = n
        S = np.full(2 * nodes + n + npb, -1, dtype=np.int32)
        off_prev, off_pinfo, off_pb = nodes, 2 * nodes, 2 * nodes + n
        sent = np.arange(n, nodes, dtype=np.int32)
        S[n:nodes] = sent
        S[off_prev + n:off_prev + nodes] = sent
        S[off_pinfo:off_pinfo + n] = 0
        off_zone = mz.H_SIZE
        off_pcp = off_zone + nz * mz.ZS
        off_lcnt = off_pcp + nz * ncpu * mz.PS
        off_vm = off_lcnt + nlists
        off_pol = off_vm + mz.NR_VM
        off_trace = off_pol + mz.PL_SIZE
        C = np.zeros(off_trace + cfg.trace_capacity * mz.TR_SIZE, dtype=np.int64)
        hdr = {mz.H_N: n, mz.H_NZONES: nz, mz.H_NCPU: ncpu, mz.H_NLISTS: nlists, mz.H_LPZ: lpz,
               mz.H_PREV: off_prev, mz.H_PINFO: off_pinfo, mz.H_PB: off_pb, mz.H_NPB: npb,
               mz.H_ZONE: off_zone, mz.H_PCP: off_pcp, mz.H_LCNT: off_lcnt, mz.H_VM: off_vm,
               mz.H_POL: off_pol, mz.H_RNG: (self.seed * 2654435761 + 1) & 0xFFFFFFFF or 1,
               mz.H_TRACE_ON: 1 if cfg.trace_capacity else 0, mz.H_TRACE_CAP: cfg.trace_capacity,
               mz.H_TRACE_BASE: off_trace, 25: 1_000_000_000}
        for k, v in hdr.items():
            C[k] = v
        self.S, self.C = S, C
        self._write_policy()
        self._setup_zones()
        self._init_cma_reserved_pageblocks()
        start = 0
        for z, (_, pages) in enumerate(cfg.zones):
            free_pages_core_range(S, C, z, start, start + pages)
            start += pages
        # Boot-time frees are not part of the workload's statistics.
        C[off_vm:off_vm + mz.NR_VM] = 0

    def _write_policy(self) -> None:
        C, pol = self.C, self.policy
        b = int(C[mz.H_POL])
        C[b + mz.PL_VERSION] = pol.version
        C[b + mz.PL_CMA_NUM], C[b + mz.PL_CMA_DEN] = pol.cma_balance
        C[b + mz.PL_NOFRAGMENT] = int(pol.nofragment)
        C[b + mz.PL_DEFRAG_MODE] = int(pol.defrag_mode)
        C[b + mz.PL_BOOST_FACTOR] = pol.watermark_boost_factor
        C[b + mz.PL_NR_PCP_LISTS] = pol.nr_pcp_lists
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

    def zone_of(self, pfn: int) -> int:
        for z in range(self.nr_zones):
            if self.zone_field(z, mz.Z_START) <= pfn < self.zone_field(z, mz.Z_END):
                return z
        raise ValueError(f"pfn {pfn} outside memory")

    # --- per-call helpers (slow in compiled mode; for tests and small tools) ----------------------
    def alloc(self, order: int, gfp: int, cpu: int = 0) -> int:
        """__alloc_pages(): the head pfn, or -1 on failure."""
        self.C[mz.H_CPU] = cpu
        return int(alloc_pages(self.S, self.C, cpu, order, gfp))

    def free(self, pfn: int, cpu: int = 0) -> int:
        """__free_pages(): 0, or -EINVAL (nothing changed) if pfn is not an allocated head."""
        self.C[mz.H_CPU] = cpu
        return int(free_pages(self.S, self.C, cpu, pfn))

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
