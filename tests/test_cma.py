"""CMA end to end on hand-checkable machines: cma_alloc, migration, pins, isolation, release.

Machine: DMA32 16 MiB (pfns 0..4095) with a 4 MiB CMA area at pfn 2048 (pageblocks 4..11).
"""

import pytest

from cmasim import gfp as G
from cmasim.machine import Machine, MachineConfig
from cmasim.mm import mmzone as mz
from cmasim.mm.cma import EBUSY, ENOMEM, CmaError, cma_alloc, cma_release
from cmasim.policy import get_policy

CMA_BASE, CMA_COUNT = 2048, 1024


def machine(policy="linux-6.18", **kw):
    cfg = MachineConfig(zones=[("DMA32", 4096)], nr_cpus=2, cma_areas=[("reserved", CMA_BASE, CMA_COUNT, 0)],
                        reclaim=False, compaction=False, **kw)
    m = Machine(cfg, get_policy(policy))
    m.check()
    return m


def in_cma(p):
    return CMA_BASE <= p < CMA_BASE + CMA_COUNT


def borrow_cma(m, n):
    """Allocate movable order-0 pages until n of them sit in the CMA area; returns those pfns."""
    got = []
    for _ in range(4096):
        p = m.alloc(0, G.GFP_HIGHUSER_MOVABLE)
        assert p >= 0
        if in_cma(p):
            got.append(p)
            if len(got) == n:
                return got
    raise AssertionError("could not borrow CMA pages")


@pytest.mark.parametrize("policy", ["linux-6.18", "linux-6.1"])
def test_idle_area_serves_without_migration(policy):
    m = machine(policy)
    a = m.area("reserved")
    pfn, ret, _lat = cma_alloc(m, a, 512, 9)
    m.check()
    assert ret == 0 and pfn == CMA_BASE
    assert m.vm(mz.VM_PGMIGRATE_SUCCESS) == 0 and a.pages_migrated == 0
    assert a.sysfs()["available_pages"] == CMA_COUNT - 512
    assert m.vm(mz.VM_CMA_ALLOC_SUCCESS) == 1
    # The pages are the device's now: order-0 allocated heads.
    w = int(m.S[mz.NODE_W * (pfn + 7) + mz.F_PINFO])
    assert (w >> mz.PI_STATE_SHIFT) & 3 == mz.PG_ALLOC
    cma_release(m, a, pfn, 512)
    m.drain_all()
    m.check()
    assert a.sysfs()["available_pages"] == CMA_COUNT and a.release_pages_success == 512
    # Everything merged back: the CMA free count is the whole area again.
    assert m.zone_field(0, mz.Z_NR_FREE_CMA) == CMA_COUNT


def test_borrowed_pages_are_migrated_out():
    m = machine()
    # Make movable allocations prefer CMA: fill non-CMA memory with unmovable pages first.
    while m.zone_field(0, mz.Z_NR_FREE) - m.zone_field(0, mz.Z_NR_FREE_CMA) > 600:
        assert m.alloc(0, G.GFP_KERNEL) >= 0
    borrowed = borrow_cma(m, 64)
    a = m.area("reserved")
    pfn, ret, lat = cma_alloc(m, a, CMA_COUNT // 2, 9)
    m.check()
    assert ret == 0
    moved = [p for p in borrowed if pfn <= p < pfn + CMA_COUNT // 2]
    assert moved, "the chosen range held borrowed pages"
    assert a.pages_migrated >= len(moved) and m.vm(mz.VM_PGMIGRATE_SUCCESS) == a.pages_migrated
    # Each handle followed its data out of the range.
    live = set(m.live_blocks())
    assert not any(pfn <= p < pfn + CMA_COUNT // 2 for p in live)
    assert lat >= a.pages_migrated * 4000  # 4 us per migrated page


def test_short_pins_in_every_candidate_make_it_ebusy_and_leave_pages_intact():
    m = machine()
    while m.zone_field(0, mz.Z_NR_FREE) - m.zone_field(0, mz.Z_NR_FREE_CMA) > 600:
        assert m.alloc(0, G.GFP_KERNEL) >= 0
    borrowed = borrow_cma(m, 600)
    # One pinned page in each of the two 512-page candidate ranges.
    pinned = [next(p for p in borrowed if p < CMA_BASE + 512), next(p for p in borrowed if p >= CMA_BASE + 512)]
    for p in pinned:
        assert m.pin(p, duration_ns=10**12) == p
    before = {p: int(m.S[mz.NODE_W * p + mz.F_OWNER]) for p in pinned}
    a = m.area("reserved")
    pfn, ret, _ = cma_alloc(m, a, 512, 9)
    m.check()
    assert (pfn, ret) == (-1, EBUSY)
    assert a.busy_retries == 2 and a.fail_busy == 1 and m.vm(mz.VM_CMA_ALLOC_FAIL) == 1
    for p in pinned:  # still allocated, still pinned, same owner word
        assert int(m.S[mz.NODE_W * p + mz.F_OWNER]) == before[p]
        assert p in m.live_blocks()
    assert not a.bitmap.any(), "bitmap bits are cleared after -EBUSY"
    assert m.zone_field(0, mz.Z_NR_ISOLATE_PB) == 0, "isolation undone"
    # Once the pins end, the same request succeeds.
    m.advance(m.now_ns + 10**12 + 1)
    pfn, ret, _ = cma_alloc(m, a, 512, 9)
    m.check()
    assert ret == 0


def test_longterm_pin_migrates_out_of_cma_first():
    m = machine()
    while m.zone_field(0, mz.Z_NR_FREE) - m.zone_field(0, mz.Z_NR_FREE_CMA) > 600:
        assert m.alloc(0, G.GFP_KERNEL) >= 0
    p = borrow_cma(m, 1)[0]
    q = m.pin(p, duration_ns=10**12, longterm=True)
    m.check()
    assert q >= 0 and q != p and not in_cma(q)
    assert m.vm(mz.VM_PIN_MIGRATED) == 1 and m.vm(mz.VM_PGMIGRATE_SUCCESS) == 1
    assert q in m.live_blocks() and p not in m.live_blocks()
    # The whole area can now be claimed despite the pin.
    pfn, ret, _ = cma_alloc(m, m.area("reserved"), CMA_COUNT, 10)
    assert ret == 0 and m.area("reserved").busy_retries == 0


def test_buggy_policy_leaves_longterm_pin_on_cma():
    from dataclasses import replace

    m = Machine(MachineConfig(zones=[("DMA32", 4096)], cma_areas=[("reserved", CMA_BASE, CMA_COUNT, 0)],
                              reclaim=False, compaction=False),
                replace(get_policy("linux-6.18"), name="bug", longterm_pin_migrates=False))
    while m.zone_field(0, mz.Z_NR_FREE) - m.zone_field(0, mz.Z_NR_FREE_CMA) > 600:
        m.alloc(0, G.GFP_KERNEL)
    p = borrow_cma(m, 1)[0]
    assert m.pin(p, duration_ns=10**12, longterm=True) == p
    assert m.vm(mz.VM_LONGTERM_PIN_ON_CMA) == 1
    _, ret, _ = cma_alloc(m, m.area("reserved"), CMA_COUNT, 10)
    assert ret == EBUSY


def test_pinned_page_freed_by_owner_is_released_at_unpin():
    m = machine()
    p = m.alloc(0, G.GFP_HIGHUSER_MOVABLE)
    assert m.pin(p, duration_ns=1000) == p
    assert m.free(p) == 0
    assert m.vm(mz.VM_DEFERRED_FREE) == 1
    assert (int(m.S[mz.NODE_W * p + mz.F_PINFO]) >> mz.PI_STATE_SHIFT) & 3 == mz.PG_ALLOC
    m.advance(m.now_ns + 2000)
    m.check()
    assert (int(m.S[mz.NODE_W * p + mz.F_PINFO]) >> mz.PI_STATE_SHIFT) & 3 != mz.PG_ALLOC
    assert m.vm(mz.VM_UNPIN) == 1


@pytest.mark.parametrize("policy,errno", [("linux-6.18", EBUSY), ("linux-6.1", ENOMEM)])
def test_bad_requests(policy, errno):
    m = machine(policy)
    a = m.area("reserved")
    # Larger than the area: no candidate range (-ENOMEM; 6.15+ -EBUSY), state untouched.
    pfn, ret, _ = cma_alloc(m, a, CMA_COUNT + 512, 0)
    assert (pfn, ret) == (-1, errno) and a.fail_no_range == 1
    m.check()
    with pytest.raises(CmaError):
        cma_alloc(m, a, 0, 0)
    with pytest.raises(CmaError):
        cma_alloc(m, a, 16, -1)
    # Release of pages that cma_alloc did not hand out.
    with pytest.raises(CmaError, match="not allocated from this area"):
        cma_release(m, a, CMA_BASE, 16)
    with pytest.raises(CmaError, match="outside the area"):
        cma_release(m, a, 0, 16)
    # Pin of a free page.
    assert m.pin(CMA_BASE + 5, duration_ns=1000) == -14
    assert m.vm(mz.VM_PIN_FAIL) == 1
    m.check()


def test_unaligned_and_busy_candidates_move_by_alignment():
    m = machine()
    a = m.area("reserved")
    p1, r1, _ = cma_alloc(m, a, 100, 0)  # order_per_bit 0, no alignment: first free bits
    p2, r2, _ = cma_alloc(m, a, 100, 8)  # next 256-aligned candidate after the first
    m.check()
    assert (r1, r2) == (0, 0) and p1 == CMA_BASE and p2 == CMA_BASE + 256


def test_compaction_makes_an_order9_block():
    m = Machine(MachineConfig(zones=[("DMA32", 4096)], nr_cpus=1, reclaim=False), get_policy("linux-6.18"))
    # Fill, then free every other page so no pageblock is entirely free.
    pages = []
    while True:
        p = m.alloc(0, G.GFP_HIGHUSER_MOVABLE)
        if p < 0:
            break
        pages.append(p)
    for p in pages[::2]:
        m.free(p)
    m.drain_all()
    m.check()
    assert all(m.free_list_count(0, o, mt) == 0 for o in (9, 10) for mt in range(mz.MIGRATE_TYPES))
    from cmasim.mm.compaction import COMPACT_SUCCESS, compact_zone

    status = compact_zone(m.S, m.C, 0, 0, 9, mz.MIGRATE_MOVABLE, 1)
    m.drain_all()
    m.check()
    assert status == COMPACT_SUCCESS
    assert any(m.free_list_count(0, o, mz.MIGRATE_MOVABLE) for o in (9, 10))
    assert m.vm(mz.VM_COMPACT_ISOLATED) > 0
    # A THP allocation now succeeds without falling back.
    assert m.alloc(9, G.GFP_TRANSHUGE_LIGHT) >= 0


def test_kswapd_keeps_free_pages_between_watermarks():
    m = Machine(MachineConfig(zones=[("DMA32", 8192)], nr_cpus=1, compaction=False, swap_bytes=0,
                              kswapd_rate_pages_s=10_000_000), get_policy("linux-6.18"))
    high = m.zone_field(0, mz.Z_WMARK_HIGH)
    low = m.zone_field(0, mz.Z_WMARK_LOW)
    mn = m.zone_field(0, mz.Z_WMARK_MIN)
    t = 0
    # Page cache keeps growing; kswapd must reclaim it in the background.
    for _ in range(30_000):
        t += 2_000
        m.advance(t)
        assert m.alloc(0, G.GFP_HIGHUSER_MOVABLE, owner=mz.OW_FILE) >= 0
        assert m.zone_field(0, mz.Z_NR_FREE) > mn // 2
    m.advance(t + 50_000_000)
    m.check()
    free = m.zone_field(0, mz.Z_NR_FREE)
    assert m.vm(mz.VM_PGSTEAL_KSWAPD) > 0 and m.vm(mz.VM_KSWAPD_WAKE) > 0
    assert low <= free, (free, low, high)
    assert free <= high + 2 * 32 + 64, (free, low, high)


def test_page_freed_while_waiting_for_migration_is_not_a_busy_retry():
    """A pinned page on the migration list whose owner freed it is released at unpin while
    alloc_contig_range() runs: migrate_folio_unmap() treats that as done, not as -EBUSY."""
    m = Machine(MachineConfig(zones=[("DMA32", 4096), ("Normal", 8192)], nr_cpus=2,
                              cma_areas=[("c", 4096, 4096, 0)], reclaim=False, compaction=False),
                get_policy("linux-6.18"))
    in_range = sorted(p for p in (m.alloc(0, G.GFP_HIGHUSER_MOVABLE, 0, owner=mz.OW_FILE_DIRTY)
                                  for _ in range(3000)) if 6144 <= p < 6144 + 512)
    victim = in_range[0]
    a = m.area("c")
    assert cma_alloc(m, a, 2048, 0)[1] == 0
    assert m.pin(victim, duration_ns=40_000) == victim
    assert m.free(victim) == 0
    assert m.free(victim) == -22  # already freed by its owner
    pfn, ret, _ = cma_alloc(m, a, 512, 0)
    m.check()
    assert (pfn, ret) == (6144, 0) and a.busy_retries == 0


def test_release_of_a_pinned_device_page_waits_for_the_unpin():
    m = machine()
    a = m.area("reserved")
    pfn, ret, _ = cma_alloc(m, a, 1, 0)
    assert ret == 0
    assert m.pin(pfn, duration_ns=1_000_000) == pfn
    cma_release(m, a, pfn, 1)
    assert (int(m.S[mz.NODE_W * pfn + mz.F_PINFO]) >> mz.PI_STATE_SHIFT) & 3 == mz.PG_ALLOC
    q = m.alloc(0, G.GFP_HIGHUSER_MOVABLE)
    assert q != pfn
    m.advance(m.now_ns + 2_000_000)
    m.check()
    assert (int(m.S[mz.NODE_W * pfn + mz.F_PINFO]) >> mz.PI_STATE_SHIFT) & 3 != mz.PG_ALLOC
