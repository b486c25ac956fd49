"""Per-CPU vmstat deltas (cmasim.mm.zone_stat): the fold at stat_threshold, the vmstat
worker's fold, and the rules that read the folded counters (zone_watermark_fast(), the CMA
balancing rule in __rmqueue(), zone_watermark_ok_safe() below percpu_drift_mark, kswapd's
pressure threshold). Kernel: mm/vmstat.c, mm/page_alloc.c, mm/vmscan.c (v6.18)."""

from __future__ import annotations

import pytest
from helpers import POLICIES, SMALL, UNMOVABLE, make_machine, zone_addr, zone_index

from cmasim import gfp as g
from cmasim.mm import mm_init
from cmasim.mm import mmzone as mz
from cmasim.mm import zone_stat
from cmasim.mm.alloc_pages import should_reclaim_retry
from cmasim.mm.page_alloc import cma_balance_first
from cmasim.mm.vmscan import balance_pgdat_end, balance_pgdat_start
from cmasim.mm.wakeup import pgdat_balanced, wakeup_kswapd
from cmasim.mm.watermark import zone_watermark_ok, zone_watermark_ok_safe

TICK = 1_000_000_000


def diff(m, z, cpu, item=mz.P_VM_DIFF_FREE):
    return m.pcp_field(z, cpu, item)


def shift_to_folded(m, z, cpu, pages, cma=False):
    """Pretend `cpu` took `pages` free pages whose accounting it has not folded yet: the exact
    count stays, the folded counter is `pages` higher and the CPU's diff `pages` lower (the
    state __mod_zone_page_state() leaves after an allocation below the threshold)."""
    items = [(mz.Z_VM_NR_FREE, mz.P_VM_DIFF_FREE)] + ([(mz.Z_VM_NR_FREE_CMA, mz.P_VM_DIFF_CMA)] if cma else [])
    for zitem, ditem in items:
        m.C[zone_addr(m, z, zitem)] += pages
        m.C[int(m.C[mz.H_PCP]) + (z * m.cfg.nr_cpus + cpu) * mz.PS + ditem] -= pages
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_updates_stay_per_cpu_until_the_threshold(policy):
    """__mod_zone_page_state(): a CPU's diff folds into the zone counter only when it leaves
    [-stat_threshold, stat_threshold], and then all of it."""
    m = make_machine(SMALL, policy)
    z = zone_index(m, "Normal")
    m.C[zone_addr(m, z, mz.Z_STAT_THRESHOLD)] = 40
    # The first unmovable request claims a whole movable block (-1024 then +1008: both fold at
    # once, as try_to_claim_block()'s two account_freepages() calls do); fold what is left.
    assert m.alloc(4, UNMOVABLE, cpu=0) >= 0
    zone_stat.fold_all_vm_stats(m.C)
    folded0 = m.zone_field(z, mz.Z_VM_NR_FREE)
    assert folded0 == m.zone_field(z, mz.Z_NR_FREE)
    # order 4 is not a per-CPU order: each allocation takes 16 pages off the buddy lists
    assert m.alloc(4, UNMOVABLE, cpu=0) >= 0
    assert m.alloc(4, UNMOVABLE, cpu=0) >= 0
    assert diff(m, z, 0) == -32 and m.zone_field(z, mz.Z_VM_NR_FREE) == folded0
    assert m.zone_field(z, mz.Z_NR_FREE) == folded0 - 32
    assert m.alloc(4, UNMOVABLE, cpu=1) >= 0  # another CPU has its own diff
    assert diff(m, z, 1) == -16 and diff(m, z, 0) == -32
    m.check()
    assert m.alloc(4, UNMOVABLE, cpu=0) >= 0  # -48: beyond 40, the whole diff folds
    assert diff(m, z, 0) == 0
    assert m.zone_field(z, mz.Z_VM_NR_FREE) == folded0 - 48
    assert m.zone_field(z, mz.Z_NR_FREE) == folded0 - 64
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_the_vmstat_worker_folds_every_cpu(policy):
    """refresh_cpu_vm_stats() from the once-a-second vmstat worker: every diff folds."""
    m = make_machine(SMALL, policy)
    z = zone_index(m, "Normal")
    m.C[zone_addr(m, z, mz.Z_STAT_THRESHOLD)] = 100
    assert m.alloc(4, UNMOVABLE, cpu=0) >= 0  # claims a block (see above)
    zone_stat.fold_all_vm_stats(m.C)
    for cpu in (0, 1):
        assert m.alloc(4, UNMOVABLE, cpu=cpu) >= 0
    assert diff(m, z, 0) == diff(m, z, 1) == -16
    assert m.zone_field(z, mz.Z_VM_NR_FREE) == m.zone_field(z, mz.Z_NR_FREE) + 32
    m.advance(TICK - 1)  # the worker is due at 1 s
    assert diff(m, z, 0) == -16
    m.advance(TICK)
    assert diff(m, z, 0) == diff(m, z, 1) == 0
    assert m.zone_field(z, mz.Z_VM_NR_FREE) == m.zone_field(z, mz.Z_NR_FREE)
    m.check()


def test_checker_sees_a_lost_delta():
    m = make_machine(SMALL)
    z = zone_index(m, "Normal")
    m.C[zone_addr(m, z, mz.Z_VM_NR_FREE)] += 1
    with pytest.raises(Exception, match="folded NR_FREE_PAGES"):
        m.check()


def _put_exact_on_the_low_mark(m, z):
    """Watermarks such that the exact free count of zone z fails LOW by one page."""
    free = m.zone_field(z, mz.Z_NR_FREE)
    for k, v in ((mz.Z_WMARK_MIN, free - 200), (mz.Z_WMARK_LOW, free), (mz.Z_WMARK_HIGH, free + 200)):
        m.C[zone_addr(m, z, k)] = v
    m.C[zone_addr(m, z, mz.Z_FLAGS)] |= mz.ZONE_BELOW_HIGH


@pytest.mark.parametrize("policy", POLICIES)
def test_watermark_check_reads_the_folded_count(policy):
    """get_page_from_freelist() -> zone_watermark_fast(zone_page_state(NR_FREE_PAGES)): a
    zone whose exact free count is below LOW still serves the request while the folded
    counter (CPU 1's unfolded allocations) says it is above; once folded it does not."""
    m = make_machine(SMALL, policy)
    z = zone_index(m, "Normal")
    dma32 = zone_index(m, "DMA32")
    _put_exact_on_the_low_mark(m, z)
    shift_to_folded(m, z, 1, 20)
    assert zone_watermark_ok(m.C, z, 0, m.zone_field(z, mz.Z_WMARK_LOW), mz.ZONE_NORMAL, 0)
    p = m.alloc(0, UNMOVABLE, cpu=0)
    assert m.zone_of(p) == z
    m.advance(TICK)  # the worker folds: the zone is below LOW, the request falls back
    _put_exact_on_the_low_mark(m, z)
    assert not zone_watermark_ok(m.C, z, 0, m.zone_field(z, mz.Z_WMARK_LOW), mz.ZONE_NORMAL, 0)
    p = m.alloc(0, UNMOVABLE, cpu=0)
    assert m.zone_of(p) == dma32
    m.check()


def test_cma_balancing_reads_the_folded_counts():
    """__rmqueue(): CMA first when zone_page_state(NR_FREE_CMA_PAGES) >
    zone_page_state(NR_FREE_PAGES) / 2 — the folded values, not the free lists."""
    m = make_machine([("DMA32", 16384), ("Normal", 8192)], "linux-6.18", cma_areas=[("cma", 20480, 4096, 0)])
    z = zone_index(m, "Normal")
    zb = int(m.C[mz.H_ZONE]) + z * mz.ZS
    assert m.zone_field(z, mz.Z_NR_FREE) == 8192 and m.zone_field(z, mz.Z_NR_FREE_CMA) == 4096
    assert not cma_balance_first(m.C, zb, mz.ALLOC_CMA)  # 4096 > 8192 / 2 is false
    shift_to_folded(m, z, 1, 10, cma=True)  # CPU 1 took 10 CMA pages, not folded yet
    assert m.zone_field(z, mz.Z_NR_FREE_CMA) == 4096  # exact: still not more than half
    assert cma_balance_first(m.C, zb, mz.ALLOC_CMA)  # folded: 4106 > 8202 / 2
    # and the allocation path follows it: a movable refill takes CMA pages first
    p = m.alloc(0, g.GFP_HIGHUSER_MOVABLE, cpu=0)
    assert 20480 <= p < 20480 + 4096


def _drift_machine(ncpu):
    m = make_machine(SMALL, "linux-6.18", nr_cpus=ncpu)
    z = zone_index(m, "Normal")
    free = m.zone_field(z, mz.Z_NR_FREE)
    # low - min (1) is less than the drift of ncpu * threshold: percpu_drift_mark is set
    for k, v in ((mz.Z_WMARK_MIN, free - 2), (mz.Z_WMARK_LOW, free - 1), (mz.Z_WMARK_HIGH, free)):
        m.C[zone_addr(m, z, k)] = v
    return m, z, int(m.C[mz.H_ZONE]) + z * mz.ZS


def test_percpu_drift_mark_and_thresholds_are_the_kernels():
    m, z, zb = _drift_machine(4)
    t = zone_stat.calculate_normal_threshold(m.C, zb)
    assert t == mm_init.calculate_normal_threshold(m.zone_field(z, mz.Z_MANAGED), 4)
    assert zone_stat.percpu_drift_mark(m.C, zb) == m.zone_field(z, mz.Z_WMARK_HIGH) + 4 * t
    assert zone_stat.calculate_pressure_threshold(m.C, zb) == 1  # max(1, (low - min) / cpus)
    # pybuild's zones: 2 CPUs, 3 GiB -> 24 (its zoneinfo), and no drift mark (low - min >> 48)
    big = make_machine([("DMA32", 772608), ("Normal", 786432)], "linux-6.18")
    nb = int(big.C[mz.H_ZONE]) + zone_index(big, "Normal") * mz.ZS
    assert zone_stat.calculate_normal_threshold(big.C, nb) == 24
    assert zone_stat.percpu_drift_mark(big.C, nb) == 0


def test_watermark_ok_safe_reads_the_snapshot_below_the_drift_mark():
    """zone_watermark_ok_safe() / pgdat_balanced(): below percpu_drift_mark the exact snapshot
    decides, where the folded counter would call the zone balanced."""
    m, z, zb = _drift_machine(4)
    shift_to_folded(m, z, 1, 3)  # folded = high + 3: passes HIGH, still below the drift mark
    high = m.zone_field(z, mz.Z_WMARK_HIGH)
    assert zone_watermark_ok(m.C, z, 0, high, mz.ZONE_NORMAL, 0)
    assert not zone_watermark_ok_safe(m.C, z, 0, high, mz.ZONE_NORMAL)
    dma32 = zone_index(m, "DMA32")  # DMA32 keeps its pages for itself: only Normal can balance
    m.C[zone_addr(m, dma32, mz.Z_LOWMEM + mz.ZONE_NORMAL)] = m.zone_field(dma32, mz.Z_NR_FREE)
    assert not pgdat_balanced(m.C, 0, mz.ZONE_NORMAL)
    m.advance(TICK)
    m.C[zone_addr(m, z, mz.Z_WMARK_HIGH)] = m.zone_field(z, mz.Z_NR_FREE) - 1
    assert zone_watermark_ok_safe(m.C, z, 0, m.zone_field(z, mz.Z_WMARK_HIGH), mz.ZONE_NORMAL)


def test_kswapd_lowers_the_threshold_while_awake():
    """kswapd_try_to_sleep(): the pressure threshold while kswapd is awake, on zones with a
    percpu_drift_mark only; the normal one once it sleeps again."""
    m, z, zb = _drift_machine(4)
    dma32 = zone_index(m, "DMA32")
    normal_t = m.zone_field(z, mz.Z_STAT_THRESHOLD)
    dma32_t = m.zone_field(dma32, mz.Z_STAT_THRESHOLD)
    assert zone_stat.percpu_drift_mark(m.C, int(m.C[mz.H_ZONE]) + dma32 * mz.ZS) == 0
    assert normal_t > 1
    m.C[zone_addr(m, dma32, mz.Z_LOWMEM + mz.ZONE_NORMAL)] = m.zone_field(dma32, mz.Z_NR_FREE)
    wakeup_kswapd(m.C, UNMOVABLE, 0, mz.ZONE_NORMAL)
    assert m.C[mz.H_KSWAPD_NEXT] != 0
    assert m.zone_field(z, mz.Z_STAT_THRESHOLD) == 1
    assert m.zone_field(dma32, mz.Z_STAT_THRESHOLD) == dma32_t  # no drift mark: unchanged
    balance_pgdat_start(m.C)  # the run takes the request ...
    assert m.zone_field(z, mz.Z_STAT_THRESHOLD) == 1
    balance_pgdat_end(m.C)  # ... and ends with nothing new asked: kswapd sleeps
    assert m.C[mz.H_KSWAPD_NEXT] == 0
    assert m.zone_field(z, mz.Z_STAT_THRESHOLD) == normal_t


def test_should_reclaim_retry_reads_the_snapshot():
    """should_reclaim_retry(): zone_page_state_snapshot(NR_FREE_PAGES) — folded plus every
    CPU's diff — decides, so unfolded allocations do not make a zone look retry-worthy."""
    m = make_machine(SMALL, "linux-6.18")
    z = zone_index(m, "Normal")
    dma32 = zone_index(m, "DMA32")
    m.C[zone_addr(m, dma32, mz.Z_LOWMEM + mz.ZONE_NORMAL)] = m.zone_field(dma32, mz.Z_NR_FREE)
    m.C[zone_addr(m, z, mz.Z_WMARK_MIN)] = m.zone_field(z, mz.Z_NR_FREE)  # exact fails MIN by one
    m.C[zone_addr(m, z, mz.Z_BOOST)] = 0
    shift_to_folded(m, z, 1, 20)  # the folded counter alone would pass
    assert zone_watermark_ok(m.C, z, 0, m.zone_field(z, mz.Z_WMARK_MIN), mz.ZONE_NORMAL, 0)
    retry, loops = should_reclaim_retry(m.S, m.C, 0, 0, mz.ZONE_NORMAL, z, 0, 0)
    assert not retry and loops == 1
    m.C[zone_addr(m, z, mz.Z_WMARK_MIN)] -= 1  # now the exact count passes
    retry, _ = should_reclaim_retry(m.S, m.C, 0, 0, mz.ZONE_NORMAL, z, 0, 0)
    assert retry
