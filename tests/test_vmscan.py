"""Reclaim (cmasim/mm/vmscan.py): counters, kswapd's balance test, boost reclaim, the
reclaim-active flag. Interpreted core (tests/conftest.py)."""

import pytest

from cmasim import gfp as G
from cmasim.machine import InvariantViolation, Machine, MachineConfig
from cmasim.mm import mmzone as mz
from cmasim.policy import get_policy

FILE = mz.OW_FILE


def vm_slot(m, idx):
    return int(m.C[mz.H_VM]) + idx


def test_pgscan_counts_pages_so_it_is_never_below_pgsteal():
    """mm/vmscan.c shrink_inactive_list(): PGSCAN_* and PGSTEAL_* both count pages. Reclaiming
    order-3 page-cache folios must scan at least the pages it steals (the old model counted
    one per sampled block, so pgscan was 8x below pgsteal here)."""
    m = Machine(MachineConfig(zones=[("DMA32", 8192)], nr_cpus=1, compaction=False, swap_bytes=0,
                              kswapd_rate_pages_s=10_000_000), get_policy("linux-6.18"))
    t = 0
    for _ in range(1500):
        t += 20_000
        m.advance(t)
        m.alloc(3, G.GFP_HIGHUSER_MOVABLE, owner=FILE)
    m.advance(t + 50_000_000)
    steal_k, scan_k = m.vm(mz.VM_PGSTEAL_KSWAPD), m.vm(mz.VM_PGSCAN_KSWAPD)
    steal_d, scan_d = m.vm(mz.VM_PGSTEAL_DIRECT), m.vm(mz.VM_PGSCAN_DIRECT)
    assert steal_k > 0 and steal_k % 8 == 0
    assert scan_k >= steal_k and scan_d >= steal_d
    m.check()


def test_checker_rejects_pgsteal_above_pgscan():
    m = Machine(MachineConfig(zones=[("DMA32", 4096)], nr_cpus=1, compaction=False), get_policy("linux-6.18"))
    m.check()
    m.C[vm_slot(m, mz.VM_PGSTEAL_DIRECT)] = 5
    m.C[vm_slot(m, mz.VM_PGSCAN_DIRECT)] = 4
    with pytest.raises(InvariantViolation, match="pgscan 4 < pgsteal 5"):
        m.check()


# --- W1: pgdat_balanced ------------------------------------------------------------------------
from cmasim.mm.wakeup import pgdat_balanced, wakeup_kswapd  # noqa: E402

UNMOVABLE_FILE = G.BITS["__GFP_HIGH"]  # non-CMA, no reclaim or kswapd wake-up, may dip below MIN (owner set by the test)


def cma_machine(**kw):
    """One Normal zone of 8192 pages, the upper half CMA."""
    kw.setdefault("compaction", False)
    kw.setdefault("swap_bytes", 0)
    return Machine(MachineConfig(zones=[("Normal", 8192)], nr_cpus=1, cma_areas=[("cma", 4096, 4096, 0)], **kw),
                   get_policy("linux-6.18"))


def fill_non_cma_page_cache(m, leave):
    """Non-CMA page cache until only `leave` non-CMA pages are free (CMA stays free)."""
    while m.zone_field(0, mz.Z_NR_FREE) - m.zone_field(0, mz.Z_NR_FREE_CMA) > leave:
        assert m.alloc(0, UNMOVABLE_FILE, owner=FILE) >= 0
    m.drain_all()


def test_pgdat_balanced_does_not_count_free_cma():
    """mm/vmscan.c pgdat_balanced(): __zone_watermark_ok(..., alloc_flags 0) excludes free CMA.
    With 4096 CMA pages free but non-CMA free below the high mark the node is NOT balanced
    (the old zone_balanced() compared NR_FREE_PAGES, CMA included, with high + boost)."""
    m = cma_machine(reclaim=False)
    high = m.zone_field(0, mz.Z_WMARK_HIGH)
    fill_non_cma_page_cache(m, high // 2)
    assert m.zone_field(0, mz.Z_NR_FREE) > high + m.zone_field(0, mz.Z_BOOST)  # old rule: balanced
    assert not pgdat_balanced(m.C, 0, mz.ZONE_NORMAL)
    m.drain_all()


def test_pgdat_balanced_any_eligible_zone_suffices_and_lowmem_reserve_applies():
    """Any zone up to highest_zoneidx passing its high mark balances the node (the old kswapd
    wanted every zone balanced); a lower zone counts for higher requests only above its
    lowmem_reserve. Order 0 reads only the counters, so they are set directly (the folded
    NR_FREE_PAGES, zone_page_state(), which pgdat_balanced() reads: no diffs, no drift mark)."""
    m = Machine(MachineConfig(zones=[("DMA32", 8192), ("Normal", 8192)], nr_cpus=1, reclaim=False,
                              compaction=False), get_policy("linux-6.18"))
    zb0, zb1 = int(m.C[mz.H_ZONE]), int(m.C[mz.H_ZONE]) + mz.ZS
    m.C[zb1 + mz.Z_VM_NR_FREE] = m.zone_field(1, mz.Z_WMARK_MIN)  # Normal below its high mark
    assert pgdat_balanced(m.C, 0, mz.ZONE_NORMAL)  # DMA32 is fine: the node is balanced
    assert pgdat_balanced(m.C, 0, mz.ZONE_DMA32)
    m.C[zb0 + mz.Z_LOWMEM + mz.ZONE_NORMAL] = m.zone_field(0, mz.Z_VM_NR_FREE)
    assert not pgdat_balanced(m.C, 0, mz.ZONE_NORMAL)  # DMA32 keeps everything for itself
    assert pgdat_balanced(m.C, 0, mz.ZONE_DMA32)
    m.C[zb1 + mz.Z_VM_NR_FREE] = 8192  # Normal alone balances a Normal request
    assert pgdat_balanced(m.C, 0, mz.ZONE_NORMAL)


def test_kswapd_reclaims_while_free_memory_is_mostly_cma():
    """kswapd keeps reclaiming until non-CMA free memory passes the high mark, although free
    CMA alone is far above it (the old kswapd slept at once: pgsteal_kswapd 0)."""
    m = cma_machine(kswapd_rate_pages_s=10_000_000)
    high = m.zone_field(0, mz.Z_WMARK_HIGH)
    fill_non_cma_page_cache(m, high // 2)
    wakeup_kswapd(m.C, G.GFP_KERNEL, 0, mz.ZONE_NORMAL)
    assert m.vm(mz.VM_KSWAPD_WAKE) == 1
    m.advance(m.now_ns + 100_000_000)
    assert m.vm(mz.VM_PGSTEAL_KSWAPD) > 0
    assert m.zone_field(0, mz.Z_NR_FREE) - m.zone_field(0, mz.Z_NR_FREE_CMA) > high
    assert pgdat_balanced(m.C, 0, mz.ZONE_NORMAL)
    assert int(m.C[mz.H_KSWAPD_NEXT]) == 0  # asleep again
    m.check()


def test_wakeup_kswapd_records_order_and_highest_and_skips_a_balanced_node():
    m = cma_machine(reclaim=False)
    wakeup_kswapd(m.C, G.GFP_KERNEL, 0, mz.ZONE_NORMAL)
    assert m.vm(mz.VM_KSWAPD_WAKE) == 0  # balanced, no boost: not woken
    fill_non_cma_page_cache(m, m.zone_field(0, mz.Z_WMARK_MIN) // 2)
    wakeup_kswapd(m.C, G.GFP_KERNEL, 2, mz.ZONE_DMA32)
    wakeup_kswapd(m.C, G.GFP_KERNEL, 1, mz.ZONE_NORMAL)
    assert m.vm(mz.VM_KSWAPD_WAKE) == 1
    assert int(m.C[mz.H_KSWAPD_ORDER]) == 2 and int(m.C[mz.H_KSWAPD_HIGHEST]) == mz.ZONE_NORMAL + 1


# --- W3: ZONE_RECLAIM_ACTIVE ---------------------------------------------------------------------
def test_reclaim_active_set_while_kswapd_balances_and_cleared_when_it_sleeps():
    """mm/vmscan.c balance_pgdat(): set_reclaim_active() on the eligible zones for the whole
    run, clear_reclaim_active() at its end (the flag was never set before)."""
    m = cma_machine(kswapd_rate_pages_s=32_000)  # 32 pages per 1 ms step: the run takes many steps
    high = m.zone_field(0, mz.Z_WMARK_HIGH)
    fill_non_cma_page_cache(m, high // 2)
    wakeup_kswapd(m.C, G.GFP_KERNEL, 0, mz.ZONE_NORMAL)
    seen_active = 0
    t = m.now_ns
    for _ in range(400):
        t += 1_000_000
        m.advance(t)
        if m.zone_field(0, mz.Z_FLAGS) & mz.ZONE_RECLAIM_ACTIVE:
            seen_active += 1
            assert int(m.C[mz.H_KSWAPD_NEXT]) != 0
        if int(m.C[mz.H_KSWAPD_NEXT]) == 0:
            break
    assert seen_active >= 2
    assert int(m.C[mz.H_KSWAPD_NEXT]) == 0
    assert not m.zone_field(0, mz.Z_FLAGS) & mz.ZONE_RECLAIM_ACTIVE
    m.check()


# --- W10: boost reclaim ------------------------------------------------------------------------
def test_boost_reclaim_neither_swaps_nor_writes_back_then_resets_the_boost_and_wakes_kcompactd():
    """balance_pgdat() with a boosted but balanced node: reclaim for the boost with
    may_swap = may_writepage = 0, subtract the recorded boost at the end, then
    wakeup_kcompactd(pageblock_order). The old kswapd swapped anonymous pages for a boost and
    never woke kcompactd."""
    m = Machine(MachineConfig(zones=[("Normal", 8192)], nr_cpus=1, compaction=True, swap_bytes=16 << 20,
                              kswapd_rate_pages_s=10_000_000), get_policy("linux-6.18"))
    kinds = [mz.OW_ANON, mz.OW_FILE_DIRTY, FILE]
    for i in range(4800):
        assert m.alloc(0, G.GFP_KERNEL | G.BITS["__GFP_NORETRY"], owner=kinds[i % 3]) >= 0
    m.drain_all()
    zb = int(m.C[mz.H_ZONE])
    m.C[zb + mz.Z_BOOST] = 512
    assert pgdat_balanced(m.C, 0, mz.ZONE_NORMAL)  # balanced even with the boosted high mark
    wakeup_kswapd(m.C, 0, 0, mz.ZONE_NORMAL)
    assert m.vm(mz.VM_KSWAPD_WAKE) == 1  # boosted: woken although balanced
    free0 = m.zone_field(0, mz.Z_NR_FREE)
    m.advance(m.now_ns + 10_000_000)
    assert m.vm(mz.VM_PSWPOUT) == 0 and m.vm(mz.VM_PGWRITEBACK) == 0
    assert 512 <= m.vm(mz.VM_PGSTEAL_KSWAPD) <= 512 + 32
    m.drain_all()  # kswapd frees through its per-CPU list
    assert m.zone_field(0, mz.Z_NR_FREE) >= free0 + 512
    assert m.zone_field(0, mz.Z_BOOST) == 0
    assert int(m.C[mz.H_KCOMPACTD_ORDER]) == mz.PAGEBLOCK_ORDER and int(m.C[mz.H_KCOMPACTD_NEXT]) > 0
    m.check()


def test_unbalanced_node_drops_boost_reclaim_and_reclaims_normally():
    """An unbalanced node ignores the boost ("restart"): normal reclaim, swap allowed."""
    m = Machine(MachineConfig(zones=[("Normal", 8192)], nr_cpus=1, compaction=False, swap_bytes=16 << 20,
                              kswapd_rate_pages_s=10_000_000), get_policy("linux-6.18"))
    high = m.zone_field(0, mz.Z_WMARK_HIGH)
    while m.zone_field(0, mz.Z_NR_FREE) > high // 2:
        assert m.alloc(0, G.GFP_ATOMIC, owner=mz.OW_ANON) >= 0
    m.drain_all()
    zb = int(m.C[mz.H_ZONE])
    m.C[zb + mz.Z_BOOST] = 256
    wakeup_kswapd(m.C, 0, 0, mz.ZONE_NORMAL)
    m.advance(m.now_ns + 50_000_000)
    assert m.vm(mz.VM_PSWPOUT) > 0  # only anonymous memory to reclaim: swapped
    assert m.zone_field(0, mz.Z_BOOST) == 0
    assert m.zone_field(0, mz.Z_NR_FREE) > high
    m.check()


def test_boost_survives_until_kswapd_runs_with_reclaim_off():
    """With reclaim off kswapd still runs (it finds nothing to reclaim) and resets the boost at
    the end of its run, not at the wake-up (the old model zeroed it at once)."""
    m = Machine(MachineConfig(zones=[("Normal", 8192)], nr_cpus=1, compaction=False, reclaim=False),
                get_policy("linux-6.18"))
    zb = int(m.C[mz.H_ZONE])
    m.C[zb + mz.Z_BOOST] = 512
    wakeup_kswapd(m.C, 0, 0, mz.ZONE_NORMAL)
    assert m.zone_field(0, mz.Z_BOOST) == 512
    m.advance(m.now_ns + 10_000_000)
    assert m.zone_field(0, mz.Z_BOOST) == 0
