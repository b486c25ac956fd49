"""The invariant checker (cmasim.mm.debug via Machine.check): every kind of corruption is caught.

Each test damages a consistent state in one specific way by editing the raw arrays and
expects InvariantViolation with the message of exactly that rule.
"""

from __future__ import annotations

import re

import pytest
from helpers import (
    CMA,
    MOVABLE,
    POLICIES,
    SMALL,
    UNMOVABLE,
    M,
    U,
    free_list,
    free_list_id,
    make_machine,
    pcp_addr,
    pcp_list,
    pinfo,
    set_pinfo,
    zone_addr,
    zone_index,
)

from cmasim import gfp as g
from cmasim.machine import InvariantViolation
from cmasim.mm import mmzone as mz


def base(policy="linux-6.18"):
    """Allocated, per-CPU and free blocks of several orders in both zones, plus a CMA area."""
    m = make_machine(SMALL, policy, cma_areas=[("cma", 4096, 1024, 0)])
    st = {"a": [m.alloc(0, MOVABLE, 0) for _ in range(6)]}
    st["b"] = m.alloc(3, UNMOVABLE, 1)
    st["d"] = m.alloc(10, MOVABLE | g.BITS["__GFP_DMA32"], 0)
    assert st["a"] == list(range(5120, 5126)) and st["d"] == 0
    m.free(st["a"][1], 0)
    m.free(st["a"][3], 0)
    m.check()
    return m, st


def expect(m, pattern):
    with pytest.raises(InvariantViolation, match=pattern) as ei:
        m.check()
    return str(ei.value)


# --- list structure ---------------------------------------------------------------------------------
def test_clean_states_pass():
    for policy in POLICIES:
        base(policy)  # check() inside


def test_list_count_off_by_one():
    m, _ = base()
    normal = zone_index(m, "Normal")
    lst = free_list_id(m, normal, 10, M)
    n = len(free_list(m, normal, 10, M))
    m.C[int(m.C[mz.H_LCNT]) + lst] += 1
    expect(m, rf"list {lst} holds {n} blocks but its count says {n + 1}$")


def test_broken_next_link():
    m, st = base()
    normal = zone_index(m, "Normal")
    q = free_list(m, normal, 3, M)[0]
    m.S[mz.NODE_W * q + mz.F_NEXT] = st["a"][0]  # NEXT now points at an allocated page
    expect(m, rf"list links broken at node {q} \(list {free_list_id(m, normal, 3, M)}, next {st['a'][0]}\)")


def test_free_head_marked_allocated():
    m, _ = base()
    normal = zone_index(m, "Normal")
    q = free_list(m, normal, 3, M)[0]
    o, _, aux, lst = pinfo(m, q)
    set_pinfo(m, q, o, mz.PG_ALLOC, aux, lst)
    expect(m, rf"page {q} on a list is not a head in state {mz.PG_BUDDY} \(state {mz.PG_ALLOC}\)")


def test_free_head_records_wrong_list():
    m, _ = base()
    normal = zone_index(m, "Normal")
    q = free_list(m, normal, 3, M)[0]
    right, wrong = free_list_id(m, normal, 3, M), free_list_id(m, normal, 3, U)
    set_pinfo(m, q, 3, mz.PG_BUDDY, 0, wrong)
    expect(m, rf"page {q} records list {wrong} but sits on list {right}")


def test_free_page_order_changed():
    m, _ = base()
    normal = zone_index(m, "Normal")
    q = free_list(m, normal, 0, M)[0]
    _, st, aux, lst = pinfo(m, q)
    set_pinfo(m, q, 1, st, aux, lst)
    expect(m, rf"page {q} has order 1 on a free list of order 0")


def test_pcp_list_mixing_orders():
    m, _ = base()
    normal = zone_index(m, "Normal")
    lst = pcp_list(m, normal, 0, M)  # pindex 1 = order 0 MOVABLE
    assert len(lst) >= 2
    _o, st, aux, lid = pinfo(m, lst[1])
    set_pinfo(m, lst[1], 1, st, aux, lid)
    expect(m, rf"per-CPU list at page {lst[1]} mixes orders 0 and 1")


# --- the page walk ------------------------------------------------------------------------------------
def test_misaligned_block_head():
    m, st = base()
    p = st["a"][5]  # 5125, an allocated order-0 page
    assert p % 2 == 1
    _, s, aux, lst = pinfo(m, p)
    set_pinfo(m, p, 1, s, aux, lst)
    expect(m, rf"block head {p} not aligned to order 1")


def test_block_running_past_zone_end():
    m, st = base()
    _, s, aux, lst = pinfo(m, st["d"])
    set_pinfo(m, st["d"], 13, s, aux, lst)  # 8192 pages from pfn 0: DMA32 ends at 4096
    expect(m, r"block at 0 runs past its zone end 4096")


def test_dirty_tail_page():
    m, st = base()
    b = st["b"]
    set_pinfo(m, b + 2, 0, mz.PG_ALLOC)
    expect(m, rf"page {b + 2} inside a block is not blank \(info {mz.PG_ALLOC << mz.PI_STATE_SHIFT}\)")


def test_pcp_head_not_on_any_list():
    m, st = base()
    p = st["a"][0]
    _, _, aux, _ = pinfo(m, p)
    set_pinfo(m, p, 0, mz.PG_PCP, aux, 0)
    m.S[mz.NODE_W * p + mz.F_OWNER] = 0  # a per-CPU block has no owner and no handle
    msg = expect(m, r"(\d+) free/pcp block heads but (\d+) list nodes")
    got, exp = map(int, re.search(r"(\d+) free/pcp block heads but (\d+) list nodes", msg).groups())
    assert got == exp + 1


def _nx(x):
    return mz.NODE_W * x + mz.F_NEXT


def _pv(x):
    return mz.NODE_W * x + mz.F_PREV


def _unlink(m, lst, p):
    S = m.S
    nx, pv = int(S[_nx(p)]), int(S[_pv(p)])
    S[_nx(pv)], S[_pv(nx)] = nx, pv
    S[_nx(p)] = S[_pv(p)] = -1
    m.C[int(m.C[mz.H_LCNT]) + lst] -= 1


def _link_head(m, lst, p):
    S = m.S
    s = int(m.C[mz.H_N]) + lst
    nx = int(S[_nx(s)])
    S[_nx(p)], S[_pv(p)], S[_pv(nx)], S[_nx(s)] = nx, s, p, p
    m.C[int(m.C[mz.H_LCNT]) + lst] += 1


def test_free_buddies_left_unmerged():
    m, _ = base()
    normal = zone_index(m, "Normal")
    q = free_list(m, normal, 3, M)[0]
    l3, l2 = free_list_id(m, normal, 3, M), free_list_id(m, normal, 2, M)
    # split the free order-3 block into two free order-2 buddies, keeping every count right
    _unlink(m, l3, q)
    for p in (q, q + 4):
        _link_head(m, l2, p)
        set_pinfo(m, p, 2, mz.PG_BUDDY, 0, l2)
    m.C[zone_addr(m, normal, mz.Z_AREA + 3)] -= 1
    m.C[zone_addr(m, normal, mz.Z_AREA + 2)] += 2
    expect(m, rf"free buddies {q} and {q + 4} of order 2 left unmerged")


# --- counters -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field_,delta,pattern", [
    (mz.Z_NR_FREE, 1, r"zone 1: NR_FREE_PAGES is (\d+), lists hold (\d+)"),
    (mz.Z_NR_FREE_CMA, -1, r"zone 1: NR_FREE_CMA_PAGES is (\d+), lists hold (\d+)"),
    (mz.Z_NR_FREE_HIGHATOMIC, 1, r"zone 1: free highatomic is (\d+), lists hold (\d+)"),
    (mz.Z_NR_FREE_BLOCKS, 512, r"zone 1: NR_FREE_PAGES_BLOCKS is (\d+), lists hold (\d+)"),
    (mz.Z_AREA + 3, 1, r"zone 1: nr_free of an order is (\d+), lists hold (\d+)"),
    (mz.Z_NR_ISOLATE_PB, 1, r"zone 1: nr_isolate_pageblock is (\d+), bits say (\d+)"),
])
def test_zone_counter_off(field_, delta, pattern):
    m, _ = base()
    normal = zone_index(m, "Normal")
    assert normal == 1
    m.C[zone_addr(m, normal, field_)] += delta
    msg = expect(m, pattern)
    exp, got = map(int, re.search(pattern, msg).groups())
    assert exp - got == delta


def test_pcp_count_off():
    m, _ = base()
    normal = zone_index(m, "Normal")
    c = m.pcp_field(normal, 0, mz.P_COUNT)
    assert c > 0
    m.C[pcp_addr(m, normal, 0, mz.P_COUNT)] += 1
    expect(m, rf"cpu 0: pcp->count is {c + 1}, lists hold {c}")


# --- pageblock rules --------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
def test_free_block_in_a_pageblock_of_another_type(policy):
    m, _ = base(policy)
    # DMA32's free order-10 MOVABLE block at 1024 covers pageblocks 1024 and 1536; retype the second.
    pb = int(m.C[mz.H_PB]) + (1536 >> mz.PAGEBLOCK_ORDER)
    assert free_list(m, 0, 10, M)[0] == 1024
    m.S[pb] = (m.S[pb] & ~mz.PB_MT_MASK) | U
    if policy == "linux-6.18":
        expect(m, r"free block 1024 is on a 1 list in a pageblock of type 0")
    else:
        m.check()  # v6.1: free lists may disagree with mergeable pageblock types


def test_isolate_bit_without_count():
    m, _st = base()
    # a fully allocated pageblock (the DMA32 order-10 block at 0) gets the isolate bit
    pb = int(m.C[mz.H_PB]) + 0
    m.S[pb] |= mz.PB_ISOLATE
    expect(m, r"zone 0: nr_isolate_pageblock is 0, bits say 1")


@pytest.mark.parametrize("policy", [
    "linux-6.18",
    "linux-6.1",
])
def test_free_block_spanning_cma_and_movable_pageblocks(policy):
    m, _ = base(policy)
    normal = zone_index(m, "Normal")
    assert free_list(m, normal, 10, CMA) == [4096]
    pb = int(m.C[mz.H_PB]) + (4608 >> mz.PAGEBLOCK_ORDER)
    m.S[pb] = (m.S[pb] & ~mz.PB_MT_MASK) | M  # half of the free CMA block is now a MOVABLE pageblock
    with pytest.raises(InvariantViolation):
        m.check()


def test_pcp_page_on_another_zones_list():
    m, st = base()
    normal, dma32 = zone_index(m, "Normal"), zone_index(m, "DMA32")
    p = st["a"][1]  # on Normal's CPU-0 MOVABLE order-0 list
    src = int(pinfo(m, p)[3])
    dst = src - (normal - dma32) * int(m.C[mz.H_LPZ])  # the same list of DMA32
    _unlink(m, src, p)
    _link_head(m, dst, p)
    o, s, aux, _ = pinfo(m, p)
    set_pinfo(m, p, o, s, aux, dst)
    m.C[pcp_addr(m, normal, 0, mz.P_COUNT)] -= 1
    m.C[pcp_addr(m, dma32, 0, mz.P_COUNT)] += 1
    with pytest.raises(InvariantViolation):
        m.check()


# --- owners and handles (state kept for migration, pinning and reclaim) ------------------------------
needs_owners = pytest.mark.skipif(not hasattr(mz, "F_OWNER"), reason="core without owner words")


@needs_owners
def test_free_block_with_an_owner():
    m, _ = base()
    normal = zone_index(m, "Normal")
    q = free_list(m, normal, 4, M)[0]
    m.S[mz.NODE_W * q + mz.F_OWNER] = 5
    expect(m, rf"free block {q} still has owner word 5")


@needs_owners
def test_handle_and_block_disagree():
    m, st = base()
    p = st["b"]
    h = int(m.S[int(m.C[mz.H_HANDLE]) + p])
    assert h >= 0 and int(m.S[int(m.C[mz.H_LIVE]) + h]) == p
    m.S[int(m.C[mz.H_HANDLE]) + p] = h + 7
    expect(m, rf"handle {h} points at block {p}, whose handle entry is {h + 7}")


@needs_owners
def test_live_page_counter_off():
    m, _st = base()
    n = int(m.C[mz.H_LIVE_PAGES])
    assert n == 4 + 8 + 1024  # a[0], a[2], a[4], a[5], b, d
    m.C[mz.H_LIVE_PAGES] += 1
    expect(m, rf"live-page counter is {n + 1}, handles hold {n}")
