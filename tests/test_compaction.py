"""Compaction entry points (cmasim/mm/compaction.py, alloc_pages.py, wakeup.py): who wakes
kcompactd and for which order, what kcompactd compacts for, and which zones direct
compaction skips. Kernel: mm/compaction.c kcompactd_do_work(), wakeup_kcompactd(),
compaction_suit_allocation_order(), try_to_compact_pages(); mm/vmscan.c wakeup_kswapd(),
kswapd_try_to_sleep() (v6.18). Interpreted core: compact_zone is replaced by a recorder
where only the decision to call it is under test."""

import pytest

from cmasim import gfp as G
from cmasim.machine import Machine, MachineConfig
from cmasim.mm import alloc_pages as ap
from cmasim.mm import compaction as cp
from cmasim.mm import mmzone as mz
from cmasim.mm.wakeup import wakeup_kswapd
from cmasim.policy import get_policy


def fragmented(zones=(("DMA32", 4096),), cma=(), reclaim=False, step=2, **kw):
    """Fill with order-0 pages (non-CMA ones only when there is CMA; the last few from the
    atomic reserve), then free every page whose pfn is a multiple of `step`: plenty of free
    memory, but outside CMA no free block of order 6 or more (a few dozen pages are left
    over from the fill)."""
    m = Machine(MachineConfig(zones=list(zones), nr_cpus=1, reclaim=reclaim, cma_areas=list(cma),
                              min_free_kbytes=128, **kw), get_policy("linux-6.18"))
    pages = []
    for gfp in (G.GFP_KERNEL | G.BITS["__GFP_NORETRY"] if cma else G.GFP_HIGHUSER_MOVABLE, G.BITS["__GFP_HIGH"]) * 2:
        while True:
            p = m.alloc(0, gfp)
            if p < 0:
                break
            pages.append(p)
        m.drain_all()  # take the per-CPU lists' pages too
    for p in pages:
        if p % step == 0:
            m.free(p)
    m.drain_all()
    for k in range(mz.NR_VM):
        m.C[int(m.C[mz.H_VM]) + k] = 0
    m.C[mz.H_KCOMPACTD_NEXT] = 0
    m.C[mz.H_KSWAPD_NEXT] = 0
    for z in range(m.nr_zones):  # the atomic top-up stole from movable blocks: forget its boosts
        m.C[int(m.C[mz.H_ZONE]) + z * mz.ZS + mz.Z_BOOST] = 0
    return m


@pytest.fixture
def recorder(monkeypatch):
    calls = {"compact": [], "drain": []}
    status = {"ret": cp.COMPACT_COMPLETE}

    def compact_zone(S, C, cpu, z, order, mt, sync):
        calls["compact"].append((z, order, mt, sync))
        return status["ret"]

    def drain_all_pages(S, C, z):
        calls["drain"].append(z)

    monkeypatch.setattr(cp, "compact_zone", compact_zone)
    monkeypatch.setattr(cp, "drain_all_pages", drain_all_pages)
    monkeypatch.setattr(ap, "compact_zone", compact_zone)
    calls["status"] = status
    return calls


def test_failed_thp_fault_without_reclaim_flags_wakes_nothing():
    """GFP_TRANSHUGE_LIGHT has neither __GFP_KSWAPD_RECLAIM nor __GFP_DIRECT_RECLAIM: a failed
    THP fault wakes neither kswapd nor kcompactd (the old slow path woke kcompactd on every
    order > 0 failure)."""
    m = fragmented()
    assert m.alloc(9, G.GFP_TRANSHUGE_LIGHT) < 0
    assert int(m.C[mz.H_KCOMPACTD_NEXT]) == 0 and int(m.C[mz.H_KSWAPD_NEXT]) == 0


def test_wakeup_kswapd_wakes_kcompactd_for_a_balanced_node_only_without_direct_reclaim():
    m = fragmented(zones=(("Normal", 4096),))
    wakeup_kswapd(m.C, G.GFP_KERNEL, 0, mz.ZONE_NORMAL)  # balanced at order 0, may reclaim: nothing
    assert int(m.C[mz.H_KCOMPACTD_NEXT]) == 0 and int(m.C[mz.H_KSWAPD_NEXT]) == 0
    wakeup_kswapd(m.C, G.GFP_NOWAIT, 0, mz.ZONE_NORMAL)  # order 0 never wakes kcompactd
    assert int(m.C[mz.H_KCOMPACTD_NEXT]) == 0
    # At order 6 the fragmented node is not balanced: kswapd is woken, not kcompactd.
    wakeup_kswapd(m.C, G.GFP_NOWAIT, 6, mz.ZONE_NORMAL)
    assert int(m.C[mz.H_KSWAPD_NEXT]) > 0 and int(m.C[mz.H_KCOMPACTD_NEXT]) == 0
    # A fresh node is balanced at order 3: an atomic caller wakes kcompactd at its order.
    f = Machine(MachineConfig(zones=[("Normal", 4096)], nr_cpus=1, reclaim=False), get_policy("linux-6.18"))
    wakeup_kswapd(f.C, G.GFP_NOWAIT, 3, mz.ZONE_NORMAL)
    assert int(f.C[mz.H_KCOMPACTD_ORDER]) == 3 and int(f.C[mz.H_KCOMPACTD_NEXT]) > 0
    assert int(f.C[mz.H_KCOMPACTD_HIGHEST]) == mz.ZONE_NORMAL + 1
    g = Machine(MachineConfig(zones=[("Normal", 4096)], nr_cpus=1, reclaim=False), get_policy("linux-6.18"))
    wakeup_kswapd(g.C, G.GFP_KERNEL, 3, mz.ZONE_NORMAL)
    assert int(g.C[mz.H_KCOMPACTD_NEXT]) == 0


def test_kswapd_going_to_sleep_wakes_kcompactd_with_its_order():
    """kswapd_try_to_sleep(): once balanced, wakeup_kcompactd(pgdat, alloc_order, ...)."""
    m = Machine(MachineConfig(zones=[("Normal", 8192)], nr_cpus=1, swap_bytes=0, kswapd_rate_pages_s=10_000_000),
                get_policy("linux-6.18"))
    while m.zone_field(0, mz.Z_NR_FREE) > m.zone_field(0, mz.Z_WMARK_MIN) // 2:
        assert m.alloc(0, G.BITS["__GFP_HIGH"], owner=mz.OW_FILE) >= 0
    m.drain_all()
    wakeup_kswapd(m.C, G.GFP_KERNEL, 2, mz.ZONE_NORMAL)
    m.advance(m.now_ns + 50_000_000)
    assert m.vm(mz.VM_PGSTEAL_KSWAPD) > 0 and int(m.C[mz.H_KSWAPD_NEXT]) == 0
    assert int(m.C[mz.H_KCOMPACTD_ORDER]) == 2 and int(m.C[mz.H_KCOMPACTD_NEXT]) > 0


def test_kcompactd_compacts_for_the_requested_order_unmovable_and_drains_that_zone(recorder):
    """kcompactd_do_work(): cc.order = kcompactd_max_order, GFP_KERNEL (MIGRATE_UNMOVABLE),
    MIGRATE_SYNC_LIGHT; drain_all_pages(zone) after COMPACT_COMPLETE only (the old kcompactd
    always compacted for order 9 MOVABLE and drained every zone)."""
    m = fragmented(zones=(("DMA32", 4096), ("Normal", 4096)))
    m.C[mz.H_KCOMPACTD_ORDER] = 6
    m.C[mz.H_KCOMPACTD_HIGHEST] = mz.ZONE_NORMAL + 1
    cp.kcompactd_run(m.S, m.C)
    assert recorder["compact"] == [(0, 6, mz.MIGRATE_UNMOVABLE, 1), (1, 6, mz.MIGRATE_UNMOVABLE, 1)]
    assert recorder["drain"] == [0, 1]
    assert int(m.C[mz.H_KCOMPACTD_ORDER]) == 0 and m.vm(mz.VM_COMPACT_DAEMON_WAKE) == 1
    # highest_zoneidx DMA32 leaves Normal alone; COMPACT_SUCCESS drains nothing.
    recorder["compact"].clear()
    recorder["drain"].clear()
    recorder["status"]["ret"] = cp.COMPACT_SUCCESS
    m.C[mz.H_KCOMPACTD_ORDER] = 6
    m.C[mz.H_KCOMPACTD_HIGHEST] = mz.ZONE_DMA32 + 1
    cp.kcompactd_run(m.S, m.C)
    assert recorder["compact"] == [(0, 6, mz.MIGRATE_UNMOVABLE, 1)] and recorder["drain"] == []


def test_kcompactd_skips_a_zone_that_already_passes_min_without_cma(recorder):
    """compaction_suit_allocation_order(..., ALLOC_WMARK_MIN, ...): a zone that already has the
    order free above MIN (without ALLOC_CMA) is skipped; free CMA does not count."""
    fresh = Machine(MachineConfig(zones=[("Normal", 4096)], nr_cpus=1, reclaim=False), get_policy("linux-6.18"))
    fresh.C[mz.H_KCOMPACTD_ORDER] = 3
    cp.kcompactd_run(fresh.S, fresh.C)
    assert recorder["compact"] == []
    # Free memory only as CMA (and scattered non-CMA pages): not skipped.
    m = fragmented(zones=(("Normal", 8192),), cma=(("cma", 4096, 4096, 0),))
    assert m.zone_field(0, mz.Z_NR_FREE_CMA) == 4096
    m.C[mz.H_KCOMPACTD_ORDER] = 6
    cp.kcompactd_run(m.S, m.C)
    assert recorder["compact"] == [(0, 6, mz.MIGRATE_UNMOVABLE, 1)]


def test_direct_compaction_skips_a_zone_that_passes_and_stops_there(recorder):
    """try_to_compact_pages(): compaction_suit_allocation_order() returns COMPACT_SUCCESS for a
    zone that passes the request's watermark; the walk stops without compacting."""
    m = fragmented(zones=(("DMA32", 4096), ("Normal", 4096)))
    f = Machine(MachineConfig(zones=[("DMA32", 4096), ("Normal", 4096)], nr_cpus=1, reclaim=False),
                get_policy("linux-6.18"))
    rc = ap.try_to_compact_pages(f.S, f.C, 0, 6, mz.MIGRATE_MOVABLE, mz.ALLOC_WMARK_MIN | mz.ALLOC_CMA,
                                 mz.ZONE_NORMAL, 1, 1)
    assert rc == cp.COMPACT_SUCCESS and recorder["compact"] == []
    rc = ap.try_to_compact_pages(m.S, m.C, 0, 6, mz.MIGRATE_MOVABLE, mz.ALLOC_WMARK_MIN | mz.ALLOC_CMA,
                                 mz.ZONE_NORMAL, 1, 1)
    assert [c[0] for c in recorder["compact"]] == [1, 0] and rc == cp.COMPACT_COMPLETE


def test_costly_async_compaction_without_alloc_cma_needs_non_cma_free_memory(recorder):
    """v6.13+ compaction_suit_allocation_order(): an async order > 3 request without ALLOC_CMA
    is skipped unless __zone_watermark_ok(0, wmark + compact_gap(order), alloc_flags 0)
    passes, i.e. unless there is non-CMA free memory for the targets. With ALLOC_CMA, or in
    sync mode, the zone is compacted (the old model compacted in every case)."""
    m = fragmented(zones=(("Normal", 8192),), cma=(("cma", 4096, 4096, 0),), step=8)
    assert m.zone_field(0, mz.Z_NR_FREE) - m.zone_field(0, mz.Z_NR_FREE_CMA) < m.zone_field(0, mz.Z_WMARK_MIN) + 1024
    af = mz.ALLOC_WMARK_MIN
    assert cp.compaction_suit_allocation_order(m.C, 0, 9, mz.ZONE_NORMAL, af, True, False) == cp.COMPACT_SKIPPED
    assert cp.compaction_suit_allocation_order(m.C, 0, 9, mz.ZONE_NORMAL, af, False, False) == cp.COMPACT_CONTINUE
    p, rc = ap.__alloc_pages_direct_compact(m.S, m.C, 0, 9, mz.MIGRATE_MOVABLE, af, mz.ZONE_NORMAL, 0, 0)
    assert (p, rc) == (-1, cp.COMPACT_SKIPPED) and recorder["compact"] == []
    assert m.vm(mz.VM_COMPACT_STALL) == 0
    p, rc = ap.__alloc_pages_direct_compact(m.S, m.C, 0, 9, mz.MIGRATE_MOVABLE, af | mz.ALLOC_CMA,
                                            mz.ZONE_NORMAL, 0, 0)
    assert p >= 0 and rc == cp.COMPACT_SUCCESS  # free CMA pageblocks already satisfy it: no compaction
    assert recorder["compact"] == []
