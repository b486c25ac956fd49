"""Scenario files: TOML describing the machine, its CMA areas and the workload.

Validation is strict (pydantic, unknown keys forbidden): a bad file gets a `ScenarioError`
naming the file, the key path and the problem, never a traceback. Built-in scenarios ship
in `cmasim/scenarios/*.toml`; each starts with a `description`.

Physical layout (a simplification, docs/model.md): zones are laid out back to back from
pfn 0 in kernel order, without the PCI hole. A CMA area is placed as the kernel's
cma_declare_contiguous_nid() does by default: at the start of ZONE_NORMAL when there is
memory above 4 GiB (bottom-up), else at the top of the highest zone (top-down), or at an
explicit `base`.
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from cmasim.gfp import GfpError, parse_gfp
from cmasim.mm import mmzone as mz

PAGEBLOCK_BYTES = mz.PAGEBLOCK_NR_PAGES * mz.PAGE_SIZE
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "mb": 1 << 20,
          "g": 1 << 30, "gib": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tib": 1 << 40}


class ScenarioError(ValueError):
    """A scenario file is unreadable or invalid; the message names file, key and problem."""


def parse_size(v: Any) -> int:
    """'4GiB', '512M', '2 MiB' or an integer number of bytes -> bytes."""
    if isinstance(v, bool):
        raise ValueError("expected a size such as '4GiB' or a number of bytes, got a boolean")
    if isinstance(v, int):
        if v < 0:
            raise ValueError("a size cannot be negative")
        return v
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", v)
        if m and m.group(2).lower() in _UNITS:
            return int(m.group(1)) * _UNITS[m.group(2).lower()]
        raise ValueError(f"cannot read {v!r} as a size (use e.g. '512MiB', '4GiB')")
    raise ValueError(f"expected a size such as '4GiB', got {type(v).__name__}")


Size = Annotated[int, BeforeValidator(parse_size)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ChurnSpec(_Strict):
    """Mixed allocation churn (cmasim.workload.churn)."""

    events: int = Field(1_000_000, gt=0)
    target_usage: float = Field(0.80, gt=0, lt=1)
    order0: float = Field(0.80, ge=0, le=1)
    order1_3: float = Field(0.15, ge=0, le=1)
    high_order: int = Field(9, ge=0, le=mz.MAX_PAGE_ORDER)
    movable: float = Field(0.70, ge=0, le=1)
    unmovable: float = Field(0.20, ge=0, le=1)
    event_interval_ns: int = Field(1000, gt=0)
    file: float = Field(0.0, ge=0, le=1)  # share of movable base allocations that are clean page cache
    file_dirty: float = Field(0.0, ge=0, le=1)  # share that are dirty page cache (the rest anonymous)
    thp_gfp: str = "GFP_HIGHUSER_MOVABLE|__GFP_COMP"  # GFP of high-order movable allocations
    thp_gfp_cma: float = Field(1.0, ge=0, le=1)  # share of THP allocations with __GFP_CMA (if policy tags THP)

    @model_validator(mode="after")
    def _mix(self):
        if self.file + self.file_dirty > 1 + 1e-9:
            raise ValueError("file + file_dirty must not exceed 1")
        if self.order0 + self.order1_3 > 1 + 1e-9:
            raise ValueError("order0 + order1_3 must not exceed 1")
        if self.movable + self.unmovable > 1 + 1e-9:
            raise ValueError("movable + unmovable must not exceed 1 (the rest is reclaimable)")
        return self


class FillSpec(_Strict):
    """Fill memory with anonymous order-0 pages until `free` is left (the oracle's set-up)."""

    free: Size
    start_ms: float = Field(0, ge=0)


class DeviceSpec(_Strict):
    """A device driver calling cma_alloc()/cma_release() on an area."""

    name: str = "device"
    area: str = "reserved"
    size_mib: list[float] = Field(min_length=1, max_length=2)  # [size] or [min, max] (uniform)
    size_choices_mib: list[float] | None = None  # alternatively: cycle through these sizes
    interval_ms: float = Field(500, gt=0)  # mean gap between requests (uniformly jittered +-50%)
    jitter: bool = True
    hold_ms: float = Field(0, ge=0)  # buffer lifetime before cma_release (0: release at once)
    align_order: int = Field(0, ge=0, le=mz.MAX_PAGE_ORDER + 8)
    count: int = Field(0, ge=0)  # requests in all (0: until the end)
    start_ms: float = Field(0, ge=0)
    recycle_mib: float = Field(0, ge=0)  # before each request: free and re-touch this much anon memory


class PinnerSpec(_Strict):
    """DMA pinner threads: pin a random in-use movable page for hold_us, pause gap_us, repeat."""

    threads: int = Field(1, ge=1, le=4096)
    hold_us: float = Field(gt=0)
    gap_us: float = Field(0, ge=0)
    longterm: bool = False
    cma_only: bool = False
    start_ms: float = Field(0, ge=0)


class PinLoad(BaseModel):
    """One pinner load of a pins_fail phase (pins_fail.sh LOADS entry name:threads:hold_us:gap_us[:flags])."""

    name: str
    threads: int
    hold_us: int
    gap_us: int
    longterm: bool = False  # flag L: FOLL_LONGTERM
    any_fill: bool = False  # flag R: any fill page (default: the candidate list, oracle-tool -C)


def parse_loads(text: str) -> list[PinLoad]:
    """'nopin:0:0:0,t4:4:1000:0,lt4:4:1000:0:L' -> [PinLoad]; ValueError names the bad entry."""
    out = []
    for item in [x.strip() for x in text.split(",") if x.strip()]:
        f = item.split(":")
        if len(f) not in (4, 5) or not all(x.isdigit() for x in f[1:4]) or not f[0]:
            raise ValueError(f"{item!r}: expected name:threads:hold_us:gap_us[:flags] with whole numbers")
        flags = f[4] if len(f) == 5 else ""
        if set(flags) - set("LR"):
            raise ValueError(f"{item!r}: unknown flag in {flags!r} (L = FOLL_LONGTERM, R = any fill page)")
        t, h, g = int(f[1]), int(f[2]), int(f[3])
        if t > 64:
            raise ValueError(f"{item!r}: at most 64 threads (oracle-tool's limit)")
        if t > 0 and h <= 0:
            raise ValueError(f"{item!r}: a load with threads needs hold_us > 0")
        out.append(PinLoad(name=f[0], threads=t, hold_us=h, gap_us=g, longterm="L" in flags, any_fill="R" in flags))
    if not out:
        raise ValueError("no load given")
    if len({x.name for x in out}) != len(out):
        raise ValueError("two loads share a name")
    return out


class PinsFailSpec(_Strict):
    """The oracle's pins_fail experiment (tools/pins_fail.sh, oracle-tool run -l LEAVE -F HEAD
    -B -I -V -D DEADLINE -a ALIGN -s SIZES -n COUNT), one phase per load on the same machine
    (cmasim.workload.pins_fail); also the older lkml_pins set-up (oracle-tool run -l LEAVE -R
    CHURN -a ALIGN -s SIZES -n COUNT: `churn`, `interleave = false`, `headroom = 0`)."""

    area: str = "reserved"
    leave: Size  # fill with anonymous memory until this much is free (-l)
    headroom: Size  # then drop this much fill outside CMA (-F)
    reborrow: bool = True  # before every attempt: re-touch, re-drop headroom, rescan (-B)
    churn: Size = 0  # before every attempt: MADV_DONTNEED a random run of this much fill, touch it again (-R)
    sizes_mib: list[float] = Field(min_length=1)  # attempt sizes (-s)
    interleave: bool = True  # sizes interleaved (-I); false: `count` attempts of each size in turn
    align_order: int = Field(8, ge=0, le=mz.MAX_PAGE_ORDER + 8)  # (-a)
    count: int = Field(12, ge=1)  # attempts per size (-n)
    interval_ms: float = Field(100, ge=0)  # wait after every attempt (-w)
    warm_ms: float = Field(500, ge=0)  # pinners run this long before the first attempt (-W)
    prep_ms: float = Field(400, ge=0)  # the re-borrow and rescan before an attempt take this long
    deadline_s: float = Field(120, gt=0)  # no new attempt this long after the pinners started (-D)
    phase_gap_s: float = Field(1, ge=0)  # idle time between two phases
    hz: int = Field(250, ge=100, le=1000)  # msleep() granularity for holds >= 20 ms (CONFIG_HZ)
    pin_wake_us: float = Field(0, ge=0)  # wake-up latency added to every pinner sleep (hold and gap)
    loads: str  # comma list name:threads:hold_us:gap_us[:flags], flags L (FOLL_LONGTERM), R (any fill page)
    phases: list[str] = []  # run only these loads (default: all, in order)

    @field_validator("loads")
    @classmethod
    def _loads(cls, v: str) -> str:
        parse_loads(v)
        return v

    def load_list(self) -> list[PinLoad]:
        loads = parse_loads(self.loads)
        if not self.phases:
            return loads
        by = {x.name: x for x in loads}
        return [by[n] for n in self.phases]


class WorkloadSpec(_Strict):
    duration_s: float | None = Field(None, gt=0)
    churn: ChurnSpec | None = None
    fill: FillSpec | None = None
    pins_fail: PinsFailSpec | None = None
    device: list[DeviceSpec] = []
    pinner: list[PinnerSpec] = []


class ReclaimSpec(_Strict):
    enabled: bool = True
    swap: Size | None = None  # swap/zram capacity (default: a quarter of memory)
    kswapd_rate_mib_s: float = Field(1024, gt=0)
    oom_killer: bool = True  # false: an allocation the OOM killer would rescue fails instead (oom_kill counts it)


class CompactionSpec(_Strict):
    enabled: bool = True


class CostSpec(_Strict):
    """Simulated costs (docs/model.md gives the sources of the defaults)."""

    migrate_page_us: float = Field(4.0, ge=0)
    drain_all_us: float = Field(20.0, ge=0)
    isolate_pageblock_us: float = Field(1.0, ge=0)
    swap_page_us: float = Field(20.0, ge=0)
    drop_clean_page_us: float = Field(1.0, ge=0)
    # alloc_contig_range() cost model (docs/model.md "Cost model"); zero/neutral on hardware.
    contig_call_us: float = Field(0.0, ge=0)  # fixed cost per alloc_contig_range() call
    scan_pfn_us: float = Field(0.0, ge=0)  # per pfn walked by the migrate scanner
    test_pfn_us: float = Field(0.0, ge=0)  # per pfn checked by test_pages_isolated()
    migrate_fail_us: float | None = Field(None, ge=0)  # per failed folio attempt (default 2.5 x migrate_page_us)
    thp_page_ratio: float = Field(1.0, gt=0, le=1)  # cost of a THP's base page relative to a 4 KiB page
    speed_factor: float = Field(1.0, gt=0)  # every cost above x factor (an emulated guest is slower)


class MigrationSpec(_Strict):
    """Migration outcomes besides pins (cmasim.mm.migrate): the chance that one migration
    attempt fails with a transient -EAGAIN (extra references, writeback, locks, lru batches)."""

    transient_eagain: float = Field(0.0, ge=0, le=1)


class CmaAreaSpec(_Strict):
    """A CMA area (mm/cma.c struct cma): name, size, optional base and order_per_bit."""

    name: str = "reserved"
    size: Size
    base: Size | None = None  # physical address; default: the kernel's placement
    order_per_bit: int = Field(0, ge=0, le=mz.MAX_PAGE_ORDER)


class MachineSpec(_Strict):
    memory: Size | None = None
    zones: dict[str, Size] | None = None
    cpus: int = Field(2, ge=1, le=64)
    min_free_kbytes: int | None = Field(None, ge=128)
    # /sys/kernel/mm/transparent_hugepage/enabled: "always", "madvise" or "never" (true = "always",
    # false = "never"). khugepaged runs unless "never" and raises min_free_kbytes (mm/khugepaged.c
    # set_recommended_min_free_kbytes(); machine.min_free_kbytes overrides it, as pins_fail.sh's
    # MINFREE does); with "always" the pins_fail fill faults THPs (cmasim.workload.fill).
    thp: bool | str = True
    # /sys/kernel/mm/transparent_hugepage/defrag: the GFP flags of a THP fault (gfp.vma_thp_gfp_mask)
    thp_defrag: Literal["always", "defer", "defer+madvise", "madvise", "never"] = "madvise"
    watermark_scale_factor: int = Field(10, ge=1, le=3000)
    percpu_pagelist_high_fraction: int = Field(0, ge=0)
    reserved: Size = 0  # kernel memory taken at boot (unmovable), e.g. text and memmap
    defrag_mode: bool = False  # vm.defrag_mode (v6.15+ rule sets only)

    @field_validator("thp", mode="before")
    @classmethod
    def _thp(cls, v):
        if isinstance(v, bool) or v in ("always", "madvise", "never"):
            return v
        raise ValueError(f"{v!r} is not a valid boolean or THP setting (true, false, \"always\", \"madvise\", "
                         f"\"never\")")

    def thp_enabled(self) -> str:
        """The THP "enabled" setting: "always", "madvise" or "never"."""
        if isinstance(self.thp, bool):
            return "always" if self.thp else "never"
        return self.thp


class Scenario(_Strict):
    name: str = ""
    description: str = ""
    seed: int = 1
    machine: MachineSpec = MachineSpec(memory=4 << 30)
    cma: list[CmaAreaSpec] = []
    workload: WorkloadSpec = WorkloadSpec()
    reclaim: ReclaimSpec = ReclaimSpec()
    compaction: CompactionSpec = CompactionSpec()
    costs: CostSpec = CostSpec()
    migration: MigrationSpec = MigrationSpec()
    metrics: list[str] = []  # headline metrics for `cmasim compare` (cmasim.compare.METRICS names or dotted paths)


# --- resolution to a machine layout -------------------------------------------------------------
def zone_layout(spec: MachineSpec) -> list[tuple[str, int]]:
    """[(zone name, pages)] in kernel order. Default: DMA32 up to 3 GiB, the rest in Normal."""
    if spec.zones:
        order = {n.lower(): i for i, n in enumerate(mz.ZONE_NAMES)}
        for name in spec.zones:
            if name.lower() not in order or name.lower() == "movable":
                raise ValueError(f"zones.{name}: unknown zone (use DMA, DMA32, Normal)")
        items = sorted(spec.zones.items(), key=lambda kv: order[kv[0].lower()])
        return [(mz.ZONE_NAMES[order[n.lower()]], b // mz.PAGE_SIZE) for n, b in items]
    mem = spec.memory if spec.memory is not None else 4 << 30
    dma32 = min(mem, 3 << 30)
    zones = [("DMA32", dma32 // mz.PAGE_SIZE)]
    if mem > dma32:
        zones.append(("Normal", (mem - dma32) // mz.PAGE_SIZE))
    return zones


def place_cma(zones: list[tuple[str, int]], areas: list[CmaAreaSpec]) -> list[tuple[str, int, int, int]]:
    """[(name, base_pfn, count, order_per_bit)]: explicit base, else start of Normal or top of memory."""
    out = []
    starts, s = {}, 0
    for name, pages in zones:
        starts[name] = (s, s + pages)
        s += pages
    taken: list[tuple[int, int]] = []
    total = sum(p for _, p in zones)
    for i, a in enumerate(areas):
        count = a.size // mz.PAGE_SIZE
        if count > max(p for _, p in zones):
            raise ValueError(f"cma[{i}] ({a.name}): {a.size >> 20} MiB does not fit: it is larger than every zone "
                             f"(largest {max(p for _, p in zones) * mz.PAGE_SIZE >> 20} MiB); an area lies "
                             f"inside one zone")
        if count > total:
            raise ValueError(f"cma[{i}] ({a.name}): {a.size >> 20} MiB does not fit: it is larger than memory")
        if a.base is not None:
            base = a.base // mz.PAGE_SIZE
        elif "Normal" in starts:
            base = starts["Normal"][0] + sum(c for b, c in taken if b >= starts["Normal"][0])
        else:
            last = zones[-1][0]
            base = starts[last][1] - count - sum(c for _, c in taken)
        zone = next((n for n, (lo, hi) in starts.items() if lo <= base < hi), None)
        if zone is None:
            raise ValueError(f"cma[{i}] ({a.name}): base pfn {base} is outside memory")
        lo, hi = starts[zone]
        if base + count > hi:
            raise ValueError(f"cma[{i}] ({a.name}): {a.size >> 20} MiB does not fit in zone {zone} "
                             f"({(hi - lo) * mz.PAGE_SIZE >> 20} MiB from pfn {lo}); an area may not straddle zones")
        for b, c in taken:
            if base < b + c and b < base + count:
                raise ValueError(f"cma[{i}] ({a.name}): overlaps another CMA area")
        taken.append((base, count))
        out.append((a.name, base, count, a.order_per_bit))
    return out


def _check_sizes(sc: Scenario) -> None:
    m = sc.machine
    checks = [("machine.memory", m.memory)] if m.memory is not None else []
    if m.zones:
        checks += [(f"machine.zones.{k}", v) for k, v in m.zones.items()]
        if m.memory is not None and m.memory != sum(m.zones.values()):
            raise ValueError("machine.memory: differs from the sum of machine.zones")
    for key, v in checks:
        if v == 0 or v % PAGEBLOCK_BYTES:
            raise ValueError(f"{key}: {v} bytes is not a positive multiple of a pageblock (2 MiB)")
    if m.reserved % mz.PAGE_SIZE:
        raise ValueError("machine.reserved: not a whole number of pages")
    for i, a in enumerate(sc.cma):
        if a.size == 0 or a.size % PAGEBLOCK_BYTES:
            raise ValueError(f"cma[{i}].size: {a.size} bytes is not a positive multiple of a pageblock (2 MiB)")
        if a.base is not None and a.base % PAGEBLOCK_BYTES:
            raise ValueError(f"cma[{i}].base: {a.base:#x} is not pageblock aligned (2 MiB)")
    zones = zone_layout(m)
    if sum(p for _, p in zones) > (1 << 31) - (1 << 20):
        raise ValueError("machine.memory: at most 8 TiB minus 4 GiB can be simulated (int32 pfns)")
    placed = place_cma(zones, sc.cma)
    names = [a.name for a in sc.cma]
    if len(set(names)) != len(names):
        raise ValueError("cma: two areas share a name")
    if sc.workload.churn is not None:
        try:
            parse_gfp(sc.workload.churn.thp_gfp)
        except GfpError as e:
            raise ValueError(f"workload.churn.thp_gfp: {e}") from None
    for i, d in enumerate(sc.workload.device):
        if d.area not in names:
            raise ValueError(f"workload.device[{i}].area: no CMA area {d.area!r} (areas: {', '.join(names) or 'none'})")
        count = next(c for n, _, c, _ in placed if n == d.area)
        sizes = d.size_choices_mib or d.size_mib
        for sz in sizes:
            pages = int(sz * 256)
            if pages <= 0:
                raise ValueError(f"workload.device[{i}]: a request must be at least one page")
            if pages > count:
                raise ValueError(f"workload.device[{i}].size_mib: {sz} MiB is larger than area "
                                 f"{d.area!r} ({count >> 8} MiB)")
        if len(d.size_mib) == 2 and d.size_mib[0] > d.size_mib[1]:
            raise ValueError(f"workload.device[{i}].size_mib: [min, max] with min > max")
    pf = sc.workload.pins_fail
    if pf is not None:
        if pf.area not in names:
            raise ValueError(f"workload.pins_fail.area: no CMA area {pf.area!r} (areas: {', '.join(names) or 'none'})")
        count = next(c for n, _, c, _ in placed if n == pf.area)
        for sz in pf.sizes_mib:
            if not 0 < int(sz * 256) <= count:
                raise ValueError(f"workload.pins_fail.sizes_mib: {sz} MiB is not between one page and area "
                                 f"{pf.area!r} ({count >> 8} MiB)")
        known = [x.name for x in parse_loads(pf.loads)]
        for n in pf.phases:
            if n not in known:
                raise ValueError(f"workload.pins_fail.phases: no load named {n!r} (loads: {', '.join(known)})")
        if sc.workload.pinner or sc.workload.device or sc.workload.fill or sc.workload.churn:
            raise ValueError("workload.pins_fail: runs its own fill, pinners and cma_alloc() calls; remove "
                             "[workload.fill], [[workload.pinner]], [[workload.device]] and [workload.churn]")
        return
    if sc.workload.duration_s is None and sc.workload.churn is None:
        # The run's length comes from the churn's event count or from duration_s; with neither
        # there is nothing to run (an empty file, or a [machine] table alone).
        raise ValueError("workload: no [workload.churn] table and no workload.duration_s, so the run has no "
                         "length; add [workload.churn] (e.g. events = 1000000) or set workload.duration_s")


def _format_error(source: str, e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def apply_overrides(data: dict, sets: list[str], source: str) -> dict:
    """`--set dotted.key=value` overrides, applied to the parsed TOML before validation.

    The value is read as a TOML value (numbers, booleans, strings, arrays, inline tables);
    a bare word that is not valid TOML is taken as a string. A list element is addressed
    by its index (`workload.pinner.0.threads=8`); an index one past the end appends.
    """
    for item in sets:
        if "=" not in item:
            raise ScenarioError(f"--set {item!r}: expected dotted.key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) > len(node):
                    raise ScenarioError(f"{source}: --set {key}: {part!r} is not a valid index into "
                                        f"{'.'.join(parts[:i])} (length {len(node)})")
                idx = int(part)
                if idx == len(node):
                    node.append({})
                if last:
                    node[idx] = value
                else:
                    node = node[idx]
                continue
            if last:
                node[part] = value
            else:
                nxt = node.get(part)
                if nxt is None:
                    nxt = [] if (i + 1 < len(parts) and parts[i + 1].isdigit()) else {}
                    node[part] = nxt
                elif not isinstance(nxt, (dict, list)):
                    raise ScenarioError(f"{source}: --set {key}: {'.'.join(parts[:i + 1])} is a value, not a table")
                node = nxt
    return data


def load_scenario_text(text: str, source: str, name: str | None = None, sets: list[str] | None = None) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{source}: not valid TOML: {e}") from None
    if sets:
        data = apply_overrides(data, sets, source)
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(_format_error(source, e)) from None
    try:
        _check_sizes(sc)
    except ValueError as e:
        raise ScenarioError(f"{source}: {e}") from None
    if not sc.name:
        sc.name = name or Path(source).stem
    return sc


def builtin_scenarios() -> dict[str, str]:
    """name -> TOML text of every scenario shipped with the package."""
    out = {}
    for f in sorted(resources.files("cmasim.scenarios").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".toml"):
            out[f.name[:-5]] = f.read_text()
    return out


def load_scenario(name_or_path: str, sets: list[str] | None = None) -> Scenario:
    """A built-in scenario by name, or a TOML file by path, with optional --set overrides."""
    builtin = builtin_scenarios()
    if name_or_path in builtin:
        return load_scenario_text(builtin[name_or_path], f"{name_or_path} (built-in)", name_or_path, sets)
    p = Path(name_or_path)
    if not p.exists():
        raise ScenarioError(f"{name_or_path}: no such file, and not a built-in scenario "
                            f"(built-in: {', '.join(builtin)})")
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(f"{name_or_path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ScenarioError(f"{name_or_path}: not a UTF-8 text file (byte {e.start}: {e.reason})") from None
    return load_scenario_text(text, str(p), None, sets)
