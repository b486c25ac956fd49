"""The CMA path against the kernel source: cma_alloc() bitmap and result rules, the
alloc_contig_range() migration batches, migrate_pages() passes (kernel review W6-W8, W11,
W12, W15; R13 THP split; transient migration failures)."""

import pytest

from cmasim import gfp as G
from cmasim.machine import Machine, MachineConfig
from cmasim.mm import mmzone as mz
from cmasim.mm.cma import EBUSY, ENOMEM, cma_alloc, cma_bitmap_aligned_offset
from cmasim.policy import get_policy


def cma_machine(policy="linux-6.18", zones=(("DMA32", 8192),), base=2048, count=4096, **kw):
    kw.setdefault("reclaim", False)
    kw.setdefault("compaction", False)
    cfg = MachineConfig(zones=list(zones), nr_cpus=2, cma_areas=[("c", base, count, 0)], **kw)
    m = Machine(cfg, get_policy(policy))
    m.check()
    return m


class Tracer:
    def __init__(self):
        self.lines = []

    def __call__(self, name, text):
        if name:
            self.lines.append((name, text))

    def last(self, name):
        return [t for n, t in self.lines if n == name][-1]


# --- W6: cma_bitmap_aligned_offset ------------------------------------------------------------
def test_bitmap_aligned_offset_is_base_modulo_alignment():
    """mm/cma.c:cma_bitmap_aligned_offset() = (base_pfn & (2^align - 1)) >> order_per_bit."""
    assert cma_bitmap_aligned_offset(2560, 11, 0) == 512
    assert cma_bitmap_aligned_offset(2560, 11, 2) == 128
    assert cma_bitmap_aligned_offset(4096, 11, 0) == 0


def test_large_alignment_with_unaligned_base_returns_an_aligned_range():
    # base 2560 = 512 mod 2048: the first 2^11-aligned pfn in the area is 4096.
    m = cma_machine(base=2560, count=4096)
    a = m.area("c")
    pfn, ret, _ = cma_alloc(m, a, 16, 11)
    m.check()
    assert ret == 0 and pfn == 4096 and pfn % 2048 == 0


# --- W7: 6.15+ result code and finish trace ---------------------------------------------------
@pytest.mark.parametrize("policy", ["linux-6.18", "linux-6.1"])
def test_no_free_range_result_and_finish_pfn(policy):
    m = cma_machine(policy)
    a = m.area("c")
    tr = Tracer()
    pfn, ret, _ = cma_alloc(m, a, 4096, 0, tracer=tr)  # take the whole area
    assert ret == 0
    pfn, ret, _ = cma_alloc(m, a, 16, 0, tracer=tr)  # count > available / no zero area
    assert pfn == -1 and a.fail_no_range == 1 and a.fail_busy == 0
    if policy == "linux-6.18":
        assert ret == EBUSY
        assert "pfn=0x0 " in tr.last("cma_alloc_finish") and "errorno=-16" in tr.last("cma_alloc_finish")
    else:
        assert ret == ENOMEM  # 6.1: no errorno field; pfn is the last candidate (none: all ones)
        assert "pfn=0xffffffffffffffff " in tr.last("cma_alloc_finish")


def test_618_busy_failure_prints_pfn_zero():
    m = cma_machine("linux-6.18")
    a = m.area("c")
    # One pinned borrowed page in every 1024-page candidate makes every candidate busy.
    while m.zone_field(0, mz.Z_NR_FREE) - m.zone_field(0, mz.Z_NR_FREE_CMA) > 600:
        assert m.alloc(0, G.GFP_KERNEL) >= 0
    got = [p for p in (m.alloc(0, G.GFP_HIGHUSER_MOVABLE, owner=mz.OW_FILE) for _ in range(4000)) if 2048 <= p]
    for c in range(4):
        p = next(q for q in got if 2048 + 1024 * c <= q < 2048 + 1024 * (c + 1))
        assert m.pin(p, duration_ns=10**12) == p
    tr = Tracer()
    pfn, ret, _ = cma_alloc(m, a, 1024, 10, tracer=tr)
    assert (pfn, ret) == (-1, EBUSY) and a.busy_retries == 4 and a.fail_busy == 1
    assert "pfn=0x0 " in tr.last("cma_alloc_finish")


# --- helpers for the migration tests ------------------------------------------------------------
import numpy as np  # noqa: E402

from cmasim.mm.alloc_contig import R_FIN_PFN, alloc_contig_range, isolate_migratepages_range  # noqa: E402
from cmasim.mm.freelist import zone_base  # noqa: E402
from cmasim.mm.migrate import migrate_pages  # noqa: E402


def plain_machine(policy="linux-6.18", pages=8192, **kw):
    kw.setdefault("reclaim", False)
    kw.setdefault("compaction", False)
    m = Machine(MachineConfig(zones=[("DMA32", pages)], nr_cpus=2, **kw), get_policy(policy))
    return m


def order_of(m, p):
    return int(m.S[mz.NODE_W * p + mz.F_PINFO]) & mz.PI_ORDER_MASK


def state_of(m, p):
    return (int(m.S[mz.NODE_W * p + mz.F_PINFO]) >> mz.PI_STATE_SHIFT) & 3


def fragment_non_cma(m):
    """Fill all non-CMA memory with unmovable order-0 pages, then free every other one: plenty
    of free order-0 pages, no free order-1+ block outside CMA."""
    got = []
    while m.zone_field(0, mz.Z_NR_FREE) - m.zone_field(0, mz.Z_NR_FREE_CMA) > 0:
        p = m.alloc(0, G.GFP_KERNEL)
        if p < 0:
            break
        got.append(p)
    for p in sorted(got)[::2]:
        assert m.free(p) == 0
    m.drain_all()
    return got


# --- W8: batches of 32 base pages -----------------------------------------------------------------
def test_a_thp_ends_an_alloc_contig_batch_by_itself():
    m = plain_machine()
    thps = sorted(m.alloc(9, G.GFP_HIGHUSER_MOVABLE) for _ in range(4))
    assert all(p >= 0 for p in thps)
    lo, hi = thps[0], thps[-1] + 512
    lst = np.full(2 * 1088, -1, dtype=np.int64)
    zb = zone_base(m.C, 0)
    pfn, n, _ = isolate_migratepages_range(m.S, m.C, zb, lo, hi, lst)
    assert (pfn, n) == (thps[0] + 512, 1)  # kernel: nr_migratepages (512) >= 32 ends the batch


def test_alloc_contig_batch_counts_base_pages():
    m = plain_machine()
    blocks = sorted(m.alloc(2, G.GFP_HIGHUSER_MOVABLE) for _ in range(40))
    assert blocks[0] >= 0
    lst = np.full(2 * 1088, -1, dtype=np.int64)
    zb = zone_base(m.C, 0)
    pfn, n, _ = isolate_migratepages_range(m.S, m.C, zb, blocks[0], blocks[-1] + 4, lst)
    assert n == 8 and sum(1 << order_of(m, int(p)) for p in lst[:n]) == 32  # not 32 folios


# --- W12: range start inside a large folio --------------------------------------------------------
@pytest.mark.parametrize("policy", ["linux-6.18", "linux-6.1"])
def test_range_starting_inside_a_thp_skips_it_and_fails_at_start(policy):
    m = plain_machine(policy)
    p = m.alloc(9, G.GFP_HIGHUSER_MOVABLE)
    assert p >= 0 and p % 512 == 0
    owner0 = int(m.S[mz.NODE_W * p + mz.F_OWNER])
    res = np.zeros(8, dtype=np.int64)
    start = p + 256
    ret = alloc_contig_range(m.S, m.C, 0, start, start + 512, False, 0, res)
    m.check()
    assert ret == EBUSY and res[R_FIN_PFN] == start
    # The THP was neither migrated nor split: same head, order, owner and handle.
    assert state_of(m, p) == mz.PG_ALLOC and order_of(m, p) == 9
    assert int(m.S[mz.NODE_W * p + mz.F_OWNER]) == owner0 and p in m.live_blocks()
    assert m.vm(mz.VM_PGMIGRATE_SUCCESS) == 0
    assert m.zone_field(0, mz.Z_NR_ISOLATE_PB) == 0


# --- W15: the first -ENOMEM of a small folio ends migrate_pages() ---------------------------------
def test_first_enomem_ends_migrate_pages():
    m = plain_machine()
    pages = []
    while True:
        p = m.alloc(0, G.GFP_HIGHUSER_MOVABLE)
        if p < 0:
            break
        pages.append(p)
    lst = np.full(8, -1, dtype=np.int64)
    lst[:3] = pages[:3]
    calls0 = m.vm(mz.VM_ALLOC_EVENTS)
    ok, failed, nomem, n = migrate_pages(m.S, m.C, 0, lst, 3, G.GFP_HIGHUSER_MOVABLE, mz.MIGRATE_SYNC,
                                         mz.MR_CONTIG_RANGE)
    assert nomem and ok == 0 and n == 3 and failed == 3
    assert m.vm(mz.VM_ALLOC_EVENTS) - calls0 == 1  # one target allocation tried, not three
    m.check()


# --- R13/E18: THP split when no order-9 migration target can be had -------------------------------
def thp_in_cma(policy):
    """A THP in a one-pageblock CMA area while no free order-9 block exists outside CMA."""
    m = cma_machine(policy, base=2048, count=512)
    fragment_non_cma(m)
    p = m.alloc(9, G.GFP_HIGHUSER_MOVABLE)
    assert p == 2048, "the only free pageblock is the CMA one"
    m.check()
    return m, p


@pytest.mark.parametrize("policy", ["linux-6.18", "linux-6.1"])
def test_cma_alloc_splits_a_thp_without_order9_target(policy):
    m, p = thp_in_cma(policy)
    live0 = int(m.C[mz.H_LIVE_PAGES])
    a = m.area("c")
    pfn, ret, _ = cma_alloc(m, a, 512, 9)
    m.check()
    assert (pfn, ret) == (2048, 0)  # was -ENOMEM before the split was modelled
    assert a.thp_splits == 1 and m.vm(mz.VM_THP_SPLIT_PAGE) == 1 and a.pages_migrated == 512
    # The split THP's 512 pages live on as 512 handles outside the area, same live total.
    live = [q for q in m.live_blocks() if state_of(m, q) == mz.PG_ALLOC and
            int(m.S[mz.NODE_W * q + mz.F_OWNER]) & mz.OW_KIND_MASK == mz.OW_ANON]
    assert len(live) == 512 and all(not 2048 <= q < 2560 and order_of(m, q) == 0 for q in live)
    assert int(m.C[mz.H_LIVE_PAGES]) == live0


def test_freeing_a_split_thp_page_by_page_keeps_the_books():
    m, p = thp_in_cma("linux-6.18")
    assert cma_alloc(m, m.area("c"), 512, 9)[1] == 0
    for q in [q for q in m.live_blocks() if int(m.S[mz.NODE_W * q + mz.F_OWNER]) & mz.OW_KIND_MASK == mz.OW_ANON]:
        assert m.free(q) == 0
    m.check()


def test_longterm_pin_of_a_thp_splits_it_when_no_order9_target():
    m, p = thp_in_cma("linux-6.18")
    q = m.pin(p, duration_ns=10**9, longterm=True)
    m.check()
    assert q >= 0 and not 2048 <= q < 2560  # was -ENOMEM: no unmovable order-9 target
    assert m.vm(mz.VM_THP_SPLIT_PAGE) == 1 and m.vm(mz.VM_PIN_MIGRATED) == 512
    assert (int(m.S[mz.NODE_W * q + mz.F_OWNER]) >> mz.OW_PIN_SHIFT) & mz.OW_PIN_MASK == 1


def test_split_pages_get_one_async_pass_in_618_and_full_passes_in_61():
    """6.3+ migrate_pages(): split folios get one MIGRATE_ASYNC pass; 6.1 a full set of passes.
    With a transient failure rate, 6.18 leaves more split pages for the caller's next try."""
    left = {}
    for policy in ("linux-6.18", "linux-6.1"):
        m = cma_machine(policy, base=2048, count=512, migrate_eagain_ppm=300_000)
        fragment_non_cma(m)
        p = m.alloc(9, G.GFP_HIGHUSER_MOVABLE)
        assert p == 2048
        lst = np.full(2 * 1088, -1, dtype=np.int64)
        lst[0] = p
        # The order-9 target fails (fragmented, CMA taken by the THP itself); retry until split.
        n = 1
        for _ in range(20):
            ok, failed, nomem, n = migrate_pages(m.S, m.C, 0, lst, n, G.GFP_HIGHUSER_MOVABLE,
                                                 mz.MIGRATE_SYNC, mz.MR_LONGTERM_PIN)
            if n > 1:
                break
        assert n == 513
        left[policy] = failed
        m.check()
    assert left["linux-6.1"] == 0 < left["linux-6.18"]


# --- transient migration failures ---------------------------------------------------------------
def borrowed_cma_machine(ppm):
    m = cma_machine("linux-6.18", base=2048, count=1024, migrate_eagain_ppm=ppm)
    while m.zone_field(0, mz.Z_NR_FREE) - m.zone_field(0, mz.Z_NR_FREE_CMA) > 600:
        assert m.alloc(0, G.GFP_KERNEL) >= 0
    n = 0
    while n < 600:
        p = m.alloc(0, G.GFP_HIGHUSER_MOVABLE)
        assert p >= 0
        n += 2048 <= p < 3072
    return m


def test_transient_eagain_makes_busy_retries_without_pinners():
    quiet = borrowed_cma_machine(0)
    a = quiet.area("c")
    _, ret, _ = cma_alloc(quiet, a, 512, 9)
    assert ret == 0 and a.busy_retries == 0 and quiet.vm(mz.VM_MIGRATE_TRANSIENT) == 0
    busy = borrowed_cma_machine(950_000)
    b = busy.area("c")
    _, ret, _ = cma_alloc(busy, b, 512, 9)
    busy.check()
    assert busy.vm(mz.VM_PIN_SHORT) == 0 and busy.vm(mz.VM_MIGRATE_TRANSIENT) > 0
    assert b.busy_retries > 0


def test_transient_rate_is_a_scenario_key():
    from cmasim.policy import get_policy as gp
    from cmasim.run import build_machine
    from cmasim.scenario import load_scenario

    sc = load_scenario("gpu-cma-short-pins", sets=["migration.transient_eagain=0.02"])
    m = build_machine(sc, gp("linux-6.18"), seed=1)
    assert int(m.C[int(m.C[mz.H_PARAM]) + mz.T_MIGRATE_EAGAIN_PPM]) == 20_000
    assert int(build_machine(load_scenario("gpu-cma-short-pins"), gp("linux-6.18"), 1).C[
        int(m.C[mz.H_PARAM]) + mz.T_MIGRATE_EAGAIN_PPM]) == 0


def test_checker_flags_owner_or_handle_inside_an_allocated_block():
    from cmasim.machine import InvariantViolation

    m = plain_machine()
    p = m.alloc(9, G.GFP_HIGHUSER_MOVABLE)
    m.check()
    m.S[int(m.C[mz.H_HANDLE]) + p + 7] = 0  # as if a split had left the tail a handle
    with pytest.raises(InvariantViolation, match="inside the allocated block"):
        m.check()
    m.S[int(m.C[mz.H_HANDLE]) + p + 7] = -1
    m.S[mz.NODE_W * (p + 9) + mz.F_OWNER] = mz.OW_ANON
    with pytest.raises(InvariantViolation, match="inside the allocated block"):
        m.check()


# --- W11: 6.1 pcp drain re-reads the block type while the zone has an isolated block --------------
@pytest.mark.parametrize("isolate", [True, False])
def test_61_pcp_drain_rereads_block_type_when_zone_has_isolated_block(isolate):
    """6.1 mm/page_alloc.c:free_pcppages_bulk(): `if (unlikely(isolated_pageblocks)) mt =
    get_pageblock_migratetype(page)` for every page once has_isolate_pageblock(zone)."""
    from cmasim.mm.freelist import set_pageblock_migratetype
    from cmasim.mm.page_alloc import block_head
    from cmasim.mm.page_isolation import set_migratetype_isolate

    m = plain_machine("linux-6.1")
    p = m.alloc(0, G.GFP_HIGHUSER_MOVABLE)
    assert m.free(p) == 0 and state_of(m, p) == mz.PG_PCP  # cached type MOVABLE on the pcp list
    set_pageblock_migratetype(m.S, m.C, p, mz.MIGRATE_UNMOVABLE)  # the block changed type since
    far = 8192 - 512
    assert far >> 9 != p >> 9
    if isolate:
        assert set_migratetype_isolate(m.S, m.C, 0, far, False) == 0
    m.drain_all()
    h = block_head(m.S, m.C, zone_base(m.C, 0), p)
    w = int(m.S[mz.NODE_W * h + mz.F_PINFO])
    list_mt = (w >> mz.PI_LIST_SHIFT) % int(m.C[mz.H_LPZ]) % mz.MIGRATE_TYPES
    assert list_mt == (mz.MIGRATE_UNMOVABLE if isolate else mz.MIGRATE_MOVABLE)


# --- issue 9: time passes inside alloc_contig_range(); the two -EBUSY causes ------------------------
def pinned_during_contig(offset_ns, hold_ns=20_000_000):
    """A one-pageblock CMA area holding 32 borrowed anonymous pages (one migration batch) and one
    short-term pinner thread that pins a random CMA page. cma_alloc() of the whole area starts
    `offset_ns` before the pinner's first pin (negative: after it)."""
    m = cma_machine("linux-6.18", base=2048, count=512,
                    pinners=[{"hold_ns": hold_ns, "gap_ns": 10**12, "longterm": False, "cma_only": True,
                              "threads": 1, "start_ns": 10_000_000}])
    while m.zone_field(0, mz.Z_NR_FREE) - m.zone_field(0, mz.Z_NR_FREE_CMA) > 1200:
        assert m.alloc(0, G.GFP_KERNEL, track=False) >= 0
    n = 0
    outside = []
    while n < 32:
        p = m.alloc(0, G.GFP_HIGHUSER_MOVABLE)
        assert p >= 0
        n += 2048 <= p < 2560
        if not 2048 <= p < 2560:
            outside.append(p)
    for p in outside:  # the pinner's only candidates are the 32 borrowed pages
        assert m.free(p) == 0
    t_pin = int(m.C[int(m.C[mz.H_HEAP])])
    m.advance(t_pin - offset_ns)
    a = m.area("c")
    pfn, ret, lat = cma_alloc(m, a, 512, 9)
    m.check()
    return m, a, ret


def test_pin_after_isolation_makes_migration_give_up():
    """The pin lands while the batch is being migrated (40 us in: isolation 1 us, drain 20 us,
    a few pages moved): the pinned page fails every pass of 5 migrate_pages() calls."""
    m, a, ret = pinned_during_contig(40_000)
    assert m.vm(mz.VM_PIN_SHORT) == 1
    assert ret == EBUSY and a.busy_gave_up == 1 and a.busy_skipped == 0
    assert 0 < a.pages_migrated < 32


def test_pin_before_the_scan_is_skipped_at_isolation():
    m, a, ret = pinned_during_contig(-1000)
    assert m.vm(mz.VM_PIN_SHORT) == 1
    assert ret == EBUSY and a.busy_skipped == 1 and a.busy_gave_up == 0
    assert a.pinned_skipped == 1 and a.pages_migrated == 31


def test_short_pin_after_isolation_ends_before_migration_gives_up():
    """A 50 us pin landing mid-batch is gone before the 5 tries are spent: the range succeeds."""
    m, a, ret = pinned_during_contig(40_000, hold_ns=50_000)
    assert m.vm(mz.VM_PIN_SHORT) == 1
    assert ret == 0 and a.busy_retries == 0 and a.pages_migrated == 32
