"""Issue 14: each Android __GFP_CMA record shows the behaviour that defines its era, on a small
hand-checkable machine (DMA32 64 MiB, one CPU, per-CPU batch 3, a 4 MiB CMA area at pfn 8192)
and on a small seeded churn workload. The per-CPU hit definition and the per-class counters are
tested here too."""

import pytest

from cmasim import gfp as G
from cmasim.machine import Machine, MachineConfig
from cmasim.mm import mmzone as mz
from cmasim.policy import POLICIES, get_policy
from cmasim.run import pcp_metrics, run_scenario
from cmasim.mm.vmstat import event_counters
from cmasim.scenario import load_scenario

CMA_BASE, CMA_COUNT = 8192, 1024
GFP_CMA = G.GFP_HIGHUSER_MOVABLE | G.BITS["__GFP_CMA"]
MOVABLE = G.GFP_HIGHUSER_MOVABLE
THP = G.GFP_HIGHUSER_MOVABLE | G.BITS["__GFP_COMP"]
CLS_CMA, CLS_MOV, CLS_OTHER = 0, 1, 2


def machine(policy, cma_count=CMA_COUNT):
    cfg = MachineConfig(zones=[("DMA32", 16384)], nr_cpus=1, cma_areas=[("reserved", CMA_BASE, cma_count, 0)],
                        reclaim=False, compaction=False)
    m = Machine(cfg, get_policy(policy))
    m.check()
    return m


def in_cma(p):
    return CMA_BASE <= p < CMA_BASE + CMA_COUNT


def pcp_list_len(m, cpu, pindex):
    return m.list_count(mz.NR_BUDDY_LISTS + cpu * mz.NR_PCP_LISTS_MAX + pindex)


def served(m, cls):
    return m.vm(mz.VM_RQ_SERVED + cls)


def locks(m, cls):
    return m.vm(mz.VM_RQ_ZONE_LOCK + cls)


def hits(m, cls):
    return m.vm(mz.VM_RQ_PCP_HITS + cls)


# --- android-2020: the posted series --------------------------------------------------------------
def test_android_2020_movable_without_gfp_cma_takes_the_zone_lock_every_time_and_never_gets_cma():
    m = machine("android-2020")
    for _ in range(200):
        assert in_cma(m.alloc(0, GFP_CMA))  # fills the CPU's MOVABLE list with CMA pages (refills)
    plain = [m.alloc(0, MOVABLE) for _ in range(300)]
    assert all(p >= 0 and not in_cma(p) for p in plain)
    assert m.vm(mz.VM_CMA_TO_NON_CMA) == 0
    # D1: every one of them went to the buddy under the zone lock, none was a per-CPU hit.
    assert served(m, CLS_MOV) == 300 and locks(m, CLS_MOV) == 300 and hits(m, CLS_MOV) == 0
    m.check()


def test_android_2020_gfp_cma_refill_is_cma_only_and_an_empty_cma_fails_the_zone():
    m = machine("android-2020")
    got = [m.alloc(0, GFP_CMA) for _ in range(CMA_COUNT)]
    # D2: the __GFP_CMA requests got every CMA page and nothing else, all on the fast path.
    assert all(in_cma(p) for p in got) and m.vm(mz.VM_SLOWPATH) == 0
    assert m.zone_field(0, mz.Z_NR_FREE) - m.zone_field(0, mz.Z_NR_FREE_CMA) > 10000
    # D3: with the list and CMA both empty the next one fails every ALLOC_CMA attempt although
    # thousands of ordinary MOVABLE pages are free: it goes through all reclaim rounds
    # (should_reclaim_retry: 16 without progress, reclaim is off here) and only
    # __alloc_pages_may_oom()'s last try, whose alloc_flags carry no ALLOC_CMA, gets an ordinary page.
    p = m.alloc(0, GFP_CMA)
    assert p >= 0 and not in_cma(p) and m.vm(mz.VM_SLOWPATH) == 1 and m.vm(mz.VM_ALLOC_FAIL) == 0
    assert sum(m.vm(mz.VM_ALLOCSTALL + z) for z in range(4)) == 17
    # A freed ordinary page lands on the MOVABLE list, and __GFP_CMA takes it from there.
    q = m.alloc(0, G.GFP_KERNEL)
    r = m.alloc(0, MOVABLE)
    m.free(r)
    assert m.alloc(0, GFP_CMA) == r
    assert q >= 0
    m.check()


def test_android_2020_lists_are_order_0_only_and_thp_is_not_tagged():
    p = get_policy("android-2020")
    assert all(x == -1 for order in range(1, mz.NR_PAGE_ORDERS) for x in p.pcp_pindex[order])
    assert p.pcp_pindex[0][mz.MIGRATE_CMA] == p.pcp_pindex[0][mz.MIGRATE_MOVABLE] == 1
    assert p.gfp_cma_owners == ("anon0",)
    m = machine("android-2020")
    t = m.alloc(3, MOVABLE)
    assert t >= 0 and served(m, CLS_MOV) == 1 and locks(m, CLS_MOV) == 1  # order 3: buddy
    m.free(t)
    assert m.vm(mz.VM_PCP_FREES) == 0  # and freed straight back to the buddy


# --- android-5.4: the interim ACK commit, no skip -----------------------------------------------------
def test_android_5_4_page_cache_shares_the_movable_list_and_is_polluted():
    m = machine("android-5.4")
    assert in_cma(m.alloc(0, GFP_CMA))  # refill: CMA pages on the MOVABLE list
    q = m.alloc(0, MOVABLE)  # no skip in 5.4: the plain request pops a CMA page
    assert in_cma(q) and m.vm(mz.VM_CMA_TO_NON_CMA) == 1
    assert hits(m, CLS_MOV) == 1 and locks(m, CLS_MOV) == 0
    m.check()


# --- android-5.10: the CMA list, order 0 only ---------------------------------------------------
def test_android_5_10_cma_list_at_order_0_only_and_buddy_after_a_miss():
    p = get_policy("android-5.10")
    assert p.pcp_pindex[0][mz.MIGRATE_CMA] == 3 and p.nr_pcp_lists == 4
    assert all(x == -1 for x in p.pcp_pindex[1]) and all(x == -1 for x in p.pcp_pindex[mz.PAGEBLOCK_ORDER])
    m = machine("android-5.10")
    assert in_cma(m.alloc(0, GFP_CMA))
    assert pcp_list_len(m, 0, 3) > 0
    q = m.alloc(0, MOVABLE)
    assert q >= 0 and not in_cma(q) and m.vm(mz.VM_CMA_TO_NON_CMA) == 0
    # Exhaust CMA: __GFP_CMA falls back to ordinary pages (no failure, unlike 2020).
    got = [m.alloc(0, GFP_CMA) for _ in range(CMA_COUNT + 50)]
    assert all(x >= 0 for x in got) and sum(not in_cma(x) for x in got) >= 49
    assert m.vm(mz.VM_ALLOC_FAIL) == 0
    m.check()


# --- android-6.6: one THP list for every type -----------------------------------------------------
def test_android_6_6_unmovable_thp_request_can_receive_a_cma_thp():
    p = get_policy("android-6.6")
    thp = p.pcp_pindex[mz.PAGEBLOCK_ORDER]
    assert thp[mz.MIGRATE_UNMOVABLE] == thp[mz.MIGRATE_MOVABLE] == thp[mz.MIGRATE_CMA] == 16
    m = machine("android-6.6")
    t = m.alloc(9, THP | G.BITS["__GFP_CMA"])
    assert in_cma(t)
    m.free(t)
    assert pcp_list_len(m, 0, 16) == 1
    u = m.alloc(9, G.GFP_KERNEL | G.BITS["__GFP_COMP"])
    assert u == t and m.vm(mz.VM_CMA_TO_NON_CMA) == 512
    assert m.vm(mz.VM_RQ_CMA_TO_NON_CMA + CLS_OTHER) == 512 and m.vm(mz.VM_RQ_CMA_TO_NON_CMA + CLS_MOV) == 0
    # 6.18 keeps non-movable THPs apart: the same sequence hands the unmovable request no CMA.
    m2 = machine("android-6.18")
    t2 = m2.alloc(9, THP | G.BITS["__GFP_CMA"])
    m2.free(t2)
    u2 = m2.alloc(9, G.GFP_KERNEL | G.BITS["__GFP_COMP"])
    assert u2 >= 0 and not in_cma(u2) and m2.vm(mz.VM_CMA_TO_NON_CMA) == 0


def test_android_6_6_rfc_keeps_cma_thps_on_their_own_list():
    m = machine("android-6.6+rfc-thp-cma")
    t = m.alloc(9, THP | G.BITS["__GFP_CMA"])
    m.free(t)
    assert pcp_list_len(m, 0, 17) == 1 and pcp_list_len(m, 0, 16) == 0
    u = m.alloc(9, G.GFP_KERNEL | G.BITS["__GFP_COMP"])
    assert u >= 0 and not in_cma(u) and m.vm(mz.VM_CMA_TO_NON_CMA) == 0
    assert m.alloc(9, THP | G.BITS["__GFP_CMA"]) == t


def test_android_6_6_no_cma_pcp_shares_the_movable_list():
    m = machine("android-6.6-no-cma-pcp")
    assert get_policy("android-6.6-no-cma-pcp").version == 601
    assert in_cma(m.alloc(0, GFP_CMA))
    assert in_cma(m.alloc(0, MOVABLE)) and m.vm(mz.VM_CMA_TO_NON_CMA) == 1


# --- android-6.18 and the alias ---------------------------------------------------------------------
def test_android_is_an_alias_of_the_newest_era():
    a, b = get_policy("android"), get_policy("android-6.18")
    assert a.summary.startswith("alias of android-6.18")
    fields = [f for f in a.__dataclass_fields__ if f not in ("name", "summary")]
    assert all(getattr(a, f) == getattr(b, f) for f in fields)
    assert get_policy("android+rfc-thp-cma").pcp_pindex == get_policy("android-6.18+rfc-thp-cma").pcp_pindex
    for name in ("android-2020", "android-5.4", "android-5.10", "android-6.6", "android-6.18"):
        assert POLICIES[name].kernel  # every era names the code it follows


# --- hit-rate definition ------------------------------------------------------------------------
def test_a_page_served_after_a_failed_cma_refill_is_not_a_per_cpu_hit():
    """Old definition: the MOVABLE-list pop after the empty CMA list's failed refill counted as a
    hit. Now a hit means the rmqueue() call took no zone lock."""
    m = machine("android-6.18")
    filler = [m.alloc(0, GFP_CMA) for _ in range(CMA_COUNT)]  # CMA used up
    assert all(in_cma(p) for p in filler)
    r = m.alloc(0, MOVABLE)
    m.free(r)  # one ordinary page on the MOVABLE list
    h, lk = m.vm(mz.VM_PCP_ALLOC_HITS), m.vm(mz.VM_ZONE_LOCK)
    assert m.alloc(0, GFP_CMA) == r  # CMA-list refill fails (zone lock), then the MOVABLE list
    assert m.vm(mz.VM_ZONE_LOCK) == lk + 1
    assert m.vm(mz.VM_PCP_ALLOC_HITS) == h
    # A pop from a non-empty list is a hit.
    s = m.alloc(0, MOVABLE)
    m.free(s)
    h = m.vm(mz.VM_PCP_ALLOC_HITS)
    assert m.alloc(0, MOVABLE) == s and m.vm(mz.VM_PCP_ALLOC_HITS) == h + 1
    m.check()


def test_consumed_counter_counts_ordinary_pages_given_to_gfp_cma_while_cma_is_free():
    m = machine("android-2020")
    r = m.alloc(0, G.GFP_KERNEL)
    mv = m.alloc(0, MOVABLE)
    m.free(mv)  # an ordinary page at the head of the MOVABLE list
    assert m.alloc(0, GFP_CMA) == mv  # popped although 1024 CMA pages are free
    assert m.vm(mz.VM_NON_CMA_TO_CMA_ALLOC) == 1
    # Under 5.10 the CMA list serves __GFP_CMA first: nothing is "consumed".
    m2 = machine("android-5.10")
    mv2 = m2.alloc(0, MOVABLE)
    m2.free(mv2)
    assert in_cma(m2.alloc(0, GFP_CMA)) and m2.vm(mz.VM_NON_CMA_TO_CMA_ALLOC) == 0
    assert r >= 0


# --- a small seeded workload per era ---------------------------------------------------------------
@pytest.fixture(scope="module")
def small_runs():
    sc = load_scenario("android-pcp-starvation", sets=["workload.churn.events=60000"])
    return {p: run_scenario(sc, get_policy(p), seed=3) for p in
            ("android-2020", "android-5.4", "android-5.10", "android-6.18", "linux-6.18")}


def test_small_workload_defining_behaviour_per_era(small_runs):
    r = small_runs
    c = {p: r[p]["counters"] for p in r}
    by = {p: r[p]["pcp"]["by_class"] for p in r}
    # 2020: no pollution; every movable request without __GFP_CMA took the zone lock, none hit.
    assert c["android-2020"]["cma_to_non_cma_alloc"] == 0
    mv = by["android-2020"]["movable_no_cma"]
    assert mv["served"] > 1000 and mv["pcp_hits"] == 0 and mv["zone_lock"] >= mv["served"]
    # 5.4 (no skip): page cache shares the list and is polluted.
    assert c["android-5.4"]["cma_to_non_cma_alloc"] > 0
    assert by["android-5.4"]["movable_no_cma"]["cma_pages"] == c["android-5.4"]["cma_to_non_cma_alloc"]
    # 5.10 and 6.18: the CMA list, no pollution.
    assert c["android-5.10"]["cma_to_non_cma_alloc"] == 0 and c["android-6.18"]["cma_to_non_cma_alloc"] == 0
    # Mainline: no __GFP_CMA contract to violate.
    assert c["linux-6.18"]["cma_to_non_cma_alloc"] == 0
    for p in r:
        m = r[p]["pcp"]
        assert m["hit_rate"] <= 1 and sum(v["pcp_hits"] for v in m["by_class"].values()) == m["alloc_hits"]


def test_pcp_metrics_by_class_rates():
    ev = {k: 0 for k in ("alloc_calls", "pcp_alloc_hits", "pcp_refills", "pcp_drains", "pcp_drain_pages",
                         "buddy_allocs")}
    ev.update({f"rmqueue_{w}_{c}": 0 for w in ("served", "pcp_hits", "zone_lock", "cma_pages")
               for c in ("cma", "movable_no_cma", "other")})
    ev.update(alloc_calls=10, pcp_alloc_hits=6, rmqueue_served_cma=4, rmqueue_pcp_hits_cma=3,
              rmqueue_zone_lock_cma=2)
    m = pcp_metrics(ev)
    assert m["hit_rate"] == 0.6
    assert m["by_class"]["cma"] == {"served": 4, "pcp_hits": 3, "zone_lock": 2, "cma_pages": 0, "hit_rate": 0.75,
                                    "zone_lock_per_1000": 500.0}
    assert m["by_class"]["other"]["hit_rate"] == 0.0


def test_event_counters_export_the_new_counters():
    m = machine("android-2020")
    m.alloc(0, GFP_CMA)
    ev = event_counters(m)
    assert ev["rmqueue_served_cma"] == 1 and ev["rmqueue_zone_lock_cma"] == 1 and ev["non_cma_to_cma_alloc"] == 0
