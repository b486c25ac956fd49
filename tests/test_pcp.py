"""Per-CPU pagesets (cmasim.mm.pcp): refill sizes, LIFO use, drains, high tuning per version."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    CMA,
    MOVABLE,
    POLICIES,
    SMALL,
    THP,
    UNMOVABLE,
    M,
    U,
    buddyinfo,
    event,
    free_list,
    in_cma,
    make_machine,
    nr_free,
    pcp_list,
    pcp_pages,
    pinfo,
    run_events,
    zone_index,
)

from cmasim import gfp as g
from cmasim.engine_core import OP_ALLOC, OP_DRAIN_CPU
from cmasim.mm import mmzone as mz

GIB = [("Normal", 262144)]  # 1 GiB: zone_batchsize() = 63
BATCH = 63


def gib_machine(policy, **kw):
    m = make_machine(GIB, policy, **kw)
    assert m.zone_field(0, mz.Z_BATCH) == BATCH
    return m


def pindex(order, mt):
    return 3 * order + mt if order <= 3 else 12 + (mt == M)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("order,gfp,mt,blocks", [
    (0, MOVABLE, M, 63), (1, MOVABLE, M, 31), (2, UNMOVABLE, U, 15), (3, UNMOVABLE, U, 7), (9, THP, M, 2),
])
def test_refill_takes_batch_blocks_then_hits(policy, order, gfp, mt, blocks):
    m = gib_machine(policy)
    p = m.alloc(order, gfp, 0)
    assert p == 0
    assert m.vm(mz.VM_PCP_REFILLS) == 1
    assert m.vm(mz.VM_PCP_REFILL_PAGES) == blocks << order
    assert m.vm(mz.VM_PCP_ALLOC_HITS) == 0
    assert m.pcp_field(0, 0, mz.P_COUNT) == (blocks - 1) << order
    # rmqueue_bulk() appends at the tail: the rest of the refill waits in ascending pfn order
    rest = [k << order for k in range(1, blocks)]
    assert pcp_list(m, 0, 0, pindex(order, mt)) == rest
    assert all(pinfo(m, q)[:2] == (order, mz.PG_PCP) for q in rest)
    # the next allocation is a hit on the first remaining block, no new refill
    q = m.alloc(order, gfp, 0)
    assert q == 1 << order
    assert (m.vm(mz.VM_PCP_REFILLS), m.vm(mz.VM_PCP_ALLOC_HITS)) == (1, 1)
    # another CPU has its own (empty) list
    r = m.alloc(order, gfp, 1)
    assert r == blocks << order
    assert (m.vm(mz.VM_PCP_REFILLS), m.vm(mz.VM_PCP_ALLOC_HITS)) == (2, 1)
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_exhausting_the_list_triggers_the_next_refill(policy):
    m = gib_machine(policy)
    got = [m.alloc(3, UNMOVABLE, 0) for _ in range(8)]
    assert got == [8 * k for k in range(8)]
    assert m.vm(mz.VM_PCP_REFILLS) == 2 and m.vm(mz.VM_PCP_ALLOC_HITS) == 6


@pytest.mark.parametrize("policy,sizes", [("linux-6.18", [63, 126, 252]), ("linux-6.1", [63, 63, 63])])
def test_order0_refill_size_grows_only_on_618(policy, sizes):
    # v6.7+ nr_pcp_alloc(): batch << alloc_factor, alloc_factor++ per refill; v6.1: always batch.
    m = gib_machine(policy)
    seen = []
    for _ in range(sum(sizes)):
        before = m.vm(mz.VM_PCP_REFILL_PAGES)
        m.alloc(0, MOVABLE, 0)
        if m.vm(mz.VM_PCP_REFILL_PAGES) != before:
            seen.append(m.vm(mz.VM_PCP_REFILL_PAGES) - before)
    assert seen == sizes


@pytest.mark.parametrize("policy", POLICIES)
def test_free_goes_to_pcp_head_and_is_reused_first(policy):
    m = gib_machine(policy)
    a = m.alloc(0, MOVABLE, 0)
    b = m.alloc(0, MOVABLE, 0)
    count, free0, frees = m.pcp_field(0, 0, mz.P_COUNT), nr_free(m), m.vm(mz.VM_PCP_FREES)
    assert m.free(a, 0) == 0
    assert pcp_list(m, 0, 0, pindex(0, M))[0] == a
    assert pinfo(m, a)[1] == mz.PG_PCP
    assert m.pcp_field(0, 0, mz.P_COUNT) == count + 1
    assert nr_free(m) == free0  # still counted as in use by the buddy allocator
    assert m.vm(mz.VM_PCP_FREES) == frees + 1
    assert m.free(b, 0) == 0
    assert pcp_list(m, 0, 0, pindex(0, M))[:2] == [b, a]
    assert m.alloc(0, MOVABLE, 0) == b  # LIFO
    assert m.alloc(0, MOVABLE, 0) == a
    m.check()


@pytest.mark.parametrize("policy,drained", [("linux-6.18", 189), ("linux-6.1", 63)])
def test_free_drains_when_count_reaches_high(policy, drained):
    # percpu_pagelist_high_fraction fixes high = max(262144/1024/2, 4*batch) = 252 in both versions.
    m = gib_machine(policy, percpu_pagelist_high_fraction=1024)
    assert m.zone_field(0, mz.Z_HIGH_MIN) == m.zone_field(0, mz.Z_HIGH_MAX) == 252
    pages = [m.alloc(0, MOVABLE, 0) for _ in range(300)]
    m.drain_all()
    assert m.pcp_field(0, 0, mz.P_COUNT) == 0
    drains, drained0 = m.vm(mz.VM_PCP_DRAINS), m.vm(mz.VM_PCP_DRAIN_PAGES)
    for i, p in enumerate(pages):
        before_count, before_free = m.pcp_field(0, 0, mz.P_COUNT), nr_free(m)
        assert m.free(p, 0) == 0
        if m.vm(mz.VM_PCP_DRAINS) != drains:
            break
    else:
        pytest.fail("no drain")
    # the drain happens on the free that brings count to high, not earlier
    assert i == 251 and before_count == 251
    # v6.1: batch << free_factor = 63; v6.7+: clamp(free_count=252, batch, high - batch) = 189
    assert m.vm(mz.VM_PCP_DRAIN_PAGES) - drained0 == drained
    assert m.vm(mz.VM_PCP_DRAINS) == drains + 1
    assert m.pcp_field(0, 0, mz.P_COUNT) == 252 - drained
    assert nr_free(m) == before_free + drained
    # the coldest pages (the first ones freed) went back to the buddy lists
    assert all(pinfo(m, q)[1] != mz.PG_PCP for q in pages[:drained])
    assert all(pinfo(m, q)[1] == mz.PG_PCP for q in pages[drained:252])
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_pcp_high_boot_value_and_tuning(policy):
    m = gib_machine(policy)
    high_min, high_max = m.zone_field(0, mz.Z_HIGH_MIN), m.zone_field(0, mz.Z_HIGH_MAX)
    assert (high_min, high_max) == (3520, 16384)  # low 7040 / 2 CPUs; 262144 / 8 / 2
    if policy == "linux-6.1":
        assert m.pcp_field(0, 0, mz.P_HIGH) == high_min  # fixed at boot
    else:
        assert m.pcp_field(0, 0, mz.P_HIGH) == 0  # v6.7+: starts at 0 like the kernel's zoneinfo
    m.alloc(0, MOVABLE, 0)
    # a refill raises v6.7+ high by the batch taken (after clamping it to high_min)
    assert m.pcp_field(0, 0, mz.P_HIGH) == (high_min if policy == "linux-6.1" else high_min + BATCH)
    # a burst of frees: v6.7+ raises high to keep more pages per CPU, v6.1 stays fixed
    pages = [m.alloc(0, MOVABLE, 0) for _ in range(5000)]
    m.drain_all()
    for p in pages:
        m.free(p, 0)
    high = m.pcp_field(0, 0, mz.P_HIGH)
    if policy == "linux-6.1":
        assert high == high_min
        assert m.pcp_field(0, 0, mz.P_COUNT) < high_min
    else:
        assert high_min + BATCH < high <= high_max
        assert m.pcp_field(0, 0, mz.P_COUNT) > high_min  # more than v6.1 could ever keep
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_vmstat_worker_decays_high_on_618_only(policy):
    m = gib_machine(policy)
    high_min = m.zone_field(0, mz.Z_HIGH_MIN)
    pages = [m.alloc(0, MOVABLE, 0) for _ in range(3000)]
    m.drain_all()
    for p in pages:
        m.free(p, 0)
    high0, count0 = m.pcp_field(0, 0, mz.P_HIGH), m.pcp_field(0, 0, mz.P_COUNT)
    # one event after the first 1 s tick runs decay_pcp_high() on every CPU
    run_events(m, np.array([event(1_000_000_001, OP_DRAIN_CPU, cpu=1)], dtype=np.int64))
    high1, count1 = m.pcp_field(0, 0, mz.P_HIGH), m.pcp_field(0, 0, mz.P_COUNT)
    if policy == "linux-6.1":
        assert (high1, count1) == (high0, count0)
    else:
        assert high0 > high_min
        # high = max(count - (batch << 5), high - high / 8, high_min); the excess is freed
        assert high1 == max(count0 - (BATCH << 5), high0 - high0 // 8, high_min)
        assert count1 == min(count0, high1)
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_drain_all_empties_every_pcp(policy):
    m = make_machine(SMALL, policy)
    fresh = [buddyinfo(m, z) for z in range(2)]
    live = []
    for i in range(120):
        gfp = (MOVABLE, UNMOVABLE, MOVABLE | g.BITS["__GFP_DMA32"])[i % 3]
        live.append((m.alloc(i % 4, gfp, i % 2), i % 2))
    assert all(p >= 0 for p, _ in live)
    for p, cpu in live:
        assert m.free(p, 1 - cpu) == 0
    assert pcp_pages(m) > 0
    assert all(m.pcp_field(z, c, mz.P_COUNT) > 0 for z in range(2) for c in range(2))
    drain_calls = m.vm(mz.VM_DRAIN_ALL)
    m.drain_all()
    assert pcp_pages(m) == 0
    assert m.vm(mz.VM_DRAIN_ALL) == drain_calls + 1
    assert nr_free(m) == 12288
    assert [buddyinfo(m, z) for z in range(2)] == fresh
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_drain_one_cpu_through_run_events(policy):
    m = make_machine(SMALL, policy)
    for cpu in (0, 1):
        ps = [m.alloc(0, MOVABLE, cpu) for _ in range(20)]
        for p in ps:
            m.free(p, cpu)
    normal = zone_index(m, "Normal")
    c0 = m.pcp_field(normal, 0, mz.P_COUNT)
    assert c0 > 0 and m.pcp_field(normal, 1, mz.P_COUNT) > 0
    free0 = nr_free(m)
    c1 = m.pcp_field(normal, 1, mz.P_COUNT)
    assert run_events(m, np.array([event(10, OP_DRAIN_CPU, cpu=1)], dtype=np.int64)) == 1
    assert m.pcp_field(normal, 1, mz.P_COUNT) == 0
    assert m.pcp_field(normal, 0, mz.P_COUNT) == c0
    assert nr_free(m) == free0 + c1
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_run_events_alloc_uses_the_event_cpu(policy):
    m = make_machine(SMALL, policy)
    normal = zone_index(m, "Normal")
    ev = np.array([event(5, OP_ALLOC, cpu=1, order=3, gfp=UNMOVABLE, handle=0)], dtype=np.int64)
    assert run_events(m, ev) == 1
    assert m.vm(mz.VM_ALLOC_EVENTS) == 1 and m.vm(mz.VM_PCP_REFILLS) == 1
    assert m.pcp_field(normal, 0, mz.P_COUNT) == 0  # nothing touched CPU 0's list
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_cma_pages_use_the_movable_pcp_list(policy):
    # CMA is 3/4 of Normal: the balancing rule hands movable requests CMA pages first.
    m = make_machine(SMALL, policy, cma_areas=[("cma", 4096, 6144, 0)])
    normal = zone_index(m, "Normal")
    p = m.alloc(0, MOVABLE, 0)
    assert in_cma(m, p)
    assert m.zone_field(normal, mz.Z_NR_FREE_CMA) == 6143
    assert m.free(p, 0) == 0
    assert pcp_list(m, normal, 0, pindex(0, M)) == [p]  # HIGHATOMIC/CMA blocks use the MOVABLE list
    assert m.zone_field(normal, mz.Z_NR_FREE_CMA) == 6143
    m.drain_all()
    assert m.zone_field(normal, mz.Z_NR_FREE_CMA) == 6144
    assert sorted(free_list(m, normal, 10, CMA))[0] == 4096 and m.free_list_count(normal, 10, CMA) == 6
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_drain_page_counter_counts_pages_actually_drained(policy):
    m = make_machine(SMALL, policy)
    normal = zone_index(m, "Normal")
    p = m.alloc(9, THP, 0)
    free0 = m.zone_field(normal, mz.Z_NR_FREE)
    assert m.free(p, 0) == 0  # the THP block alone exceeds pcp->high: it is drained at once
    assert m.pcp_field(normal, 0, mz.P_COUNT) == 0 and m.vm(mz.VM_PCP_DRAINS) == 1
    assert m.zone_field(normal, mz.Z_NR_FREE) - free0 == 512
    assert m.vm(mz.VM_PCP_DRAIN_PAGES) == 512


def test_zone_below_high_is_cleared_when_frees_bring_the_zone_back():
    # v6.7+: get_page_from_freelist() sets ZONE_BELOW_HIGH; free_frozen_page_commit() clears it after a
    # drain once the zone passes its high watermark again, and pcp->high resumes auto-tuning.
    m = make_machine([("Normal", 4096)], "linux-6.18")
    whigh = m.zone_field(0, mz.Z_WMARK_HIGH)
    pages = []
    while not m.zone_field(0, mz.Z_FLAGS) & mz.ZONE_BELOW_HIGH:
        pages.append(m.alloc(0, MOVABLE, 0))
        assert pages[-1] >= 0
    assert m.zone_field(0, mz.Z_NR_FREE) <= whigh
    drains = m.vm(mz.VM_PCP_DRAINS)
    for p in pages:
        assert m.free(p, 0) == 0
    assert m.vm(mz.VM_PCP_DRAINS) > drains  # frees drained the per-CPU list into the buddy lists ...
    assert m.zone_field(0, mz.Z_NR_FREE) > 10 * whigh  # ... and the zone is far above its high mark
    # a refill on a fresh CPU raises its high again (nr_pcp_alloc() does so only without BELOW_HIGH)
    m.alloc(0, MOVABLE, 1)
    assert m.pcp_field(0, 1, mz.P_HIGH) > m.zone_field(0, mz.Z_HIGH_MIN)
    assert not m.zone_field(0, mz.Z_FLAGS) & mz.ZONE_BELOW_HIGH
