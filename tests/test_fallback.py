"""Migratetype fallback (claim / steal), ALLOC_NOFRAGMENT and the CMA rules."""

from __future__ import annotations

import pytest
from helpers import (
    CMA,
    MOVABLE,
    POLICIES,
    RECLAIMABLE,
    SMALL,
    THP,
    UNMOVABLE,
    M,
    R,
    U,
    buddyinfo,
    free_list,
    in_cma,
    make_machine,
    nr_free,
    pageblock_type,
    pcp_pages,
    pinfo,
    zone_index,
)

from cmasim import gfp as g
from cmasim.mm import mmzone as mz
from cmasim.mm import zone_stat
from cmasim.mm.page_alloc import cma_balance_first

ALL_ORDERS = range(mz.NR_PAGE_ORDERS)


def counters(m):
    return m.vm(mz.VM_EXTFRAG), m.vm(mz.VM_CLAIMS), m.vm(mz.VM_STEALS)


# --- whole-block claims ---------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("gfp,mt", [(UNMOVABLE, U), (RECLAIMABLE, R)])
def test_first_non_movable_allocation_claims_a_free_max_order_block(policy, gfp, mt):
    m = make_machine(SMALL, policy)
    normal = zone_index(m, "Normal")
    p = m.alloc(0, gfp, 0)
    assert p == 4096
    # the order-10 block covers two pageblocks: both change owner, nothing else does
    assert m.pageblock_types(normal) == [mt, mt] + [M] * 14
    assert counters(m) == (1, 1, 0)
    # its remainder lives on the requester's lists
    assert buddyinfo(m, normal) == [1] * 10 + [7]
    assert all(free_list(m, normal, o, mt) == [4096 + (1 << o)] for o in range(10))
    assert all(m.free_list_count(normal, o, M) == 0 for o in range(10))
    assert m.zone_field(normal, mz.Z_BOOST) == 0  # claims at order >= pageblock_order do not boost
    # the next request of the same type is served from its own lists: no second fallback
    assert m.alloc(0, gfp, 1) == 4097
    assert counters(m) == (1, 1, 0)
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_claim_of_a_partly_free_pageblock_by_the_half_block_rule(policy):
    # One Normal zone (no NOFRAGMENT). Pageblock 0 keeps 511 free pages in blocks of order 0..8
    # around one allocated movable page; the other pageblocks are fully allocated.
    m = make_machine([("Normal", 2048)], policy)
    assert m.alloc(0, MOVABLE, 0) == 0
    assert [m.alloc(9, THP, 0) for _ in range(3)] == [512, 1024, 1536]
    m.drain_all()
    assert buddyinfo(m, 0) == [1] * 9 + [0, 0]
    p = m.alloc(0, UNMOVABLE, 1)  # CPU 1: a fresh pageset, refill of one block
    # largest fallback first (order 8); free 511 + alike 0 >= 256: the whole pageblock changes owner,
    # all its free pages move to UNMOVABLE lists and the request is served from there
    assert p == 1
    assert m.pageblock_types(0) == [U, M, M, M]
    assert counters(m) == (1, 1, 0)
    assert all(m.free_list_count(0, o, M) == 0 for o in ALL_ORDERS)
    assert [m.free_list_count(0, o, U) for o in ALL_ORDERS] == [0] + [1] * 8 + [0, 0]
    # a sub-pageblock fallback boosts the watermark by one pageblock
    assert m.zone_field(0, mz.Z_BOOST) == 512
    m.check()


# --- ALLOC_NOFRAGMENT ------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
def test_nofragment_prefers_a_whole_block_in_a_lower_zone(policy):
    m = make_machine([("DMA32", 4096), ("Normal", 1024)], policy)
    dma32, normal = zone_index(m, "DMA32"), zone_index(m, "Normal")
    assert m.alloc(0, MOVABLE, 0) == 4096
    assert m.alloc(9, THP, 0) == 4608
    m.drain_all()
    # Normal: 511 free MOVABLE pages in blocks below pageblock order, well above its watermarks
    assert m.zone_field(normal, mz.Z_NR_FREE) == 511
    assert 511 > m.zone_field(normal, mz.Z_WMARK_HIGH)
    p = m.alloc(0, UNMOVABLE, 0)
    # Normal may not be fragmented: the request claims a whole block in DMA32 instead
    assert 0 <= p < 4096
    assert m.pageblock_types(normal) == [M, M]
    assert m.pageblock_types(dma32)[:2] == [U, U]
    assert counters(m) == (1, 1, 0)
    assert m.vm(mz.VM_NOFRAG_RETRY) == 0
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_nofragment_retry_steals_when_no_zone_has_a_free_block(policy):
    # Normal 512 MiB, DMA32 one pageblock: lowmem_reserve[DMA32][Normal] = 131072/256 = 512, so
    # DMA32 never passes the watermark for a Normal-capable request.
    m = make_machine([("DMA32", 512), ("Normal", 131072)], policy, min_free_kbytes=128, watermark_scale_factor=1)
    dma32, normal = zone_index(m, "DMA32"), zone_index(m, "Normal")
    assert m.zone_field(dma32, mz.Z_LOWMEM + 2) == 512
    # Normal = [512, 131584): order-9 block at 512, 127 order-10 blocks, order-9 block at 131072
    for _ in range(127):
        assert m.alloc(10, MOVABLE, 0) >= 1024
    B = 512
    # in pageblock B: 384 movable pages allocated, 128 free (one order-7 block)
    assert m.alloc(8, MOVABLE, 0) == B
    assert m.alloc(7, MOVABLE, 0) == B + 256
    assert m.alloc(9, THP, 0) == 131072
    m.drain_all()
    assert m.zone_field(normal, mz.Z_NR_FREE) == 128 > m.zone_field(normal, mz.Z_WMARK_HIGH)
    refill0 = m.vm(mz.VM_PCP_REFILL_PAGES)
    p = m.alloc(0, UNMOVABLE, 0)
    assert p == B + 384
    refill = m.vm(mz.VM_PCP_REFILL_PAGES) - refill0
    assert refill > 1
    # The first pass (NOFRAGMENT) failed in both zones; the retry could not claim the block
    # (128 free + 0 alike < 256) and fell back to single-block steals: no owner change.
    assert m.vm(mz.VM_NOFRAG_RETRY) == 1
    extfrag, claims, steals = counters(m)
    assert claims == 0 and steals >= 1 and extfrag == steals
    assert pageblock_type(m, B) == M
    free_m = sum(m.free_list_count(normal, o, M) << o for o in ALL_ORDERS)
    free_u = sum(m.free_list_count(normal, o, U) << o for o in ALL_ORDERS)
    assert free_m + free_u == m.zone_field(normal, mz.Z_NR_FREE)
    if policy == "linux-6.18":
        # v6.15+: rmqueue_bulk() stays in STEAL mode, one steal per block taken, and the split
        # remainders stay on the fallback type's lists
        assert steals == refill
        assert free_u == 0 and free_m == 128 - steals
    else:
        # v6.1: one fallback moved all 128 free pages to UNMOVABLE lists; the rest of the refill
        # was served from there
        assert steals == 1
        assert free_m == 0 and free_u == 128 - refill
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_movable_request_that_cannot_claim_steals(policy):
    # One Normal zone; all free memory is 63 pages of UNMOVABLE blocks (orders 0..5) in pageblock 0.
    m = make_machine([("Normal", 2048)], policy, min_free_kbytes=128)
    assert m.alloc(0, UNMOVABLE, 0) == 0  # claims the first order-10 block
    assert [m.alloc(9, THP, 0) for _ in range(2)] == [1024, 1536]
    assert [m.alloc(o, UNMOVABLE, 0) for o in (9, 8, 7, 6)] == [512, 256, 128, 64]
    m.drain_all()
    assert buddyinfo(m, 0) == [1] * 6 + [0] * 5 and nr_free(m) == 63
    e0 = counters(m)
    p = m.alloc(0, MOVABLE, 1)  # CPU 1: a fresh pageset, refill of one block
    assert p == 1
    assert pinfo(m, p)[:3] == (0, mz.PG_ALLOC, M)
    e1 = counters(m)
    assert (e1[0] - e0[0], e1[1] - e0[1], e1[2] - e0[2]) == (1, 0, 1)
    assert pageblock_type(m, 0) == U
    if policy == "linux-6.18":
        # claim attempts at orders 5 and 4 failed (63 free + 0 movable < 256), order 3 is not
        # claimable for MOVABLE: __rmqueue_steal() takes the smallest block, nothing moves
        assert [m.free_list_count(0, o, U) for o in range(6)] == [0, 1, 1, 1, 1, 1]
        assert all(m.free_list_count(0, o, M) == 0 for o in ALL_ORDERS)
    else:
        # v6.1 moved every free page of the block to MOVABLE lists before taking one
        assert [m.free_list_count(0, o, M) for o in range(6)] == [0, 1, 1, 1, 1, 1]
        assert all(m.free_list_count(0, o, U) == 0 for o in ALL_ORDERS)
    m.check()


# --- CMA -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
def test_cma_first_only_when_free_cma_exceeds_half_of_free(policy):
    # CMA = exactly half of Normal: not more than half, so MOVABLE lists are used ...
    m = make_machine(SMALL, policy, cma_areas=[("cma", 4096, 4096, 0)])
    normal = zone_index(m, "Normal")
    p = m.alloc(0, MOVABLE, 0)
    assert p == 8192 and not in_cma(m, p)
    assert m.vm(mz.VM_CMA_ALLOCS) == 0
    # ... the rule reads the folded zone_page_state(NR_FREE_PAGES): the allocation's -1 still
    # sits in CPU 0's vmstat diff (stat_threshold 4 here), so CMA is still not more than half ...
    assert m.zone_field(normal, mz.Z_VM_NR_FREE) == 8192 and m.pcp_field(normal, 0, mz.P_VM_DIFF_FREE) == -1
    zb = int(m.C[mz.H_ZONE]) + normal * mz.ZS
    assert not cma_balance_first(m.C, zb, mz.ALLOC_CMA)
    # ... once the vmstat worker has folded the diffs, free CMA (4096) > NR_FREE_PAGES / 2:
    # CMA first
    zone_stat.fold_all_vm_stats(m.C)
    assert m.zone_field(normal, mz.Z_VM_NR_FREE) == 8191
    assert cma_balance_first(m.C, zb, mz.ALLOC_CMA)
    q = m.alloc(0, MOVABLE, 1)
    # CMA pageblocks are freed one by one at activation, each to the list head, so the
    # highest order-10 CMA block (7168) heads the list.
    assert q == 7168 and in_cma(m, q)
    assert m.vm(mz.VM_CMA_ALLOCS) == 1
    assert m.zone_field(normal, mz.Z_NR_FREE_CMA) == 4095
    assert counters(m) == (0, 0, 0)  # CMA use is not a fallback
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_movable_never_takes_cma_while_cma_is_at_most_half(policy):
    m = make_machine(SMALL, policy, cma_areas=[("cma", 4096, 2048, 0)])
    # stay below 4096 pages in use: free CMA (2048) then never exceeds half of NR_FREE_PAGES
    pages = [m.alloc(o, MOVABLE, i % 2) for i, o in enumerate([0, 0, 1, 2, 3] * 40 + [9] * 5)]
    assert all(p >= 0 and not in_cma(m, p) for p in pages)
    assert m.vm(mz.VM_CMA_ALLOCS) == 0
    assert m.zone_field(zone_index(m, "Normal"), mz.Z_NR_FREE_CMA) == 2048
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("gfp", [UNMOVABLE, RECLAIMABLE], ids=["unmovable", "reclaimable"])
def test_non_movable_requests_never_get_cma_pages(policy, gfp):
    # CMA is 3/4 of Normal; non-movable requests must still come from the rest.
    m = make_machine(SMALL, policy, cma_areas=[("cma", 4096, 6144, 0)])
    normal = zone_index(m, "Normal")
    pages = [m.alloc(o, gfp, i % 2) for i, o in enumerate([0, 1, 3, 0, 5] * 20 + [9] * 3)]
    assert all(p >= 0 and not in_cma(m, p) for p in pages)
    assert m.zone_field(normal, mz.Z_NR_FREE_CMA) == 6144
    assert all(m.pageblock_types(normal)[b] == CMA for b in range(12))
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("gfp", [UNMOVABLE, RECLAIMABLE], ids=["unmovable", "reclaimable"])
def test_watermark_ignores_free_cma_for_non_movable_requests(policy, gfp):
    # One Normal zone, half of it CMA. Non-movable requests run out while 2048 CMA pages are free.
    m = make_machine([("Normal", 4096)], policy, min_free_kbytes=128, cma_areas=[("cma", 0, 2048, 0)])
    wmin, whigh = m.zone_field(0, mz.Z_WMARK_MIN), m.zone_field(0, mz.Z_WMARK_HIGH)
    assert (wmin, whigh) == (32, 48)
    got = []
    for _ in range(4096):
        p = m.alloc(0, gfp, len(got) % 2)
        if p < 0:
            break
        got.append(p)
    else:
        pytest.fail("non-movable allocations never failed")
    assert all(not in_cma(m, p) for p in got)
    free, free_cma = m.zone_field(0, mz.Z_NR_FREE), m.zone_field(0, mz.Z_NR_FREE_CMA)
    assert free_cma == 2048
    # blocked by the MIN watermark while 32 non-CMA and 2048 CMA pages are still free: free CMA
    # does not count for this request. Reclaim is off, so direct reclaim makes no progress and
    # nothing is drained (__alloc_pages_direct_reclaim()): the per-CPU lists keep their pages.
    assert wmin == 32 and free - free_cma <= wmin
    assert len(got) + pcp_pages(m) + (free - free_cma) == 2048
    assert m.vm(mz.VM_ALLOC_FAIL) == 1
    # a movable request may count CMA pages and succeeds, from the CMA area
    q = m.alloc(0, MOVABLE, 0)
    assert q >= 0 and in_cma(m, q)
    m.check()


@pytest.mark.parametrize("policy", [
    "linux-6.18",
    "linux-6.1",
])
def test_unmovable_claim_never_takes_an_unaligned_cma_pageblock(policy):
    m = make_machine([("Normal", 2048)], policy, cma_areas=[("cma", 512, 512, 0)])
    pages = [m.alloc(0, UNMOVABLE, 0) for _ in range(8)]
    assert all(p >= 0 and not in_cma(m, p) for p in pages)
    assert m.pageblock_types(0)[1] == CMA
    assert m.zone_field(0, mz.Z_NR_FREE_CMA) == 512
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_dma32_request_never_leaves_its_zone(policy):
    m = make_machine(SMALL, policy)
    ps = [m.alloc(3, MOVABLE | g.BITS["__GFP_DMA32"], 0) for _ in range(50)]
    assert all(0 <= p < 4096 for p in ps)
    assert m.vm(mz.VM_PGALLOC + mz.ZONE_DMA32) == 50 * 8 and m.vm(mz.VM_PGALLOC + mz.ZONE_NORMAL) == 0
    m.check()
