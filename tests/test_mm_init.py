"""Zone set-up arithmetic (cmasim.mm.mm_init) against kernel-model.md §3.4/§4.2 and a real 6.18 /proc/zoneinfo."""

from __future__ import annotations

import re

import pytest
from conftest import DATA

from cmasim.mm import mm_init

TRACES = DATA / "traces" / "linux-6.18-x86_64"
ZONE_IDX = {"DMA": 0, "DMA32": 1, "Normal": 2, "Movable": 3}


def parse_zoneinfo(text: str) -> dict[str, dict]:
    """The per-zone lines of /proc/zoneinfo the model reproduces."""
    zones: dict[str, dict] = {}
    cur = None
    for line in text.splitlines():
        m = re.match(r"Node (\d+), zone\s+(\S+)$", line)
        if m:
            cur = zones.setdefault(m.group(2), {"pagesets": [], "thresholds": []})
            continue
        if cur is None:
            continue
        s = line.strip()
        if m := re.fullmatch(r"(pages free|boost|min|low|high|promo|spanned|present|managed|cma)\s+(\d+)", s):
            cur[m.group(1)] = int(m.group(2))
        elif s.startswith("protection:"):
            cur["protection"] = tuple(int(x) for x in re.findall(r"\d+", s))
        elif re.fullmatch(r"cpu: \d+", s):
            cur["pagesets"].append({})
        elif m := re.fullmatch(r"(count|high|batch|high_min|high_max):\s+(\d+)", s):
            cur["pagesets"][-1][m.group(1)] = int(m.group(2))
        elif m := re.fullmatch(r"vm stats threshold: (\d+)", s):
            cur["thresholds"].append(int(m.group(1)))
    return zones


@pytest.fixture(params=["thp-mix", "pybuild"])
def real_zoneinfo(request) -> dict[str, dict]:
    return parse_zoneinfo((TRACES / request.param / "before.zoneinfo").read_text())


def managed_of(zi: dict[str, dict], with_movable: bool = False) -> dict[int, int]:
    names = ("DMA", "DMA32", "Normal") + (("Movable",) if with_movable else ())
    return {ZONE_IDX[n]: zi[n]["managed"] for n in names}


# --- kernel-model.md §3.4 worked example ------------------------------------------------------
def test_doc_worked_watermark_example():
    managed = {0: 3840, 1: 772918, 2: 1179648}
    assert sum(managed.values()) == 1956406
    marks = mm_init.setup_per_zone_wmarks(managed, 67584)
    assert (marks[2].min, marks[2].low, marks[2].high) == (10187, 12733, 15279)
    assert (marks[1].min, marks[1].low, marks[1].high) == (6675, 8343, 10011)
    assert (marks[0].min, marks[0].low, marks[0].high) == (33, 41, 49)
    # promo is one more gap above high
    assert marks[2].promo == 15279 + (15279 - 12733)


def test_default_min_free_kbytes_with_thp_three_zones():
    # khugepaged: 512 pages * 3 zones * (2 + 3*3) = 16896 pages = 67584 kB (doc example).
    assert mm_init.default_min_free_kbytes({0: 3840, 1: 772918, 2: 1179648}, thp=True) == 67584
    assert mm_init.default_min_free_kbytes({0: 3840, 1: 772918, 2: 786432}, thp=True) == 67584


def test_default_min_free_kbytes_without_thp_is_the_sqrt_rule():
    # lowmem = 1563190 pages = 6252760 kB; int_sqrt(6252760 * 16) = int_sqrt(100044160) = 10002
    assert mm_init.default_min_free_kbytes({0: 3840, 1: 772918, 2: 786432}, thp=False) == 10002
    # two zones: lowmem 12288 pages = 49152 kB -> int_sqrt(786432) = 886
    assert mm_init.default_min_free_kbytes({1: 4096, 2: 8192}, thp=False) == 886


def test_thp_recommendation_capped_at_five_percent_of_lowmem():
    # sqrt rule gives 886 kB -> pages_min 221: DMA32 min 73 gap 18 high 109; Normal min 147 gap 36
    # high 219. nr_free_buffer_pages = (4096-109) + (8192-219) = 11960; 5% = 598 pages = 2392 kB,
    # far below the uncapped 512*2*11 pages.
    assert mm_init.default_min_free_kbytes({1: 4096, 2: 8192}, thp=True) == 2392


@pytest.mark.parametrize("pages,expected", [(1, 128), (1 << 30, 262144), (65536, 2048)])
def test_calculate_min_free_kbytes_clamps(pages, expected):
    # 65536 pages = 262144 kB: int_sqrt(262144 * 16) = 2048
    assert mm_init.calculate_min_free_kbytes(pages) == expected


@pytest.mark.parametrize("managed,batch", [(3840, 1), (4096, 1), (8192, 1), (16384, 3), (65536, 15),
                                           (262144, 63), (772918, 63), (4 << 20, 63)])
def test_zone_batchsize(managed, batch):
    assert mm_init.zone_batchsize(managed) == batch


def test_lowmem_reserve_ratios():
    r = mm_init.setup_per_zone_lowmem_reserve({0: 4096, 1: 8192, 2: 32768})
    assert r[0] == [0, 8192 // 256, (8192 + 32768) // 256, (8192 + 32768) // 256]
    assert r[1] == [0, 0, 32768 // 256, 32768 // 256]
    assert r[2] == [0, 0, 0, 0]


# --- a real 6.18 /proc/zoneinfo ---------------------------------------------------------------------
def test_real_zoneinfo_min_free_kbytes(real_zoneinfo):
    assert mm_init.default_min_free_kbytes(managed_of(real_zoneinfo), thp=True) == 67584


@pytest.mark.parametrize("zone", ["DMA", "DMA32", "Normal"])
def test_real_zoneinfo_watermarks(real_zoneinfo, zone):
    managed = managed_of(real_zoneinfo)
    mfk = mm_init.default_min_free_kbytes(managed, thp=True)
    mk = mm_init.setup_per_zone_wmarks(managed, mfk)[ZONE_IDX[zone]]
    zi = real_zoneinfo[zone]
    assert zi["boost"] == 0
    assert (mk.min, mk.low, mk.high, mk.promo) == (zi["min"], zi["low"], zi["high"], zi["promo"])


def test_real_zoneinfo_movable_zone_watermarks(real_zoneinfo):
    managed = managed_of(real_zoneinfo, with_movable=True)
    mk = mm_init.setup_per_zone_wmarks(managed, 67584)[ZONE_IDX["Movable"]]
    zi = real_zoneinfo["Movable"]
    assert (mk.min, mk.low, mk.high, mk.promo) == (zi["min"], zi["low"], zi["high"], zi["promo"])


@pytest.mark.parametrize("zone", ["DMA", "DMA32", "Normal", "Movable"])
def test_real_zoneinfo_protection(real_zoneinfo, zone):
    reserve = mm_init.setup_per_zone_lowmem_reserve(managed_of(real_zoneinfo, with_movable=True))
    prot = real_zoneinfo[zone]["protection"]
    # The kernel prints MAX_NR_ZONES entries: DMA, DMA32, Normal, Movable, Device (empty: same as Movable).
    assert len(prot) == 5
    assert list(prot[:4]) == reserve[ZONE_IDX[zone]]
    assert prot[4] == prot[3]


@pytest.mark.parametrize("zone", ["DMA", "DMA32", "Normal"])
def test_real_zoneinfo_pagesets(real_zoneinfo, zone):
    managed = managed_of(real_zoneinfo)
    zi = real_zoneinfo[zone]
    ncpu = len(zi["pagesets"])
    assert ncpu == 2
    low = mm_init.setup_per_zone_wmarks(managed, 67584)[ZONE_IDX[zone]].low
    batch = mm_init.zone_batchsize(zi["managed"])
    high_min, high_max = mm_init.pcp_high_limits(zi["managed"], low, batch, ncpu)
    for ps in zi["pagesets"]:
        assert ps["batch"] == batch
        assert ps["high_min"] == high_min
        assert ps["high_max"] == high_max
    assert zi["thresholds"] == [mm_init.calculate_normal_threshold(zi["managed"], ncpu)] * ncpu


def test_real_zoneinfo_values_spelled_out():
    """The thp-mix numbers by hand, so a wrong parser cannot make the tests above vacuous."""
    zi = parse_zoneinfo((TRACES / "thp-mix" / "before.zoneinfo").read_text())
    assert [zi[z]["managed"] for z in ("DMA", "DMA32", "Normal")] == [3840, 772918, 786432]
    assert (zi["Normal"]["min"], zi["Normal"]["low"], zi["Normal"]["high"]) == (8500, 10625, 12750)
    assert zi["DMA"]["protection"] == (0, 3019, 6091, 6091, 6091)
    assert [(p["batch"], p["high_min"], p["high_max"]) for p in zi["DMA"]["pagesets"]] == [(1, 25, 240)] * 2
    assert zi["DMA32"]["thresholds"] == [24, 24]
