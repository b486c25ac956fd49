"""GFP names (cmasim.gfp) and their decoding (gfp_migratetype, gfp_zone), checked against real traces."""

from __future__ import annotations

import lzma
import re

import pytest
from conftest import DATA

from cmasim import gfp as g
from cmasim.mm import mmzone as mz

try:  # the decoding helpers live in the allocator entry module
    from cmasim.mm.alloc_pages import gfp_migratetype, gfp_zone
except ImportError:  # pragma: no cover - moved by a refactor
    from cmasim.mm.rmqueue import gfp_migratetype, gfp_zone


def real_gfp_strings() -> set[str]:
    out = set()
    for run in ("thp-mix", "pybuild"):
        with lzma.open(DATA / "traces" / "linux-6.18-x86_64" / run / "trace.txt.xz", "rt") as f:
            out |= set(re.findall(r"gfp_flags=(\S+)", f.read()))
    return out


@pytest.fixture(scope="module")
def real_gfps():
    s = real_gfp_strings()
    assert len(s) > 10
    return s


def test_format_gfp_prints_like_the_kernel(real_gfps):
    for s in real_gfps:
        assert g.format_gfp(g.parse_gfp(s)) == s


def test_composites():
    assert g.GFP_KERNEL == mz.GFP_DIRECT_RECLAIM_ | mz.GFP_KSWAPD_RECLAIM_ | mz.GFP_IO_ | mz.GFP_FS_
    assert g.GFP_TRANSHUGE_LIGHT & (mz.GFP_DIRECT_RECLAIM_ | mz.GFP_KSWAPD_RECLAIM_) == 0
    assert g.GFP_TRANSHUGE == g.GFP_TRANSHUGE_LIGHT | mz.GFP_DIRECT_RECLAIM_
    assert g.format_gfp(g.GFP_TRANSHUGE_LIGHT) == "GFP_TRANSHUGE_LIGHT"
    assert g.format_gfp(0) == "none" and g.parse_gfp("none") == 0
    assert g.format_gfp(g.GFP_KERNEL | mz.GFP_ZERO_ | 0x40000000) == "GFP_KERNEL|__GFP_ZERO|0x40000000"
    assert g.parse_gfp("GFP_KERNEL|0x100") == g.GFP_KERNEL | mz.GFP_ZERO_


def test_unknown_flag_is_named():
    with pytest.raises(g.GfpError, match="__GFP_BOGUS"):
        g.parse_gfp("GFP_KERNEL|__GFP_BOGUS")


@pytest.mark.parametrize("gfp,mt", [
    (g.GFP_KERNEL, mz.MIGRATE_UNMOVABLE), (g.GFP_HIGHUSER_MOVABLE, mz.MIGRATE_MOVABLE),
    (g.GFP_KERNEL | g.BITS["__GFP_RECLAIMABLE"], mz.MIGRATE_RECLAIMABLE), (g.GFP_TRANSHUGE_LIGHT, mz.MIGRATE_MOVABLE),
    (g.GFP_NOFS | g.BITS["__GFP_MOVABLE"], mz.MIGRATE_MOVABLE), (g.GFP_ATOMIC, mz.MIGRATE_UNMOVABLE),
])
def test_gfp_migratetype(gfp, mt):
    assert gfp_migratetype(gfp) == mt


@pytest.mark.parametrize("gfp,zone", [
    (g.GFP_KERNEL, mz.ZONE_NORMAL), (g.GFP_HIGHUSER_MOVABLE, mz.ZONE_MOVABLE), (g.GFP_HIGHUSER, mz.ZONE_NORMAL),
    (g.GFP_KERNEL | g.BITS["__GFP_DMA32"], mz.ZONE_DMA32), (g.GFP_KERNEL | g.BITS["__GFP_DMA"], mz.ZONE_DMA),
    (g.GFP_NOFS | g.BITS["__GFP_MOVABLE"], mz.ZONE_NORMAL),
])
def test_gfp_zone(gfp, zone):
    assert gfp_zone(gfp) == zone


def test_real_trace_migratetypes_follow_the_gfp_bits(real_gfps):
    # every mm_page_alloc line of the real trace: migratetype == gfp_migratetype(gfp_flags)
    with lzma.open(DATA / "traces" / "linux-6.18-x86_64" / "thp-mix" / "trace.txt.xz", "rt") as f:
        pairs = set(re.findall(r"migratetype=(\d+) gfp_flags=(\S+)", f.read()))
    assert len(pairs) > 5
    for mt, s in pairs:
        assert gfp_migratetype(g.parse_gfp(s)) == int(mt), s
