"""/proc snapshots: parsing the real kernel files in data/traces, and a Machine built to match them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cmasim.mm import mmzone as mz
from cmasim.mm import vmstat
from cmasim.policy import get_policy
from cmasim.trace import snapshot as snapmod
from cmasim.trace.snapshot import (
    SnapshotError,
    build_machine,
    capture,
    load_snapshot,
    parse_buddyinfo,
    parse_pagetypeinfo,
    parse_zoneinfo,
    place_small,
)

DATA = Path(__file__).resolve().parent.parent / "data"
THP = DATA / "traces" / "linux-6.18-x86_64" / "thp-mix"



def test_parse_shared_proc_files():
    bi = parse_buddyinfo((THP / "before.buddyinfo").read_text())
    assert bi[(0, "Normal")] == [4611, 749, 226, 177, 14, 19, 5, 3, 3, 0, 4]
    pti = parse_pagetypeinfo((THP / "before.pagetypeinfo").read_text())
    assert pti.type_names == ["Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate"]
    assert pti.blocks[(0, "Normal")] == {"Unmovable": 311, "Movable": 1156, "Reclaimable": 69, "HighAtomic": 0,
                                         "Isolate": 0}
    assert pti.free[(0, "Normal")]["Movable"][:3] == [4610, 747, 225]
    zi = {z.name: z for z in parse_zoneinfo((THP / "before.zoneinfo").read_text())}
    n = zi["Normal"]
    assert n.fields["managed"] == 786432 and n.fields["min"] == 8500 and n.fields["start_pfn"] == 1048576
    assert n.pagesets[0] == {"cpu": 0, "count": 12825, "high": 12916, "batch": 63, "high_min": 5312,
                             "high_max": 49152}
    assert n.protection == [0, 0, 0, 0, 0]


def test_load_snapshot_flavour_and_sizes():
    s = load_snapshot(THP)
    assert s.flavour == "mainline-nocma" and s.nr_cpus == 2
    z = {x.name: x for x in s.zones}
    # pagetypeinfo's pageblock counts give the zone sizes (>= managed; DMA32 is entirely free)
    assert z["DMA32"].nr_blocks == 1528 and z["DMA32"].managed == 772918
    assert z["Normal"].blocks[mz.MIGRATE_UNMOVABLE] == 311 and z["Normal"].blocks[mz.MIGRATE_RECLAIMABLE] == 69
    assert s.zone_of_kernel_pfn(0x1BEC48) == 2 and s.zone_of_kernel_pfn(5000) == 1
    assert s.buddyinfo()["Normal"] == [4611, 749, 226, 177, 14, 19, 5, 3, 3, 0, 4]


def test_machine_matches_snapshot():
    s = load_snapshot(THP)
    st = build_machine(s, get_policy("linux-6.18"), headroom={"Normal": 4096})
    m = st.machine
    m.check()
    assert {m.zone_names[z]: vmstat.zone_nr_free(m, z) for z in range(3)} == s.buddyinfo()
    for zi, zs in enumerate(s.zones):
        for mt in range(mz.MIGRATE_TYPES):
            assert [m.free_list_count(zi, o, mt) for o in range(11)] == zs.free[mt]
        types = m.pageblock_types(zi)
        extra = 8 if zs.name == "Normal" else 0  # hot-plug headroom: offline MOVABLE pageblocks
        assert [types.count(t) for t in range(mz.MIGRATE_TYPES)] == [
            b + (extra if t == mz.MIGRATE_MOVABLE else 0) for t, b in enumerate(zs.blocks)]
        assert m.zone_field(zi, mz.Z_MANAGED) == zs.managed
        assert m.zone_field(zi, mz.Z_WMARK_MIN) == zs.wmark["min"]
        for cpu in range(2):
            assert m.pcp_field(zi, cpu, mz.P_COUNT) == zs.pcp[cpu]["count"]
            assert m.pcp_field(zi, cpu, mz.P_HIGH) == zs.pcp[cpu]["high"]
    assert st.pages_min == 16896  # min_free_kbytes 67584: khugepaged's recommendation
    assert st.reserved_pages == [256, 9418, 0]
    assert int(st.offline.sum()) == 4096
    # the pre-trace pool: everything neither free, per-CPU, reserved nor offline
    total = m.n_pages
    free = sum(zs.managed for zs in s.zones) - sum(st.reserved_pages)  # noqa: F841
    pcp = sum(p["count"] for zs in s.zones for p in zs.pcp)
    nfree = sum(m.zone_field(z, mz.Z_NR_FREE) for z in range(3))
    assert int(st.pretrace.sum()) == total - nfree - pcp - sum(st.reserved_pages) - 4096


def test_pretrace_and_online_blocks():
    s = load_snapshot(THP)
    st = build_machine(s, get_policy("linux-6.18"), headroom={"Normal": 2048})
    m = st.machine
    p = st.take_pretrace(2, 3, mz.MIGRATE_UNMOVABLE)
    assert p >= 0 and p % 8 == 0 and st.pageblock_type(p) == mz.MIGRATE_UNMOVABLE
    assert not st.pretrace[p:p + 8].any()
    assert m.free(p) == 0
    low0 = m.zone_field(2, mz.Z_WMARK_LOW)
    q = st.take_offline(2, 10)
    assert q >= 0 and m.zone_field(2, mz.Z_MANAGED) == 786432 + 1024
    assert m.zone_field(2, mz.Z_WMARK_LOW) >= low0
    assert m.free(q) == 0
    m.check()
    assert st.take_offline(2, 10) >= 0 and st.take_offline(2, 10) == -1



def test_pretrace_search_skips_pageblocks_by_count_only():
    """replay_core.pretrace_search with per-pageblock counts of pre-trace pages (SnapState._left)
    gives the answer and cursor of the page-by-page scan, for every order, type and cursor, on
    random pre-trace maps (some pageblocks empty, some full, some partial) and pageblock types."""
    from cmasim.trace import replay_core as RC

    rng = np.random.default_rng(7)
    npb, pb = 24, mz.PAGEBLOCK_NR_PAGES
    for trial in range(6):
        dens = rng.choice([0.0, 1.0, 0.3, 0.97], size=npb)
        pre = np.repeat(dens, pb) > rng.random(npb * pb)
        S = (rng.integers(0, 3, size=npb)).astype(np.int32)  # pageblock words at offset 0
        left = pre.reshape(-1, pb).sum(axis=1)
        none = np.zeros(0, dtype=np.int64)
        start, end = pb * (trial % 3), npb * pb - pb * (trial % 2)
        answers = set()
        for order in (0, 1, 3, 9, 10):
            n = 1 << order
            for mt in (-1, 0, 1, 2):
                for cursor in (0, 5 * n, 3 * pb, 11 * pb + n):
                    want = RC.pretrace_search(pre, none, S, 0, 0xFF, start, end, n, mt, cursor)
                    got = RC.pretrace_search(pre, left, S, 0, 0xFF, start, end, n, mt, cursor)
                    assert tuple(map(int, got)) == tuple(map(int, want)), (trial, order, mt, cursor)
                    answers.add(int(want[0]) >= 0)
        assert answers == {True, False}  # both found and not-found cases were checked


def test_pretrace_counts_follow_claims():
    """SnapState._left stays the per-pageblock count of `pretrace` as blocks are taken."""
    st = build_machine(load_snapshot(THP), get_policy("linux-6.18"))
    taken = [st.take_pretrace(z, order, mt) for z, order, mt in
             [(2, 0, mz.MIGRATE_MOVABLE), (2, 3, mz.MIGRATE_UNMOVABLE), (1, 9, -1), (2, 9, -1), (2, 10, -1),
              (1, 0, mz.MIGRATE_RECLAIMABLE)] * 3]
    assert sum(p >= 0 for p in taken) >= 12 and st._left is not None
    assert np.array_equal(st._left, st.pretrace.reshape(-1, mz.PAGEBLOCK_NR_PAGES).sum(axis=1))

def test_place_small_never_leaves_free_buddies():
    counts = [40, 17, 9, 5, 3, 2, 1, 1, 1]
    placed = place_small(counts, 4)
    heads = {(pb, off): o for pb, off, o in placed}
    assert sorted(o for *_, o in placed) == sorted(o for o, n in enumerate(counts) for _ in range(n))
    for (pb, off), o in heads.items():
        assert off % (1 << o) == 0
        assert heads.get((pb, off ^ (1 << o))) != o
    with pytest.raises(SnapshotError):
        place_small([2000], 1)


def test_android_flavour_snapshot(tmp_path):
    (tmp_path / "zoneinfo").write_text(
        "Node 0, zone   Normal\n  pages free     1536\n        min      100\n        low      125\n"
        "        high     150\n        promo    175\n        spanned  4096\n        present  4096\n"
        "        managed  4096\n        cma      1024\n        protection: (0, 0, 0, 0, 0)\n  pagesets\n"
        "    cpu: 0\n              count:    0\n              high:     0\n              batch:    1\n"
        "              high_min: 4\n              high_max: 256\n  start_pfn:           0\n")
    names = ["Unmovable", "Movable", "Reclaimable", "CMA", "HighAtomic", "Isolate"]
    ptype = ["Page block order: 9", "Pages per block:  512", "",
             ("Free pages count per migrate type at order       0      1      2      3      4      5      6      7"
              "      8      9     10 ")]
    free = {"Movable": [0] * 10 + [0], "CMA": [0] * 10 + [1]}
    for n in names:
        ptype.append(f"Node    0, zone   Normal, type {n:>12} " + "".join(f"{c:6d} " for c in free.get(n, [0] * 11)))
    ptype += ["", "Number of blocks type     " + "".join(f"{n:>12} " for n in names),
              "Node 0, zone   Normal " + "".join(f"{c:12d} " for c in [2, 4, 0, 2, 0, 0])]
    ptype[-1] = ptype[-1].replace("\n", "")
    (tmp_path / "pagetypeinfo").write_text("\n".join(ptype) + "\n")
    s = load_snapshot(tmp_path)
    assert s.flavour == "android"
    z = s.zones[0]
    assert z.blocks[mz.MIGRATE_CMA] == 2 and z.free[mz.MIGRATE_CMA][10] == 1
    st = build_machine(s, get_policy("linux-6.18"))
    st.machine.check()
    assert st.machine.free_list_count(0, 10, mz.MIGRATE_CMA) == 1


@pytest.mark.skipif(not os.access("/proc/pagetypeinfo", os.R_OK), reason="needs root for /proc/pagetypeinfo")
def test_capture_this_machine(tmp_path):
    names = capture(tmp_path / "snap")
    assert {"buddyinfo", "pagetypeinfo", "zoneinfo", "vmstat"} <= set(names)
    s = load_snapshot(tmp_path / "snap")
    assert s.zones and all(z.managed > 0 for z in s.zones)


def test_missing_zoneinfo_is_a_clear_error(tmp_path):
    with pytest.raises(SnapshotError, match="zoneinfo"):
        load_snapshot(tmp_path)


_ = (np, snapmod)
