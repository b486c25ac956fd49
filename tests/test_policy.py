"""Each policy's rule, on a hand-checkable machine: DMA32 64 MiB (per-CPU batch 3), a 4 MiB CMA
area at pfn 8192."""

import pytest

from cmasim import gfp as G
from cmasim.machine import Machine, MachineConfig
from cmasim.mm import mmzone as mz
from cmasim.mm.cma import EBUSY, cma_alloc, cma_alloc_steps
from cmasim.policy import UnknownPolicy, get_policy

CMA_BASE, CMA_COUNT = 8192, 1024
GFP_CMA = G.GFP_HIGHUSER_MOVABLE | G.BITS["__GFP_CMA"]
THP = G.GFP_HIGHUSER_MOVABLE | G.BITS["__GFP_COMP"]


def machine(policy, cma_count=CMA_COUNT, **kw):
    cfg = MachineConfig(zones=[("DMA32", 16384)], nr_cpus=1, cma_areas=[("reserved", CMA_BASE, cma_count, 0)],
                        reclaim=False, compaction=False, **kw)
    m = Machine(cfg, get_policy(policy))
    m.check()
    return m


def in_cma(p):
    return CMA_BASE <= p < CMA_BASE + CMA_COUNT


def pcp_list_len(m, cpu, pindex):
    return m.list_count(int(m.C[mz.H_LPZ]) * 0 + mz.NR_BUDDY_LISTS + cpu * mz.NR_PCP_LISTS_MAX + pindex)


def test_android_movable_without_gfp_cma_never_gets_cma():
    m = machine("android")
    got = [m.alloc(0, G.GFP_HIGHUSER_MOVABLE) for _ in range(16000)]
    m.check()
    assert all(p >= 0 for p in got[:14000])
    assert not any(in_cma(p) for p in got if p >= 0)
    assert m.vm(mz.VM_CMA_TO_NON_CMA) == 0
    # Under mainline the same requests borrow CMA once it is more than half of free memory.
    m2 = machine("linux-6.18")
    got2 = [m2.alloc(0, G.GFP_HIGHUSER_MOVABLE) for _ in range(16000)]
    assert any(in_cma(p) for p in got2 if p >= 0)


def test_android_gfp_cma_takes_cma_first_from_the_cma_pcp_list():
    m = machine("android")
    p = m.alloc(0, GFP_CMA)
    assert in_cma(p)
    cma_list = get_policy("android").pcp_pindex[0][mz.MIGRATE_CMA]
    assert cma_list == 3
    # The refill put a batch of CMA pages on the CMA list; the next one is a per-CPU hit.
    assert pcp_list_len(m, 0, cma_list) > 0
    hits = m.vm(mz.VM_PCP_ALLOC_HITS)
    assert in_cma(m.alloc(0, GFP_CMA)) and m.vm(mz.VM_PCP_ALLOC_HITS) == hits + 1
    # A freed CMA page goes back to the CMA list, not the MOVABLE one.
    before = pcp_list_len(m, 0, cma_list)
    m.free(p)
    assert pcp_list_len(m, 0, cma_list) == before + 1
    m.check()


def test_android_thp_cma_pages_shared_list_is_theft():
    m = machine("android")
    t = m.alloc(9, THP | G.BITS["__GFP_CMA"])
    assert in_cma(t)
    m.free(t)  # lands on the MOVABLE THP list (shared in this ACK layout)
    assert pcp_list_len(m, 0, 17) == 1
    thief = m.alloc(9, THP)  # no __GFP_CMA, served from the shared list
    assert in_cma(thief)
    assert m.vm(mz.VM_CMA_TO_NON_CMA) == 512
    m.check()


def test_rfc_thp_cma_list_keeps_cma_thps_apart():
    m = machine("android+rfc-thp-cma")
    t = m.alloc(9, THP | G.BITS["__GFP_CMA"])
    assert in_cma(t)
    m.free(t)
    assert pcp_list_len(m, 0, 18) == 1 and pcp_list_len(m, 0, 17) == 0
    plain = m.alloc(9, THP)
    assert plain >= 0 and not in_cma(plain)
    assert m.vm(mz.VM_CMA_TO_NON_CMA) == 0
    again = m.alloc(9, THP | G.BITS["__GFP_CMA"])
    assert again == t  # the CMA THP list hands the same block back
    m.check()


def test_android_no_cma_pcp_refill_puts_cma_on_shared_list():
    m = machine("android-no-cma-pcp")
    p = m.alloc(0, GFP_CMA)
    assert in_cma(p)
    # The refill filled the shared MOVABLE list with CMA pages: a plain movable request takes one.
    q = m.alloc(0, G.GFP_HIGHUSER_MOVABLE)
    assert in_cma(q) and m.vm(mz.VM_CMA_TO_NON_CMA) == 1
    m.check()


def fill_non_cma(m, leave):
    """Unmovable allocations until `leave` non-CMA pages are free; returns their pfns."""
    got = []
    while m.zone_field(0, mz.Z_NR_FREE) - m.zone_field(0, mz.Z_NR_FREE_CMA) > leave:
        p = m.alloc(0, G.GFP_KERNEL)
        assert p >= 0
        got.append(p)
    return got


def test_short_pin_migrates_cma():
    m = machine("linux-6.18+short-pin-migrates-cma")
    fill_non_cma(m, 1100)  # room above MIN for the movable faults and the migration target (no drain rescues it)
    p = next(p for p in (m.alloc(0, G.GFP_HIGHUSER_MOVABLE) for _ in range(100)) if in_cma(p))
    q = m.pin(p, duration_ns=10**9)
    assert q >= 0 and not in_cma(q) and m.vm(mz.VM_SHORT_PIN_MIGRATED) == 1
    _, ret, _ = cma_alloc(m, m.area("reserved"), CMA_COUNT, 10)
    assert ret == 0
    m.check()


def test_pin_pending_migration_redirects_pins_in_isolated_blocks():
    from cmasim.mm.page_isolation import set_migratetype_isolate

    m = machine("linux-6.18+pin-pending-migration")
    fill_non_cma(m, 850)
    p = next(p for p in (m.alloc(0, G.GFP_HIGHUSER_MOVABLE) for _ in range(100)) if in_cma(p))
    blk = p & ~511
    assert set_migratetype_isolate(m.S, m.C, 0, blk, True) == 0
    m.drain_all()  # as alloc_contig_range() does right after isolating
    q = m.pin(p, duration_ns=10**9)
    assert q >= 0 and q != p and (q & ~511) != blk
    assert m.vm(mz.VM_SHORT_PIN_MIGRATED) == 1
    # Mainline pins in place.
    m2 = machine("linux-6.18")
    fill_non_cma(m2, 850)
    p2 = next(p for p in (m2.alloc(0, G.GFP_HIGHUSER_MOVABLE) for _ in range(100)) if in_cma(p))
    assert set_migratetype_isolate(m2.S, m2.C, 0, p2 & ~511, True) == 0
    assert m2.pin(p2, duration_ns=10**9) == p2


def test_cma_retry_sleeps_and_succeeds_after_pins_end():
    for policy, expect in (("linux-6.18", EBUSY), ("linux-6.18+cma-retry", 0)):
        m = machine(policy)
        filler = fill_non_cma(m, 850)
        borrowed = [p for p in (m.alloc(0, G.GFP_HIGHUSER_MOVABLE) for _ in range(900)) if in_cma(p)]
        for p in filler:  # room for the migration targets
            m.free(p)
        for p in (borrowed[0], next(b for b in borrowed if b >= CMA_BASE + 512)):
            assert m.pin(p, duration_ns=150_000_000) >= 0  # 150 ms: the second retry round is clear
        pfn, ret, lat = cma_alloc(m, m.area("reserved"), 512, 9)
        m.check()
        assert ret == expect, policy
        if expect == 0:
            assert m.area("reserved").retry_sleeps == 2 and lat >= 200_000_000


@pytest.mark.parametrize("policy,expect_cma_first", [
    ("linux-6.18", False), ("linux-6.18+use-cma-first", True), ("linux-6.18+cma-balance-wmark-low", True),
    ("linux-6.18+cma-ratio", False)])
def test_cma_balancing_variants(policy, expect_cma_first):
    """512 CMA pages free and 900 non-CMA free pages, low watermark 1000 (min 800):
    mainline: 512 > 1412/2? no. use-cma-first: non-CMA free < low, yes. wmark-low:
    512 > (1412 - 1000)/2, yes. cma-ratio 3/4: 512 > 1059? no."""
    m = machine(policy, cma_count=512)
    assert (m.zone_field(0, mz.Z_WMARK_MIN), m.zone_field(0, mz.Z_WMARK_LOW)) == (800, 1000)
    fill_non_cma(m, 900)
    p = m.alloc(0, G.GFP_HIGHUSER_MOVABLE)
    assert (CMA_BASE <= p < CMA_BASE + 512) == expect_cma_first


def test_gcma_like_lends_cma_to_clean_page_cache_only():
    m = machine("linux-6.18+gcma-like")
    got = [m.alloc(0, G.GFP_HIGHUSER_MOVABLE) for _ in range(16000)]
    assert not any(in_cma(p) for p in got if p >= 0)
    m.drain_all()  # failed allocations without reclaim progress drain nothing (__alloc_pages_direct_reclaim())
    f = m.alloc(0, GFP_CMA, owner=mz.OW_FILE)
    assert in_cma(f)
    pfn, ret, _ = cma_alloc(m, m.area("reserved"), CMA_COUNT, 10)
    assert ret == 0 and m.vm(mz.VM_CONTIG_RECLAIMED) >= 1 and m.vm(mz.VM_PGMIGRATE_SUCCESS) == 0
    m.check()


def test_longterm_bug_policy_and_contradictions():
    assert get_policy("longterm-pin-on-cma-bug").longterm_pin_migrates is False
    with pytest.raises(UnknownPolicy, match="contradict"):
        get_policy("linux-6.18+use-cma-first+cma-balance-wmark-low")
    with pytest.raises(UnknownPolicy, match="already decides"):
        get_policy("android+gcma-like")
    with pytest.raises(UnknownPolicy, match="known|policies"):
        get_policy("linux-9.9")
    with pytest.raises(UnknownPolicy, match="modifier"):
        get_policy("linux-6.18+magic")
    p = get_policy("android+rfc-thp-cma+cma-retry")
    assert p.cma_retry == (5, 100) and p.nr_pcp_lists == 19


def test_cma_alloc_steps_is_a_generator_that_yields_sleeps():
    m = machine("linux-6.18+cma-retry")
    gen = cma_alloc_steps(m, m.area("reserved"), 16, 0)
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value[1] == 0
