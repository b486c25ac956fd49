"""/proc snapshots as a starting state: read buddyinfo, pagetypeinfo and zoneinfo, build a Machine.

Kernel: mm/vmstat.c (frag_show_print, pagetypeinfo_showfree_print,
pagetypeinfo_showblockcount_print, zoneinfo_show_print); shared/docs/kernel-model.md §10.

What a snapshot gives, per populated zone of node 0: managed/present/spanned pages,
watermarks, lowmem protection, the pageblock count per migratetype, the free blocks per
(order, migratetype), and per CPU the pageset count, high, batch, high_min and high_max.
What it does not give: *where* anything is. `build_machine` therefore lays the state out
itself (see `layout_zone`), with every count equal to the snapshot's:

* zone size = the zone's pageblock count from pagetypeinfo x 512 (the online pageblocks the
  kernel walks; >= managed). Pages of those pageblocks beyond `managed` are reserved
  (memblock/firmware): allocated for good, never freed. Without pagetypeinfo the size is
  `managed` rounded down to a pageblock multiple. Optional hot-plug headroom adds offline
  MOVABLE pageblocks at the end of a zone (see `SnapState.online`).
* pageblock types by count, free blocks exactly per (order, type) of pagetypeinfo (buddyinfo
  when pagetypeinfo is missing: all MOVABLE), placed so that no two free buddies would
  merge; the per-CPU lists hold `count` order-0 pages on the MOVABLE list (the split by
  list is not in /proc); watermarks, protection, batch, high_min/high_max and pcp->high
  are copied from zoneinfo.
* every other page is allocated "before the trace": order-0 blocks whose request type is
  the pageblock's type. `SnapState.take_pretrace` hands such pages out to replay frees of
  pages the trace never allocated.

`capture(out_dir)` copies this machine's /proc files (root is needed for pagetypeinfo).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmasim.machine import ZONE_INDEX, Machine, MachineConfig
from cmasim.mm import mm_init
from cmasim.mm import mmzone as mz
from cmasim.mm.freelist import set_pinfo
from cmasim.mm.zone_stat import fold_all_vm_stats
from cmasim.policy import Policy
from cmasim.trace import replay_core as RC
from cmasim.trace.parser import FLAVOURS, flavour_from_type_names

PB = mz.PAGEBLOCK_NR_PAGES
PROC_FILES = ("buddyinfo", "pagetypeinfo", "zoneinfo", "vmstat")


class SnapshotError(ValueError):
    pass


# --- parsing ------------------------------------------------------------------------------------------
_BUDDY_RE = re.compile(r"^Node\s+(\d+),\s+zone\s+(\S+)\s+((?:\d+\s*)+)$")


def parse_buddyinfo(text: str) -> dict[tuple[int, str], list[int]]:
    out = {}
    for line in text.splitlines():
        m = _BUDDY_RE.match(line.strip())
        if m:
            out[(int(m[1]), m[2])] = [int(x) for x in m[3].split()]
    if not out:
        raise SnapshotError("buddyinfo: no `Node N, zone NAME counts...` line")
    return out


@dataclass
class PageTypeInfo:
    pageblock_order: int
    type_names: list[str]  # the header's order = the kernel's numbering
    free: dict[tuple[int, str], dict[str, list[int]]]  # (node, zone) -> type name -> blocks per order
    blocks: dict[tuple[int, str], dict[str, int]]  # (node, zone) -> type name -> pageblocks


def parse_pagetypeinfo(text: str) -> PageTypeInfo:
    order = 9
    names: list[str] = []
    free: dict = {}
    blocks: dict = {}
    for line in text.splitlines():
        if line.startswith("Page block order:"):
            order = int(line.split(":")[1])
        elif line.startswith("Number of blocks type"):
            names = line[len("Number of blocks type"):].split()
        m = re.match(r"^Node\s+(\d+),\s+zone\s+(\S+),\s+type\s+(\S+)\s+(.*)$", line)
        if m:
            counts = [int(x.lstrip(">")) for x in m[4].split()]
            free.setdefault((int(m[1]), m[2]), {})[m[3]] = counts
            continue
        m = re.match(r"^Node\s+(\d+),\s+zone\s+(\S+)\s+((?:\d+\s*)+)$", line)
        if m and names:
            blocks[(int(m[1]), m[2])] = dict(zip(names, (int(x) for x in m[3].split())))
    if not free and not blocks:
        raise SnapshotError("pagetypeinfo: no free-count or block-count rows")
    if not names and free:
        names = list(next(iter(free.values())).keys())
    return PageTypeInfo(order, names, free, blocks)


@dataclass
class ZoneInfo:
    node: int
    name: str
    fields: dict[str, int] = field(default_factory=dict)  # pages free, min, low, high, promo, spanned, ...
    protection: list[int] = field(default_factory=list)
    pagesets: list[dict[str, int]] = field(default_factory=list)  # per CPU: count, high, batch, high_min, ...


def parse_zoneinfo(text: str) -> list[ZoneInfo]:
    zones: list[ZoneInfo] = []
    cur: ZoneInfo | None = None
    for line in text.splitlines():
        m = re.match(r"^Node\s+(\d+),\s+zone\s+(\S+)", line)
        if m:
            cur = ZoneInfo(int(m[1]), m[2])
            zones.append(cur)
            continue
        if cur is None:
            continue
        s = line.strip()
        if s.startswith("protection:"):
            cur.protection = [int(x) for x in re.findall(r"-?\d+", s)]
        elif s.startswith("cpu:"):
            cur.pagesets.append({"cpu": int(s.split(":")[1])})
        elif s.startswith("pages free"):
            cur.fields["free"] = int(s.split()[-1])
        elif cur.pagesets and re.match(r"^(count|high|batch|high_min|high_max):", s):
            k, v = s.split(":")
            cur.pagesets[-1][k] = int(v)
        elif s.startswith("vm stats threshold:"):
            cur.fields["stat_threshold"] = int(s.split(":")[1])
        elif s.startswith("start_pfn:"):
            cur.fields["start_pfn"] = int(s.split(":")[1])
        else:
            parts = s.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit() and not cur.pagesets:
                cur.fields.setdefault(parts[0], int(parts[1]))
    if not zones:
        raise SnapshotError("zoneinfo: no `Node N, zone NAME` section")
    return zones


# --- the snapshot ----------------------------------------------------------------------------------------------
@dataclass
class ZoneSnap:
    name: str
    managed: int
    present: int
    spanned: int
    start_pfn: int
    nr_blocks: int  # online pageblocks (pagetypeinfo), or managed // 512
    blocks: list[int]  # pageblocks per simulator migratetype (MIGRATE_TYPES)
    free: list[list[int]]  # free[mt][order] blocks, simulator numbering
    wmark: dict[str, int]  # min low high promo boost
    protection: list[int]
    pcp: list[dict[str, int]]  # per CPU: count, high, batch, high_min, high_max
    stat_threshold: int | None = None


@dataclass
class Snapshot:
    zones: list[ZoneSnap]
    nr_cpus: int
    flavour: str
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def zone_of_kernel_pfn(self, pfn: int) -> int:
        """Index in `zones` of the zone whose kernel span holds `pfn`, or -1.

        Called for every trace record of a replay: the spans are computed once (zones do not
        change after loading)."""
        spans = self.__dict__.get("_spans")
        if spans is None:
            spans = self.__dict__["_spans"] = [(z.start_pfn, z.start_pfn + z.spanned) for z in self.zones]
        for i, (lo, hi) in enumerate(spans):
            if lo <= pfn < hi:
                return i
        return -1

    def zones_of_kernel_pfns(self, pfns: np.ndarray) -> np.ndarray:
        """`zone_of_kernel_pfn` of every element of `pfns` (int64 array), compiled
        (replay_core.zones_of_pfns: one pass, the first zone holding a pfn wins)."""
        pfns = np.ascontiguousarray(pfns)  # a column of a record chunk
        out = np.empty(len(pfns), dtype=np.int64)
        if pfns.dtype != np.int64:
            out[:] = -1
            for i in range(len(self.zones) - 1, -1, -1):  # the first zone holding a pfn wins
                z = self.zones[i]
                out[(pfns >= z.start_pfn) & (pfns < z.start_pfn + z.spanned)] = i
            return out
        lo = np.array([z.start_pfn for z in self.zones], dtype=np.int64)
        RC.zones_of_pfns(pfns, lo, lo + np.array([z.spanned for z in self.zones], dtype=np.int64), out)
        return out

    def buddyinfo(self) -> dict[str, list[int]]:
        return {z.name: [sum(z.free[mt][o] for mt in range(mz.MIGRATE_TYPES)) for o in range(mz.NR_PAGE_ORDERS)]
                for z in self.zones}


def _read(d: Path, name: str, prefix: str) -> str | None:
    for cand in (d / f"{prefix}{name}", d / name, d / "proc" / name):
        if cand.is_file():
            return cand.read_text()
    return None


def load_snapshot(d: str | Path, prefix: str = "before.", flavour: str | None = None) -> Snapshot:
    """Read DIR/{prefix}{buddyinfo,pagetypeinfo,zoneinfo} (or DIR/NAME, DIR/proc/NAME)."""
    d = Path(d)
    if d.is_file():
        raise SnapshotError(f"{d}: expected a directory with buddyinfo, pagetypeinfo and zoneinfo")
    bi_t, pti_t, zi_t = (_read(d, n, prefix) for n in ("buddyinfo", "pagetypeinfo", "zoneinfo"))
    if zi_t is None:
        raise SnapshotError(f"{d}: no zoneinfo ({prefix}zoneinfo or zoneinfo) — zone sizes are needed")
    notes = []
    zinfo = [z for z in parse_zoneinfo(zi_t) if z.node == 0 and z.fields.get("managed", 0) > 0]
    if any(z.node != 0 for z in parse_zoneinfo(zi_t)):
        notes.append("only node 0 is modelled")
    pti = parse_pagetypeinfo(pti_t) if pti_t else None
    bi = parse_buddyinfo(bi_t) if bi_t else None
    if flavour is None:
        flavour = flavour_from_type_names(pti.type_names) if pti and pti.type_names else "mainline"
    to_sim = FLAVOURS[flavour]
    if pti is None:
        notes.append("no pagetypeinfo: all pageblocks and free blocks taken as MOVABLE")
    zones = []
    nr_cpus = 1
    for zi in zinfo:
        f = zi.fields
        managed = f["managed"]
        blocks = [0] * mz.MIGRATE_TYPES
        free = [[0] * mz.NR_PAGE_ORDERS for _ in range(mz.MIGRATE_TYPES)]
        key = (0, zi.name)
        if pti and key in pti.blocks:
            for i, name in enumerate(pti.type_names):
                blocks[to_sim[i]] += pti.blocks[key].get(name, 0)
            for i, name in enumerate(pti.type_names):
                for o, n in enumerate(pti.free.get(key, {}).get(name, [0] * mz.NR_PAGE_ORDERS)):
                    free[to_sim[i]][o] += n
            nr_blocks = sum(blocks)
        else:
            nr_blocks = managed // PB
            blocks[mz.MIGRATE_MOVABLE] = nr_blocks
            if bi and key in bi:
                free[mz.MIGRATE_MOVABLE] = list(bi[key])
        pcp = [{k: ps.get(k, 0) for k in ("count", "high", "batch", "high_min", "high_max")} for ps in zi.pagesets]
        nr_cpus = max(nr_cpus, len(pcp))
        wm = {k: f.get(k, 0) for k in ("min", "low", "high", "promo", "boost")}
        zones.append(ZoneSnap(zi.name, managed, f.get("present", managed), f.get("spanned", managed),
                              f.get("start_pfn", 0), nr_blocks, blocks, free, wm, zi.protection, pcp,
                              f.get("stat_threshold")))
        if bi and key in bi and pti:
            want = bi[key]
            got = [sum(free[mt][o] for mt in range(mz.MIGRATE_TYPES)) for o in range(mz.NR_PAGE_ORDERS)]
            if want != got:
                notes.append(f"zone {zi.name}: buddyinfo and pagetypeinfo disagree (read at different moments); "
                             f"pagetypeinfo used")
    if not zones:
        raise SnapshotError(f"{d}: zoneinfo lists no populated zone of node 0")
    return Snapshot(zones, nr_cpus, flavour, str(d), notes)


def capture(out_dir: str | Path, proc: str | Path = "/proc", kpageflags: bool = False) -> list[str]:
    """Copy this machine's /proc/{buddyinfo,pagetypeinfo,zoneinfo,vmstat} to out_dir; return the names copied."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = []
    names = PROC_FILES + (("kpageflags",) if kpageflags else ())
    for name in names:
        src = Path(proc) / name
        try:
            if name == "kpageflags":
                with open(src, "rb") as fi, open(out / name, "wb") as fo:
                    shutil.copyfileobj(fi, fo, 1 << 20)
            else:
                (out / name).write_text(src.read_text())
            done.append(name)
        except OSError:
            continue
    if "zoneinfo" not in done:
        raise SnapshotError(f"could not read {proc}/zoneinfo")
    return done


# --- layout ------------------------------------------------------------------------------------------------------
def place_small(nblocks_free: list[int], n_pageblocks: int) -> list[tuple[int, int, int]]:
    """Place free blocks of orders < pageblock_order inside `n_pageblocks` pageblocks.

    Returns (pageblock index, offset, order). Greedy, largest order first, lowest legal
    aligned offset: a block may not sit next to a free buddy of its own order (the pair
    would have merged). Pages not covered stay allocated. Raises SnapshotError when full.
    """
    nb = np.zeros(mz.PAGEBLOCK_ORDER, dtype=np.int64)
    nb[:len(nblocks_free)] = nblocks_free
    out = np.zeros((int(nb.sum()), 3), dtype=np.int64)
    k = RC.place_small_blocks(nb, n_pageblocks, PB, out)  # compiled: a numpy call per candidate offset was slow
    if k < 0:
        raise SnapshotError("free blocks do not fit their pageblocks")
    return [tuple(r) for r in out[:k].tolist()]


def layout_zone(zs: ZoneSnap, first_pb: int, n_pb: int) -> tuple[list[int], list[tuple[int, int, int]], list[str]]:
    """Pageblock types (one per pageblock) and free blocks (pfn, order, mt) for one zone.

    Global pageblock numbers `first_pb .. first_pb + n_pb`; order-10 blocks take aligned
    pageblock pairs, an order-9 block is paired with a pageblock that is not a free order-9
    block, and the smaller free blocks of a type are packed into as few of its pageblocks
    as the no-merge rule allows.
    """
    notes: list[str] = []
    T = mz.MIGRATE_TYPES
    blocks = list(zs.blocks)
    if sum(blocks) > n_pb:
        raise SnapshotError(f"zone {zs.name}: {sum(blocks)} pageblocks do not fit {n_pb}")
    blocks[mz.MIGRATE_MOVABLE] += n_pb - sum(blocks)
    n10 = [zs.free[t][10] for t in range(T)]
    n9 = [zs.free[t][9] for t in range(T)]
    small_pages = [sum(zs.free[t][o] << o for o in range(9)) for t in range(T)]
    # Pageblocks each type needs for its small free blocks (density about one half, at least one).
    small_pb = [(-(-2 * small_pages[t] // (PB - 1)) + (1 if small_pages[t] else 0)) for t in range(T)]
    for t in range(T):
        need = 2 * n10[t] + n9[t]
        if need > blocks[t]:
            notes.append(f"zone {zs.name}: {mz.MIGRATETYPE_NAMES[t]} has {need} free pageblocks but only "
                         f"{blocks[t]} pageblocks; the surplus was left out")
            while 2 * n10[t] + n9[t] > blocks[t]:
                if n9[t]:
                    n9[t] -= 1
                else:
                    n10[t] -= 1
        small_pb[t] = min(small_pb[t], blocks[t] - 2 * n10[t] - n9[t])
    types = [-1] * n_pb
    roles = [""] * n_pb  # F10, F9, S (small frees), A (allocated)
    # Pairs of global pageblocks (2k, 2k+1) inside the zone.
    g0 = first_pb
    local_pairs = [(i, i + 1) for i in range(0 if g0 % 2 == 0 else 1, n_pb - 1, 2)]
    paired = {i for p in local_pairs for i in p}
    singles = [i for i in range(n_pb) if i not in paired]
    free_pairs = list(local_pairs)
    for t in range(T):
        for _ in range(n10[t]):
            a, b = free_pairs.pop(0)
            types[a] = types[b] = t
            roles[a] = roles[b] = "F10"
    remaining = [blocks[t] - 2 * n10[t] for t in range(T)]
    # Order-9 frees: first on unpaired edge pageblocks (their buddy lies outside the zone), then
    # in the first half of a pair whose other half is a non-free pageblock of any type.
    f9 = [t for t in range(T) for _ in range(n9[t])]
    others = [t for t in range(T) for _ in range(remaining[t] - n9[t])]
    for i in singles:
        if f9:
            t = f9.pop()
            types[i], roles[i] = t, "F9"
        elif others:
            t = others.pop()
            types[i], roles[i] = t, "A"
    for a, b in free_pairs:
        if f9:
            t = f9.pop()
            types[a], roles[a] = t, "F9"
            if others:
                types[b], roles[b] = others.pop(), "A"
            elif f9:
                # Two free order-9 halves: only allowed where the kernel would not merge them.
                t2 = f9.pop()
                types[b], roles[b] = t2, "F9"
                if mz.MIGRATE_PCPTYPES > t and mz.MIGRATE_PCPTYPES > t2:
                    notes.append(f"zone {zs.name}: two free order-9 blocks paired; they merge")
        else:
            for i in (a, b):
                if others:
                    types[i], roles[i] = others.pop(), "A"
    if f9 or others:
        raise SnapshotError(f"zone {zs.name}: pageblock layout failed")
    # Small frees per type, in that type's allocated pageblocks.
    frees: list[tuple[int, int, int]] = []
    for i, r in enumerate(roles):
        if r == "F10" and (g0 + i) % 2 == 0:
            frees.append(((g0 + i) * PB, 10, types[i]))
        elif r == "F9":
            frees.append(((g0 + i) * PB, 9, types[i]))
    for t in range(T):
        if not small_pages[t]:
            continue
        mine = [i for i in range(n_pb) if types[i] == t and roles[i] == "A"]
        try:
            placed = place_small(zs.free[t][:9], len(mine))
        except SnapshotError:
            notes.append(f"zone {zs.name}: small free blocks of {mz.MIGRATETYPE_NAMES[t]} did not all fit")
            placed = []
        for k, off, o in placed:
            roles[mine[k]] = "S"
            frees.append(((g0 + mine[k]) * PB + off, o, t))
    return types, frees, notes


# --- building the machine --------------------------------------------------------------------------------------

_NO_COUNTS = np.zeros(0, dtype=np.int64)  # pretrace_search without per-pageblock counts
CURSOR_ORDERS = 63  # orders a pre-trace free can have (2^order fits an int64)


@dataclass
class SnapState:
    """The simulator-side bookkeeping of a snapshot machine, for replay."""

    machine: Machine
    snapshot: Snapshot
    pretrace: np.ndarray  # bool per sim pfn: allocated before the trace and still held by "the past"
    offline: np.ndarray  # bool per sim pfn: hot-plug headroom not yet online
    reserved_pages: list[int]
    pages_min: int  # min_free_kbytes in pages (inferred from the watermarks)
    managed: list[int]  # current managed pages per zone (grows with onlining)
    notes: list[str] = field(default_factory=list)
    # [zone, order] -> offset below which no aligned 2^order-page run of the zone is all
    # `pretrace` (take_pretrace; made at the first take, orders 0..CURSOR_ORDERS - 1)
    _cursor: np.ndarray | None = field(default=None, repr=False)
    # pages of each pageblock still `pretrace` (the search's; counted at the first take, kept by claim_block)
    _left: np.ndarray | None = field(default=None, repr=False)

    def zone_range(self, z: int) -> tuple[int, int]:
        return self.machine.zone_field(z, mz.Z_START), self.machine.zone_field(z, mz.Z_END)

    def pageblock_type(self, pfn: int) -> int:
        return int(self.machine.S[int(self.machine.C[mz.H_PB]) + (pfn >> 9)] & mz.PB_MT_MASK)

    def take_pretrace(self, z: int, order: int, mt: int, hint: int = -1) -> int:
        """A sim block of 2^order pages, all still allocated before the trace, aligned, in zone z,
        preferably at `hint` and in a pageblock of type `mt`; marked as one allocated block of
        `order` (split_page() in reverse) and returned, or -1 if none is left.

        Compiled (replay_core.pretrace_take; the translation pass calls it too). The search:
        `pretrace` only ever turns False after the machine is built, so the first all-pretrace
        run never moves down: a cursor per (zone, order) skips what earlier searches found
        taken, and the rest is scanned (replay_core.pretrace_search), stopping at the first
        match. The answer is the one a scan of the whole range gives (replays are
        bit-identical); only the cost differs (the whole-range numpy scan per pre-trace free
        was a third of a replay's time). Pageblocks with too few pre-trace pages left are
        skipped whole (`_left`)."""
        if not 0 <= order < CURSOR_ORDERS:
            raise ValueError(f"pre-trace free of order {order}: orders 0..{CURSOR_ORDERS - 1} only")
        cursor, left = self.search_state()
        m = self.machine
        return int(RC.pretrace_take(self.pretrace, left, m.S, m.C, z, order, mt, hint, cursor))

    def search_state(self) -> tuple[np.ndarray, np.ndarray]:
        """The pre-trace search's cursor [zone, order] and per-pageblock counts, made at first use."""
        if self._left is None:
            self._left = self.pretrace.reshape(-1, mz.PAGEBLOCK_NR_PAGES).sum(axis=1)
        if self._cursor is None:
            self._cursor = np.zeros((self.machine.nr_zones, CURSOR_ORDERS), dtype=np.int64)
        return self._cursor, self._left

    def claim_block(self, p: int, order: int) -> None:
        """Turn the order-0 allocated pages [p, p + 2^order) into one allocated block of `order`
        (compiled: replay_core.pretrace_claim)."""
        m = self.machine
        RC.pretrace_claim(self.pretrace, self._left if self._left is not None else _NO_COUNTS, m.S, m.C, p, order)

    def take_offline(self, z: int, order: int) -> int:
        """Online the first offline 2^order run of zone z: returns its head (an allocated block
        ready to be freed), or -1. Managed pages grow and the watermarks are recomputed."""
        n = 1 << order
        start, end = self.zone_range(z)
        # the first aligned all-offline run (pretrace_search's scan, on `offline`, any pageblock type)
        p, _ = RC.pretrace_search(self.offline, _NO_COUNTS, self.machine.S, 0, 0, start, end, n, -1, 0)
        if p < 0:
            return -1
        p = int(p)
        self.offline[p:p + n] = False
        m = self.machine
        mz.node_field(m.S, mz.F_PINFO, p + n, p)[:] = 0
        set_pinfo(m.S, m.C, p, order, mz.PG_ALLOC, mz.MIGRATE_MOVABLE, 0)
        self.managed[z] += n
        self.recompute_watermarks()
        return p

    def recompute_watermarks(self) -> None:
        """__setup_per_zone_wmarks() and the pcp high limits for the current managed sizes."""
        m = self.machine
        managed = {ZONE_INDEX[m.zone_names[z].lower()]: self.managed[z] for z in range(m.nr_zones)}
        marks = mm_init.setup_per_zone_wmarks(managed, self.pages_min << 2, m.cfg.watermark_scale_factor)
        reserve = mm_init.setup_per_zone_lowmem_reserve(managed)
        for z in range(m.nr_zones):
            idx = ZONE_INDEX[m.zone_names[z].lower()]
            zb = int(m.C[mz.H_ZONE]) + z * mz.ZS
            mk = marks[idx]
            m.C[zb + mz.Z_MANAGED] = self.managed[z]
            m.C[zb + mz.Z_WMARK_MIN], m.C[zb + mz.Z_WMARK_LOW] = mk.min, mk.low
            m.C[zb + mz.Z_WMARK_HIGH], m.C[zb + mz.Z_WMARK_PROMO] = mk.high, mk.promo
            for j in range(4):
                m.C[zb + mz.Z_LOWMEM + j] = reserve[idx][j]
            batch = int(m.C[zb + mz.Z_BATCH])
            hmin, hmax = mm_init.pcp_high_limits(self.managed[z], mk.low, batch, m.cfg.nr_cpus,
                                                 m.cfg.percpu_pagelist_high_fraction)
            m.C[zb + mz.Z_HIGH_MIN], m.C[zb + mz.Z_HIGH_MAX] = hmin, hmax


def machine_config(zones: list[tuple[str, int]], nr_cpus: int, trace_capacity: int = 0) -> MachineConfig:
    """A MachineConfig for replay: the core's own reclaim and compaction off where it has them
    (the trace already holds the kernel's reclaim frees and compaction)."""
    names = {f.name for f in dataclasses.fields(MachineConfig)}
    kw = {k: False for k in ("reclaim", "compaction") if k in names}
    return MachineConfig(zones=zones, nr_cpus=nr_cpus, trace_capacity=trace_capacity, **kw)


def infer_pages_min(snap: Snapshot) -> int:
    """min_free_kbytes / 4: the P with P * managed_z // lowmem == min_z for every zone."""
    managed = {ZONE_INDEX[z.name.lower()]: z.managed for z in snap.zones}
    lowmem = sum(m for i, m in managed.items() if i != mz.ZONE_MOVABLE)
    total_min = sum(z.wmark["min"] for z in snap.zones if ZONE_INDEX[z.name.lower()] != mz.ZONE_MOVABLE)
    for p in range(total_min, total_min + 4 * len(snap.zones) + 8):
        if all(p * z.managed // lowmem == z.wmark["min"] for z in snap.zones
               if ZONE_INDEX[z.name.lower()] != mz.ZONE_MOVABLE):
            return p
    return total_min


_RUN_WORDS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _all_runs(pre: np.ndarray, k: int, n: int) -> np.ndarray:
    """For each of the first k aligned n-page runs of the bool array `pre`: are all its pages set?
    (`pre[:k * n].reshape(k, n).all(axis=1)`; for n <= 8 the run's n bytes are read as one
    word, all set when it equals 0x0101...01: numpy's reduction over a short axis was most of
    build_machine's time.)"""
    word = _RUN_WORDS.get(n)
    if word is None or not pre.flags.c_contiguous:
        return pre[:k * n].reshape(k, n).all(axis=1)
    ones = int.from_bytes(b"\x01" * n, "little")
    return pre[:k * n].view(np.uint8).view(word) == word(ones)


def build_machine(snap: Snapshot, policy: Policy, seed: int = 1, trace_capacity: int = 0,
                  headroom: dict[str, int] | None = None, pcp_lists: dict | None = None) -> SnapState:
    """A Machine whose free lists, pageblock types, per-CPU counts and zone parameters match `snap`.

    `headroom` (zone name -> pages, rounded up to pageblock pairs) adds offline MOVABLE
    pageblocks at the end of a zone for memory that is hot-plugged during a trace.
    """
    headroom = headroom or {}
    notes = list(snap.notes)
    sizes = []
    extra = []
    for z in snap.zones:
        h = -(-headroom.get(z.name, 0) // (2 * PB)) * 2 * PB
        extra.append(h)
        sizes.append(z.nr_blocks * PB + h)
    cfg = machine_config([(z.name, s) for z, s in zip(snap.zones, sizes)], snap.nr_cpus, trace_capacity)
    m = Machine(cfg, policy, seed=seed)
    S, C = m.S, m.C
    n = m.n_pages
    off_pb = int(C[mz.H_PB])
    # Empty every list: the boot-time free state is replaced wholesale.
    nodes = n + int(C[mz.H_NLISTS])
    sent = np.arange(n, nodes, dtype=np.int32)
    mz.unlink_nodes(S, 0, n)
    rec = mz.node_records(S, nodes)
    rec[n:, mz.F_NEXT] = rec[n:, mz.F_PREV] = sent
    C[int(C[mz.H_LCNT]):int(C[mz.H_LCNT]) + int(C[mz.H_NLISTS])] = 0
    pretrace = np.zeros(n, dtype=bool)
    offline = np.zeros(n, dtype=bool)
    reserved = []
    managed = []
    start = 0
    for zi, (zs, size) in enumerate(zip(snap.zones, sizes)):
        zb = int(C[mz.H_ZONE]) + zi * mz.ZS
        for k in (mz.Z_NR_FREE, mz.Z_NR_FREE_CMA, mz.Z_NR_FREE_HIGHATOMIC, mz.Z_NR_FREE_BLOCKS,
                  mz.Z_VM_NR_FREE, mz.Z_VM_NR_FREE_CMA):
            C[zb + k] = 0
        C[zb + mz.Z_AREA:zb + mz.Z_AREA + mz.NR_PAGE_ORDERS] = 0
        n_pb = zs.nr_blocks
        types, frees, nz = layout_zone(zs, start // PB, n_pb)
        notes += nz
        pb_words = np.array(types + [mz.MIGRATE_MOVABLE] * (extra[zi] // PB), dtype=np.int32)
        S[off_pb + start // PB:off_pb + (start + size) // PB] = pb_words | (zi << mz.PB_ZONE_SHIFT)
        # Every page an allocated order-0 block of its pageblock's type (movable for non-PCP types).
        req = np.repeat(np.where(pb_words < mz.MIGRATE_PCPTYPES, pb_words, mz.MIGRATE_MOVABLE), PB)
        mz.node_field(S, mz.F_PINFO, start + size, start)[:] = (mz.PG_ALLOC << mz.PI_STATE_SHIFT) | (req << mz.PI_AUX_SHIFT)
        zone_pre = np.ones(size, dtype=bool)
        zone_pre[n_pb * PB:] = False
        offline[start + n_pb * PB:start + size] = True
        fr = np.array(sorted(frees), dtype=np.int64).reshape(-1, 3)
        RC.add_free_blocks(S, C, zi, zb, fr[:, 0].copy(), fr[:, 1].copy(), fr[:, 2].copy(), zone_pre,
                           start)
        # Per-CPU lists: `count` pages, split over the lists as `pcp_lists` says (inferred from
        # the trace, see replay.infer_pcp_lists), else order-0 pages on the MOVABLE list; each
        # block is an allocated block of a pageblock of the list's type where one is left.
        movable_pindex = m.policy.pcp_pindex[0][mz.MIGRATE_MOVABLE]
        pind = m.policy.pcp_pindex
        where = {pind[o][mt]: (o, mt) for o in range(len(pind)) for mt in (mz.MIGRATE_RECLAIMABLE,
                 mz.MIGRATE_UNMOVABLE, mz.MIGRATE_MOVABLE) if pind[o][mt] >= 0}
        pb_of_page = np.repeat(pb_words, PB)[:size]
        for cpu, ps in enumerate(zs.pcp[:snap.nr_cpus]):
            pc = int(C[mz.H_PCP]) + (zi * snap.nr_cpus + cpu) * mz.PS
            lists = (pcp_lists or {}).get((zi, cpu)) or {movable_pindex: ps.get("count", 0)}
            placed = 0
            for pindex, pages in sorted(lists.items()):
                order, mt = where[pindex]
                nb = pages >> order
                lst = zi * int(C[mz.H_LPZ]) + mz.NR_BUDDY_LISTS + cpu * mz.NR_PCP_LISTS_MAX + pindex
                for want_type in (True, False):
                    if nb <= 0:
                        break
                    n = 1 << order
                    k = size // n
                    ok = _all_runs(zone_pre, k, n)
                    if want_type:
                        ok &= pb_of_page[:k * n:n] == mt
                    heads = np.flatnonzero(ok)[:nb].astype(np.int64) * n
                    RC.add_pcp_blocks(S, C, lst, heads, order, mz.PG_PCP, mt, zone_pre, start)
                    nb -= len(heads)
                    placed += len(heads) << order
            if placed < ps.get("count", 0):
                notes.append(f"zone {zs.name} cpu {cpu}: only {placed} of {ps.get('count', 0)} per-CPU pages fit")
            C[pc + mz.P_COUNT] = placed
            C[pc + mz.P_HIGH] = ps.get("high", 0)
            C[pc + mz.P_FREE_COUNT] = C[pc + mz.P_ALLOC_FACTOR] = C[pc + mz.P_FREE_FACTOR] = 0
        # Reserved pages: the part of the pageblocks the kernel does not manage, never freed.
        n_res = max(0, n_pb * PB - zs.managed)
        still = np.flatnonzero(zone_pre)
        res = still[-n_res:] if n_res else still[:0]
        zone_pre[res] = False
        reserved.append(len(res))
        if len(res) < n_res:
            notes.append(f"zone {zs.name}: only {len(res)} of {n_res} reserved pages fit")
        pretrace[start:start + size] = zone_pre
        # Zone parameters from zoneinfo.
        C[zb + mz.Z_MANAGED] = zs.managed
        C[zb + mz.Z_PRESENT] = zs.present
        for k, key in ((mz.Z_WMARK_MIN, "min"), (mz.Z_WMARK_LOW, "low"), (mz.Z_WMARK_HIGH, "high"),
                       (mz.Z_WMARK_PROMO, "promo"), (mz.Z_BOOST, "boost")):
            C[zb + k] = zs.wmark[key]
        idx = ZONE_INDEX[zs.name.lower()]
        prot = zs.protection
        if len(prot) >= mz.MAX_NR_ZONES:
            # zoneinfo prints lowmem_reserve[] for every zone index (DMA..Movable[, Device]).
            for j in range(mz.MAX_NR_ZONES):
                C[zb + mz.Z_LOWMEM + j] = prot[j]
        if zs.pcp:
            ps = zs.pcp[0]
            C[zb + mz.Z_BATCH] = ps.get("batch", C[zb + mz.Z_BATCH])
            if ps.get("high_max"):
                C[zb + mz.Z_HIGH_MIN], C[zb + mz.Z_HIGH_MAX] = ps["high_min"], ps["high_max"]
        if zs.stat_threshold:
            C[zb + mz.Z_STAT_THRESHOLD] = zs.stat_threshold
        managed.append(zs.managed)
        del idx
        start += size
    # The per-CPU vmstat deltas start folded (zero): the snapshot does not say how the small
    # difference between zoneinfo's folded 'pages free' and buddyinfo's exact count is split
    # over the CPUs, and the first vmstat worker run of the trace folds it anyway.
    fold_all_vm_stats(C)
    C[int(C[mz.H_VM]):int(C[mz.H_VM]) + mz.NR_VM] = 0
    return SnapState(m, snap, pretrace, offline, reserved, infer_pages_min(snap), managed, notes)
