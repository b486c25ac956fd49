"""/proc renderers (cmasim.mm.vmstat): parsed back with `jc` and compared with real 6.18 files."""

from __future__ import annotations

import re

import jc
import pytest
from conftest import DATA
from helpers import (
    MOVABLE,
    POLICIES,
    RECLAIMABLE,
    SMALL,
    THP,
    UNMOVABLE,
    buddyinfo,
    make_machine,
    nr_free,
    zone_index,
)
from test_mm_init import parse_zoneinfo

from cmasim import gfp as g
from cmasim.mm import mmzone as mz
from cmasim.mm import vmstat

REAL = DATA / "traces" / "linux-6.18-x86_64" / "thp-mix"


def busy_machine(policy):
    """A machine with free blocks on several lists, pageblocks of four types, and per-CPU pages."""
    m = make_machine(SMALL, policy, cma_areas=[("cma", 4096, 2048, 0)])
    live = []
    mix = [(MOVABLE, 0), (UNMOVABLE, 1), (RECLAIMABLE, 0), (MOVABLE, 3), (UNMOVABLE, 4)] * 15 + [(THP, 9)] * 3
    for i, (gfp, order) in enumerate(mix):
        p = m.alloc(order, gfp, i % 2)
        assert p >= 0
        live.append(p)
    for p in live[::3]:
        m.free(p, 1)
    m.check()
    return m


class Snapshot:
    """The views the renderers use, filled from a real /proc file."""

    def __init__(self, zones, area=None, lists=None, blocks=None):
        self.zone_names = zones
        self.nr_zones = len(zones)
        self._area, self._lists, self._blocks = area, lists, blocks

    def zone_field(self, z, f):
        assert mz.Z_AREA <= f < mz.Z_AREA + mz.NR_PAGE_ORDERS
        return self._area[z][f - mz.Z_AREA]

    def free_list_count(self, z, order, mt):
        return self._lists.get((z, mt), [0] * 11)[order]

    def pageblock_types(self, z):
        return [mt for mt, n in enumerate(self._blocks[z]) for _ in range(n)]


# --- buddyinfo ----------------------------------------------------------------------------------
def test_buddyinfo_layout_is_byte_identical_to_the_kernel():
    text = (REAL / "before.buddyinfo").read_text()
    rows = [re.match(r"Node 0, zone\s+(\S+)((?:\s+\d+){11})\s*$", line) for line in text.splitlines()]
    snap = Snapshot([r.group(1) for r in rows], area=[[int(x) for x in r.group(2).split()] for r in rows])
    assert vmstat.render_buddyinfo(snap) == text


@pytest.mark.parametrize("policy", POLICIES)
def test_buddyinfo_parsed_by_jc_matches_the_counters(policy):
    m = busy_machine(policy)
    parsed = jc.parse("proc_buddyinfo", vmstat.render_buddyinfo(m))
    assert [r["zone"] for r in parsed] == ["DMA32", "Normal"]
    assert all(r["node"] == 0 for r in parsed)
    for z, r in enumerate(parsed):
        assert r["free_chunks"] == buddyinfo(m, z)
        # nr_free counts blocks on every migratetype list
        assert r["free_chunks"] == [sum(m.free_list_count(z, o, mt) for mt in range(mz.MIGRATE_TYPES))
                                    for o in range(11)]
        assert sum(n << o for o, n in enumerate(r["free_chunks"])) == m.zone_field(z, mz.Z_NR_FREE)


# --- pagetypeinfo ---------------------------------------------------------------------------------
def _drop_cma_column(line: str, prefix: int) -> str:
    cma = prefix + 13 * mz.MIGRATE_CMA
    return line[:cma] + line[cma + 13:]


def test_pagetypeinfo_layout_is_byte_identical_to_the_kernel():
    """The real file is from a kernel without CONFIG_CMA: compare with the CMA row/column removed."""
    text = (REAL / "before.pagetypeinfo").read_text()
    names = {n: i for i, n in enumerate(mz.MIGRATETYPE_NAMES)}
    zones, lists, blocks = [], {}, []
    for line in text.splitlines():
        if r := re.match(r"Node\s+0, zone\s+(\S+), type\s+(\S+)((?:\s+\d+){11})\s*$", line):
            if r.group(1) not in zones:
                zones.append(r.group(1))
            lists[(zones.index(r.group(1)), names[r.group(2)])] = [int(x) for x in r.group(3).split()]
        elif r := re.match(r"Node 0, zone\s+(\S+)((?:\s+\d+){5})\s*$", line):
            u, mv, rc, ha, iso = (int(x) for x in r.group(2).split())
            blocks.append([u, mv, rc, ha, 0, iso])
    assert len(zones) == 3 and len(blocks) == 3
    out = vmstat.render_pagetypeinfo(Snapshot(zones, lists=lists, blocks=blocks))
    got = []
    for line in out.splitlines(keepends=True):
        if ", type          CMA " in line:
            continue
        if line.startswith("Number of blocks type"):
            line = _drop_cma_column(line, 23)
        elif re.match(r"Node 0, zone", line):
            line = _drop_cma_column(line, 22)
        got.append(line)
    assert "".join(got) == text


@pytest.mark.parametrize("policy", POLICIES)
def test_pagetypeinfo_parsed_by_jc_matches_the_counters(policy):
    m = busy_machine(policy)
    text = vmstat.render_pagetypeinfo(m)
    parsed = jc.parse("proc_pagetypeinfo", text)
    assert (parsed["page_block_order"], parsed["pages_per_block"]) == (9, 512)
    rows = parsed["free_pages"]
    assert len(rows) == m.nr_zones * mz.MIGRATE_TYPES
    for r in rows:
        z, mt = m.zone_names.index(r["zone"]), mz.MIGRATETYPE_NAMES.index(r["type"])
        assert r["free"] == [m.free_list_count(z, o, mt) for o in range(11)]
    assert sum(sum(r["free"]) for r in rows if r["type"] == "CMA") > 0
    assert sum(sum(r["free"]) for r in rows if r["type"] == "Unmovable") > 0
    # jc knows five block columns (a kernel without CONFIG_CMA); with CMA the fifth is CMA's and
    # the last (Isolate) is dropped, so map them by position.
    for r in parsed["num_blocks_type"]:
        z = m.zone_names.index(r["zone"])
        types = m.pageblock_types(z)
        assert [r["unmovable"], r["movable"], r["reclaimable"], r["high_atomic"], r["isolate"]] == \
            [types.count(t) for t in range(5)]
    assert parsed["num_blocks_type"][1]["isolate"] == 4  # the CMA area's pageblocks
    header = next(line for line in text.splitlines() if line.startswith("Number of blocks type"))
    assert header.split()[4:] == list(mz.MIGRATETYPE_NAMES)
    assert sum(types.count(t) for z in range(m.nr_zones) for types in [m.pageblock_types(z)]
               for t in range(6)) == m.n_pages // 512


def test_pagetypeinfo_caps_huge_counts():
    snap = Snapshot(["Normal"], lists={(0, 1): [123456] + [0] * 10}, blocks=[[0, 1, 0, 0, 0, 0]])
    row = next(line for line in vmstat.render_pagetypeinfo(snap).splitlines() if "Movable" in line and "type" in line)
    assert row.split(", type")[1].split()[1] == ">100000"


# --- zoneinfo -----------------------------------------------------------------------------------------
def _shape(line: str) -> str:
    return re.sub(r"\d+", "N", line)


def test_zoneinfo_matches_the_real_kernel():
    """Zone sizes rounded to pageblocks so that Normal's share of min_free_kbytes is the real one."""
    real = parse_zoneinfo((REAL / "before.zoneinfo").read_text())
    m = make_machine([("DMA", 3584), ("DMA32", 773120), ("Normal", 786432)], "linux-6.18")
    assert m.min_free_kbytes == 67584
    text = vmstat.render_zoneinfo(m)
    sim = parse_zoneinfo(text)
    for key in ("min", "low", "high", "promo", "managed", "cma", "boost", "protection"):
        assert sim["Normal"][key] == real["Normal"][key], key
    assert sim["DMA32"]["protection"] == real["DMA32"]["protection"]
    for key in ("batch", "high_min", "high_max"):
        assert [p[key] for p in sim["Normal"]["pagesets"]] == [p[key] for p in real["Normal"]["pagesets"]]
    assert sim["Normal"]["thresholds"] == real["Normal"]["thresholds"]
    assert sim["DMA"]["thresholds"] == real["DMA"]["thresholds"] == [4, 4]
    assert [p["batch"] for z in ("DMA", "DMA32") for p in sim[z]["pagesets"]] == [1, 1, 63, 63]
    # every line the model prints has the shape (indentation, spacing) of a line the kernel prints
    real_shapes = {_shape(line) for line in (REAL / "before.zoneinfo").read_text().splitlines()}
    for line in text.splitlines():
        assert _shape(line) in real_shapes, line
    # and the zone-level lines come in the kernel's order
    keys = [line.split()[0] for line in text.split("Node 0, zone   Normal\n")[1].splitlines()[:11]]
    assert keys == ["pages", "boost", "min", "low", "high", "promo", "spanned", "present", "managed", "cma",
                    "protection:"]


def test_zoneinfo_61_flavour():
    m = make_machine(SMALL, "linux-6.1")
    text = vmstat.render_zoneinfo(m)
    assert "promo" not in text and "high_min" not in text and "nr_free_pages_blocks" not in text
    zi = parse_zoneinfo(text)
    normal = zone_index(m, "Normal")
    assert zi["Normal"]["pages free"] == m.zone_field(normal, mz.Z_VM_NR_FREE) == m.zone_field(normal, mz.Z_NR_FREE) == 8192
    # v6.1: pcp->high is set at boot
    assert [p["high"] for p in zi["Normal"]["pagesets"]] == [m.zone_field(normal, mz.Z_HIGH_MIN)] * 2


@pytest.mark.parametrize("policy", POLICIES)
def test_zoneinfo_tracks_live_counters(policy):
    m = busy_machine(policy)
    zi = parse_zoneinfo(vmstat.render_zoneinfo(m))
    for z, name in enumerate(m.zone_names):
        # the folded counter, as zoneinfo_show_print() prints zone_page_state()
        assert zi[name]["pages free"] == m.zone_field(z, mz.Z_VM_NR_FREE)
        assert [p["count"] for p in zi[name]["pagesets"]] == [m.pcp_field(z, c, mz.P_COUNT) for c in range(2)]
        assert [p["high"] for p in zi[name]["pagesets"]] == [m.pcp_field(z, c, mz.P_HIGH) for c in range(2)]
    assert zi["Normal"]["cma"] == 2048
    text = vmstat.render_zoneinfo(m)
    nr_cma = [int(x) for x in re.findall(r"nr_free_cma\s+(\d+)", text)]
    assert nr_cma == [m.zone_field(z, mz.Z_VM_NR_FREE_CMA) for z in range(2)]


# --- vmstat ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
def test_vmstat_names_and_values(policy):
    m = make_machine(SMALL, policy, cma_areas=[("cma", 4096, 2048, 0)])
    a = m.alloc(0, MOVABLE, 0)  # Normal
    b = m.alloc(3, UNMOVABLE, 1)  # Normal
    c = m.alloc(5, MOVABLE | g.BITS["__GFP_DMA32"], 0)  # DMA32
    d = m.alloc(10, MOVABLE, 1)  # Normal, buddy path
    text = vmstat.render_vmstat(m)
    vals = dict(line.split() for line in text.splitlines())
    vals = {k: int(v) for k, v in vals.items()}
    assert vals["pgalloc_normal"] == 1 + 8 + 1024 and vals["pgalloc_dma32"] == 32
    assert vals["pgalloc_dma"] == vals["pgalloc_movable"] == 0
    assert vals["nr_free_pages"] == sum(m.zone_field(z, mz.Z_VM_NR_FREE) for z in range(2))
    assert abs(vals["nr_free_pages"] - nr_free(m)) <= 2 * sum(m.zone_field(z, mz.Z_STAT_THRESHOLD) for z in range(2))
    assert vals["nr_free_cma"] == 2048
    assert vals["pgfree"] == 0
    for p in (a, b, c, d):
        m.free(p, 0)
    vals = {k: int(v) for k, v in (line.split() for line in vmstat.render_vmstat(m).splitlines())}
    assert vals["pgfree"] == 1 + 8 + 32 + 1024
    if policy == "linux-6.18":
        assert vals["nr_free_pages_blocks"] == sum(m.zone_field(z, mz.Z_NR_FREE_BLOCKS) for z in range(2))
    else:
        assert "nr_free_pages_blocks" not in vals
    # names are the kernel's and appear in /proc/vmstat order (the real kernel has no CONFIG_CMA,
    # so its file lacks the cma_alloc_* events)
    real_names = [line.split()[0] for line in (REAL / "before.vmstat").read_text().splitlines()]
    names = [n for n in vals if not n.startswith("cma_alloc_")]
    assert set(names) <= set(real_names)
    assert names == sorted(names, key=real_names.index)


# --- debugfs extfrag indices -------------------------------------------------------------------------
def test_fragmentation_and_unusable_index():
    nr = [4] + [0] * 10  # four free order-0 pages
    # 1000 - (1000 + 4 * 1000 / 2) / 4 = 250
    assert vmstat.fragmentation_index(nr, 1) == 250
    assert vmstat.fragmentation_index(nr, 0) == -1000  # would succeed
    assert vmstat.fragmentation_index([0] * 11, 3) == 0
    nr = [4, 0, 1] + [0] * 8  # 8 free pages, one order-2 block
    assert vmstat.unusable_index(nr, 1) == 500  # (8 - 2 * 2) * 1000 / 8
    assert vmstat.unusable_index(nr, 3) == 1000
    assert vmstat.unusable_index([0] * 11, 0) == 1000


def test_extfrag_index_from_a_real_buddyinfo():
    # Normal of the real machine has four free order-10 blocks: order 9 is satisfiable.
    line = next(l for l in (REAL / "before.buddyinfo").read_text().splitlines() if "Normal" in l)
    nr = [int(x) for x in line.split()[4:]]
    assert vmstat.fragmentation_index(nr, 9) == -1000
    free = sum(n << o for o, n in enumerate(nr))
    assert vmstat.unusable_index(nr, 9) == (free - 4 * 1024) * 1000 // free
