"""Buddy rules (cmasim.mm.page_alloc, cmasim.mm.freelist) on hand-checkable layouts."""

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
    free_list,
    make_machine,
    nr_free,
    pageblock_type,
    pinfo,
    zone_index,
)

from cmasim import gfp as g
from cmasim.mm import mmzone as mz

FRESH_NORMAL = [0] * 10 + [8]


# --- boot state ---------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
def test_fresh_machine_is_max_order_blocks(policy):
    # DMA32 [0, 4608): 4 order-10 blocks + one order-9 tail; Normal [4608, 13312): its first
    # pageblock is not 1024-aligned (order 9), then 8 order-10 blocks. The two order-9 blocks
    # at 4096 and 4608 are buddies but sit in different zones: they must not merge.
    m = make_machine([("DMA32", 4608), ("Normal", 8704)], policy)
    m.check()
    dma32, normal = zone_index(m, "DMA32"), zone_index(m, "Normal")
    assert buddyinfo(m, dma32) == [0] * 9 + [1, 4]
    assert buddyinfo(m, normal) == [0] * 9 + [1, 8]
    assert free_list(m, dma32, 10, M) == [0, 1024, 2048, 3072]  # boot frees go to the tail: ascending
    assert free_list(m, dma32, 9, M) == [4096]
    assert free_list(m, normal, 9, M) == [4608]
    assert free_list(m, normal, 10, M) == list(range(5120, 13312, 1024))
    assert m.zone_field(dma32, mz.Z_NR_FREE) == 4608 and m.zone_field(normal, mz.Z_NR_FREE) == 8704
    assert m.zone_field(normal, mz.Z_NR_FREE_BLOCKS) == 8704
    assert set(m.pageblock_types(dma32)) == {M} and set(m.pageblock_types(normal)) == {M}
    for z in (dma32, normal):
        for mt in (U, mz.MIGRATE_RECLAIMABLE, mz.MIGRATE_HIGHATOMIC, CMA):
            assert all(m.free_list_count(z, o, mt) == 0 for o in range(11))
    assert m.vm(mz.VM_MERGES) == 0 and m.vm(mz.VM_PGFREE) == 0  # boot frees are not workload statistics


# --- split and merge ------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
def test_order0_alloc_splits_then_free_merges_back(policy):
    m = make_machine(SMALL, policy)
    normal, dma32 = zone_index(m, "Normal"), zone_index(m, "DMA32")
    p = m.alloc(0, MOVABLE, 0)
    assert p == 4096  # head of Normal's order-10 MOVABLE list
    # expand(): the upper halves 4096 + 2^k go to the order-k lists, k = 0..9
    assert buddyinfo(m, normal) == [1] * 10 + [7]
    for k in range(10):
        assert free_list(m, normal, k, M) == [4096 + (1 << k)]
    assert buddyinfo(m, dma32) == [0] * 10 + [4]
    assert m.vm(mz.VM_SPLITS) == 10
    assert pinfo(m, p)[:2] == (0, mz.PG_ALLOC)
    assert m.pcp_field(normal, 0, mz.P_COUNT) == 0  # a refill of one block (batch 1 on this zone size)
    m.check()

    assert m.free(p, 0) == 0
    # order-0 frees go to the per-CPU list: the buddy lists do not change yet
    assert m.pcp_field(normal, 0, mz.P_COUNT) == 1
    assert buddyinfo(m, normal) == [1] * 10 + [7]
    assert m.zone_field(normal, mz.Z_NR_FREE) == 8191
    m.check()

    m.drain_all()
    assert m.pcp_field(normal, 0, mz.P_COUNT) == 0
    assert buddyinfo(m, normal) == FRESH_NORMAL
    assert free_list(m, normal, 10, M)[0] == 4096  # orders 9 and 10 are linked at the head
    assert m.zone_field(normal, mz.Z_NR_FREE) == 8192
    assert m.vm(mz.VM_MERGES) == 10
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_high_order_free_bypasses_pcp_and_merges_at_once(policy):
    m = make_machine(SMALL, policy)
    normal = zone_index(m, "Normal")
    p = m.alloc(5, MOVABLE, 1)
    assert p == 4096
    assert buddyinfo(m, normal) == [0] * 5 + [1] * 5 + [7]
    assert m.free(p, 1) == 0
    assert m.pcp_field(normal, 1, mz.P_COUNT) == 0 and m.vm(mz.VM_PCP_FREES) == 0
    assert buddyinfo(m, normal) == FRESH_NORMAL
    assert m.vm(mz.VM_PGFREE) == 32
    m.check()


# Normal zone with zero watermarks: a large DMA32 zone takes all of min_free_kbytes and
# watermark_scale_factor 1 leaves no gap, so the last pageblock of Normal can be allocated.
def zero_wmark_machine(policy):
    m = make_machine([("DMA32", 65536), ("Normal", 2048)], policy, min_free_kbytes=128, watermark_scale_factor=1)
    normal = zone_index(m, "Normal")
    assert [m.zone_field(normal, f) for f in (mz.Z_WMARK_MIN, mz.Z_WMARK_LOW, mz.Z_WMARK_HIGH)] == [0, 0, 0]
    return m, normal


@pytest.mark.parametrize("policy", POLICIES)
def test_merge_across_pageblocks_of_different_mergeable_types(policy):
    m, normal = zero_wmark_machine(policy)
    P = 65536
    assert m.alloc(10, MOVABLE, 0) == P
    # UNMOVABLE order 9 claims the other order-10 block: both its pageblocks become UNMOVABLE
    b = m.alloc(9, UNMOVABLE, 0)
    assert b == P + 1024
    assert m.pageblock_types(normal) == [M, M, U, U]
    # MOVABLE order 9 now has only the UNMOVABLE order-9 buddy left and claims it
    c = m.alloc(9, THP, 0)
    assert c == P + 1536
    assert m.pageblock_types(normal) == [M, M, U, M]
    assert m.free(b, 0) == 0
    m.drain_all()
    assert free_list(m, normal, 9, U) == [b]  # its buddy is still allocated
    assert m.free(c, 0) == 0
    m.drain_all()
    # order 9 -> 10 across an UNMOVABLE and a MOVABLE pageblock: allowed, both are mergeable
    assert free_list(m, normal, 10, M) == [P + 1024]
    assert buddyinfo(m, normal) == [0] * 10 + [1]
    if policy == "linux-6.18":
        assert m.pageblock_types(normal) == [M, M, M, M]  # v6.10+: the buddy's block is retyped
    else:
        assert m.pageblock_types(normal) == [M, M, U, M]  # v6.1: no rewrite on merge
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_cma_pageblocks_merge_with_each_other(policy):
    # A 1024-aligned CMA area of two pageblocks is one order-10 block on the CMA list.
    m = make_machine(SMALL, policy, cma_areas=[("cma", 4096, 1024, 0)])
    normal = zone_index(m, "Normal")
    assert free_list(m, normal, 10, CMA) == [4096]
    assert m.zone_field(normal, mz.Z_NR_FREE_CMA) == 1024
    assert m.pageblock_types(normal)[:3] == [CMA, CMA, M]
    m.check()


@pytest.mark.parametrize("policy", [
    "linux-6.18",
    "linux-6.1",
])
def test_cma_pageblock_never_merges_with_movable_beyond_order9(policy):
    # CMA area = the second pageblock of Normal's first order-10 block.
    m = make_machine(SMALL, policy, cma_areas=[("cma", 4096 + 512, 512, 0)])
    normal = zone_index(m, "Normal")
    assert m.pageblock_types(normal)[:2] == [M, CMA]
    assert free_list(m, normal, 9, M) == [4096]
    assert free_list(m, normal, 9, CMA) == [4608]
    assert m.zone_field(normal, mz.Z_NR_FREE_CMA) == 512
    # take the MOVABLE half and give it back: it must stop at order 9 again
    p = m.alloc(9, THP, 0)
    assert p == 4096
    assert m.free(p, 0) == 0
    m.drain_all()
    assert free_list(m, normal, 9, M) == [4096] and free_list(m, normal, 9, CMA) == [4608]
    assert buddyinfo(m, normal)[9:] == [2, 7]
    m.check()


# --- head vs tail placement -------------------------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
def test_buddy_merge_likely_puts_block_at_tail(policy):
    m = make_machine(SMALL, policy)
    normal = zone_index(m, "Normal")
    P = 4096
    pages = [m.alloc(0, MOVABLE, 0) for _ in range(8)]
    assert pages == list(range(P, P + 8))
    m.drain_all()  # refill leftovers go back; P..P+7 stay allocated
    assert free_list(m, normal, 0, M) == [] and free_list(m, normal, 3, M) == [P + 8]

    def free(pfn):
        assert m.free(pfn, 0) == 0
        m.drain_all()

    free(P)
    free(P + 1)  # merges with P into an order-1 block; P+2 is allocated
    assert free_list(m, normal, 1, M) == [P]
    free(P + 5)  # buddy P+4 allocated; P+6 (order-1 buddy of P+4) allocated -> head
    assert free_list(m, normal, 0, M) == [P + 5]
    free(P + 3)  # buddy P+2 allocated, but P (order-1 buddy of P+2) is a free order-1 block -> tail
    assert free_list(m, normal, 0, M) == [P + 5, P + 3]
    free(P + 7)  # head again
    assert free_list(m, normal, 0, M) == [P + 7, P + 5, P + 3]
    m.check()


# --- invalid frees --------------------------------------------------------------------------------
def _snapshot(m):
    C = m.C.copy()
    C[mz.H_CPU] = 0  # the helper writes the calling CPU into this scratch slot
    return m.S.copy(), C


@pytest.mark.parametrize("policy", POLICIES)
def test_free_of_non_allocated_pfn_is_rejected_without_side_effects(policy):
    m = make_machine(SMALL, policy)
    normal = zone_index(m, "Normal")
    blk = m.alloc(3, UNMOVABLE, 0)  # an order-3 block: blk+1 .. blk+7 are tails
    a = m.alloc(0, MOVABLE, 1)
    b = m.alloc(0, MOVABLE, 1)
    assert m.free(b, 1) == 0  # b now sits on cpu 1's per-CPU list
    assert pinfo(m, b)[1] == mz.PG_PCP
    free_head = free_list(m, normal, 10, M)[-1]
    bad = [blk + 1, blk + 7, b, free_head, free_head + 5, -1, m.n_pages, m.n_pages + 100, 1 << 40]
    for pfn in bad:
        S0, C0 = _snapshot(m)
        assert m.free(pfn, 0) == -22, pfn
        S1, C1 = _snapshot(m)
        assert np.array_equal(S0, S1) and np.array_equal(C0, C1), pfn
    # a double free is rejected too
    assert m.free(a, 0) == 0
    S0, C0 = _snapshot(m)
    assert m.free(a, 0) == -22
    S1, C1 = _snapshot(m)
    assert np.array_equal(S0, S1) and np.array_equal(C0, C1)
    assert m.vm(mz.VM_FREE_EVENTS) == 2
    m.check()


@pytest.mark.parametrize("policy", POLICIES)
def test_alloc_returns_aligned_blocks_in_the_requested_zone(policy):
    m = make_machine(SMALL, policy)
    for order in range(11):
        p = m.alloc(order, MOVABLE, order % 2)
        assert p >= 4096 and p % (1 << order) == 0
        assert pinfo(m, p)[:3] == (order, mz.PG_ALLOC, M)
    d = m.alloc(2, UNMOVABLE | g.BITS["__GFP_DMA32"], 0)
    assert 0 <= d < 4096 and d % 4 == 0
    assert pageblock_type(m, d) == U
    m.check()
    used = sum(1 << o for o in range(11)) + 4
    assert nr_free(m) + sum(m.pcp_field(z, c, mz.P_COUNT) for z in range(2) for c in range(2)) == 12288 - used


# --- the page record (cmasim.mm.mmzone NODE_W) ------------------------------------------------------
def test_page_record_holds_links_page_word_and_owner_of_one_page():
    """A page's list links, page word and owner word are one 16-byte record, and the Python-side
    views (node_field, node_records, unlink_nodes) address the same words the core does."""
    m = make_machine()
    S, n = m.S, m.n_pages
    assert mz.NODE_W * S.itemsize == 16 and S.ctypes.data % 16 == 0  # a record never straddles a cache line
    p = m.alloc(0, g.GFP_KERNEL)
    assert p >= 0
    assert S[mz.NODE_W * p + mz.F_NEXT] == -1 and S[mz.NODE_W * p + mz.F_PREV] == -1  # allocated: on no list
    w_page, w_owner = int(S[mz.NODE_W * p + mz.F_PINFO]), int(S[mz.NODE_W * p + mz.F_OWNER])
    assert (w_page >> mz.PI_STATE_SHIFT) & 3 == mz.PG_ALLOC and w_owner & mz.OW_KIND_MASK == mz.OW_SLAB
    assert mz.node_field(S, mz.F_PINFO, n)[p] == w_page
    assert mz.node_records(S, n + 1)[p, mz.F_OWNER] == w_owner
    # a free block's record: linked both ways with its list neighbours
    q = free_list(m, zone_index(m, "Normal"), mz.MAX_PAGE_ORDER, M)[0]
    nx, pv = int(S[mz.NODE_W * q + mz.F_NEXT]), int(S[mz.NODE_W * q + mz.F_PREV])
    assert S[mz.NODE_W * nx + mz.F_PREV] == q and S[mz.NODE_W * pv + mz.F_NEXT] == q
    # unlink_nodes clears both links and nothing else
    before = S.copy()
    mz.unlink_nodes(S, q, q + 2)
    changed = np.nonzero(S != before)[0]
    assert set(changed.tolist()) <= {mz.NODE_W * r + f for r in (q, q + 1) for f in (mz.F_NEXT, mz.F_PREV)}
    assert S[mz.NODE_W * q + mz.F_NEXT] == -1 and S[mz.NODE_W * q + mz.F_PREV] == -1
    assert S[mz.NODE_W * q + mz.F_PINFO] == before[mz.NODE_W * q + mz.F_PINFO]
