"""The pins_fail fill with THP "always" (issue 9 item 5): THP faults, partial drops, pins and
migration of whole folios, against the kernel rules named in cmasim.workload.fill ("THP fill")
and cmasim.mm.folio (UNMAPPED). Interpreted, on a 128 MiB machine with a 16 MiB CMA area.
"""

from __future__ import annotations

import numpy as np
import pytest

from cmasim.gfp import (
    GFP_HIGHUSER_MOVABLE, GFP_TRANSHUGE, GFP_TRANSHUGE_LIGHT, GfpError, vma_thp_gfp_mask,
)
from cmasim.mm import mmzone as mz
from cmasim.mm.cma import cma_alloc, cma_release
from cmasim.mm.folio import split_folio
from cmasim.mm.freelist import get_pageblock_type_bits, pi_order, pi_state, pinfo
from cmasim.mm.gup import pin_user_page, unpin_user_page
from cmasim.policy import get_policy
from cmasim.run import build_machine
from cmasim.scenario import ScenarioError, load_scenario, load_scenario_text
from cmasim.workload.fill import (
    drop_outside_cma_thp, fill_anon, fill_anon_thp, rescan_candidates_thp, total_free, touch_anon_regions,
)

SMALL = """
[machine]
zones = { DMA32 = "128MiB" }
cpus = 2
thp = "always"
min_free_kbytes = 1024
[[cma]]
size = "16MiB"
[workload.pins_fail]
leave = "12MiB"
headroom = "16MiB"
sizes_mib = [16, 8]
count = 2
prep_ms = 10
warm_ms = 10
loads = "nopin:0:0:0"
"""
THP = 1 << mz.HPAGE_PMD_ORDER
LIGHT = vma_thp_gfp_mask("madvise")


def machine(text=SMALL, sets=None):
    sc = load_scenario_text(text, "small.toml", sets=sets)
    return sc, build_machine(sc, get_policy("linux-6.1"), 1)


def live_blocks(m):
    S, C = m.S, m.C
    return [int(p) for p in S[C[mz.H_LIVE]:C[mz.H_LIVE] + C[mz.H_NLIVE]]]


def unmapped(m, p):
    return int(m.S[m.C[mz.H_UNMAPPED] + p])


def thp_fill(m):
    return fill_anon_thp(m.S, m.C, (12 << 20) // 4096, GFP_HIGHUSER_MOVABLE, LIGHT, m.n_pages)


def test_vma_thp_gfp_mask_follows_the_defrag_setting():
    """mm/huge_memory.c vma_thp_gfp_mask() (6.1) for a VMA without MADV_HUGEPAGE."""
    assert vma_thp_gfp_mask("madvise") == GFP_TRANSHUGE_LIGHT  # the default: no reclaim, no compaction
    assert vma_thp_gfp_mask("never") == GFP_TRANSHUGE_LIGHT
    assert vma_thp_gfp_mask("always") == GFP_TRANSHUGE | mz.GFP_NORETRY_
    assert vma_thp_gfp_mask("always", vma_madvised=True) == GFP_TRANSHUGE
    assert vma_thp_gfp_mask("defer") == GFP_TRANSHUGE_LIGHT | mz.GFP_KSWAPD_RECLAIM_
    assert vma_thp_gfp_mask("madvise", vma_madvised=True) == GFP_TRANSHUGE_LIGHT | mz.GFP_DIRECT_RECLAIM_
    assert not GFP_TRANSHUGE_LIGHT & (mz.GFP_DIRECT_RECLAIM_ | mz.GFP_KSWAPD_RECLAIM_)
    with pytest.raises(GfpError, match="defrag"):
        vma_thp_gfp_mask("sometimes")


def test_scenario_keys_name_the_field():
    sc, _ = machine()
    assert sc.machine.thp_enabled() == "always" and sc.machine.thp_defrag == "madvise"
    assert load_scenario("oracle-pins-fail").machine.thp_enabled() == "never"
    assert load_scenario("oracle-pins-fail", ["machine.thp=always"]).machine.thp_enabled() == "always"
    assert load_scenario("oracle-pins-fail", ["machine.thp=true"]).machine.thp_enabled() == "always"
    for bad in ("machine.thp=sometimes", "machine.thp_defrag=often"):
        with pytest.raises(ScenarioError) as e:
            load_scenario("oracle-pins-fail", [bad])
        assert "oracle-pins-fail" in str(e.value) and bad.split("=")[0] in str(e.value), str(e.value)


def test_fill_faults_thps_only_with_thp_always():
    """thp = "always": the fill is order-9 folios (do_huge_pmd_anonymous_page()), some borrowed
    from CMA by the balancing rule; thp_fault_alloc counts them. thp = "madvise" (no
    MADV_HUGEPAGE in the tool) and "never": 4 KiB pages only."""
    from cmasim.workload.pins_fail import fill_thp_gfp
    sc, m = machine()
    n = thp_fill(m)
    blocks = live_blocks(m)
    orders = [pi_order(pinfo(m.S, m.C, p)) for p in blocks]
    assert sum(1 << o for o in orders) == n
    assert total_free(m.C) <= (12 << 20) // 4096
    thps = [p for p, o in zip(blocks, orders) if o == mz.HPAGE_PMD_ORDER]
    assert len(thps) >= len(blocks) - THP  # only the last few pages are 4 KiB
    assert m.vm(mz.VM_THP_FAULT_ALLOC) == len(thps) > 40
    assert any(get_pageblock_type_bits(m.S, m.C, p) == mz.MIGRATE_CMA for p in thps)
    assert fill_thp_gfp(sc, get_policy("linux-6.1")) == GFP_TRANSHUGE_LIGHT
    for setting in ("madvise", "never"):
        sc2, m2 = machine(sets=[f"machine.thp={setting}"])
        assert fill_thp_gfp(sc2, get_policy("linux-6.1")) == 0
    fill_anon(m2.S, m2.C, (12 << 20) // 4096, GFP_HIGHUSER_MOVABLE, m2.n_pages)
    assert all(pi_order(pinfo(m2.S, m2.C, p)) == 0 for p in live_blocks(m2))


def test_thp_fault_falls_back_to_4k_pages():
    """No free order-9 block: thp_fault_fallback, and the region is faulted 4 KiB page by page."""
    from cmasim.mm.alloc_pages import alloc_pages
    from cmasim.mm.folio import release_block
    from cmasim.workload.fill import fault_anon_region
    _, m = machine(sets=["machine.min_free_kbytes=128"])
    S, C = m.S, m.C
    reserve = [alloc_pages(S, C, 0, 0, GFP_HIGHUSER_MOVABLE) for _ in range(1400)]
    while alloc_pages(S, C, 0, mz.HPAGE_PMD_ORDER, GFP_TRANSHUGE_LIGHT) >= 0:
        pass  # every free order >= 9 block taken
    for p in reserve[::2]:
        release_block(S, C, 0, p)  # 700 free pages, no two adjacent: no order-9 block can form
    f0, n0 = m.vm(mz.VM_THP_FAULT_FALLBACK), int(C[mz.H_NLIVE])
    assert fault_anon_region(S, C, 0, GFP_HIGHUSER_MOVABLE, LIGHT, THP) == THP
    assert m.vm(mz.VM_THP_FAULT_FALLBACK) == f0 + 1
    assert int(C[mz.H_NLIVE]) == n0 + THP
    assert all(pi_order(pinfo(S, C, p)) == 0 for p in live_blocks(m)[-THP:])


def test_dropping_part_of_a_thp_frees_nothing():
    """MADV_DONTNEED of a 4 KiB run inside a PMD-mapped THP splits the PMD and zaps PTEs:
    the folio stays allocated whole (deferred split queue); only its unmapped count grows, and
    the re-touch faults 4 KiB pages for the dropped run."""
    _, m = machine()
    thp_fill(m)
    free0 = total_free(m.C)
    out = np.zeros(2, dtype=np.int64)
    assert drop_outside_cma_thp(m.S, m.C, 300, out) == 300
    assert total_free(m.C) == free0  # nothing freed
    assert list(out) == [300, 0]  # 300 PTE-mapped pages to re-touch, no empty PMD region
    part = [p for p in live_blocks(m) if unmapped(m, p)]
    assert 1 <= len(part) <= 2 and sum(unmapped(m, p) for p in part) == 300
    assert all(get_pageblock_type_bits(m.S, m.C, p) != mz.MIGRATE_CMA for p in part)
    nlive = int(m.C[mz.H_NLIVE])
    assert touch_anon_regions(m.S, m.C, GFP_HIGHUSER_MOVABLE, LIGHT, 300, 0) == 300
    assert int(m.C[mz.H_NLIVE]) == nlive + 300
    assert all(pi_order(pinfo(m.S, m.C, p)) == 0 for p in live_blocks(m)[-300:])


def test_dropping_whole_thps_and_the_rest_of_a_partial_one():
    """A drop that covers every mapped page outside CMA: a PMD-mapped THP is freed whole and its
    region re-faults a THP (out[1]); the rest of a partly unmapped THP frees the whole folio
    (its last mapping went) and re-faults as 4 KiB pages (out[0])."""
    _, m = machine()
    thp_fill(m)
    outside = [p for p in live_blocks(m) if get_pageblock_type_bits(m.S, m.C, p) != mz.MIGRATE_CMA]
    thps = [p for p in outside if pi_order(pinfo(m.S, m.C, p)) == mz.HPAGE_PMD_ORDER]
    small = len(outside) - len(thps)
    part = thps[3]
    m.S[m.C[mz.H_UNMAPPED] + part] = 100
    out = np.zeros(2, dtype=np.int64)
    # Each walk's random start may land inside its first THP and take only part of it: repeat
    # until nothing outside CMA is mapped.
    total = loose = regions = 0
    for _ in range(200):
        got = drop_outside_cma_thp(m.S, m.C, m.n_pages, out)
        if not got:
            break
        total += got
        loose += int(out[0])
        regions += int(out[1])
    assert total == len(thps) * THP - 100 + small
    for p in thps:  # every folio freed whole
        assert all(pi_state(pinfo(m.S, m.C, q)) != mz.PG_ALLOC for q in range(p, p + THP))
    assert unmapped(m, part) == 0  # cleared with the free
    assert len(thps) - 3 <= regions <= len(thps) - 1  # the partial one (and the walks' first ones) re-fault 4 KiB
    assert loose == total - regions * THP
    assert not any(get_pageblock_type_bits(m.S, m.C, p) != mz.MIGRATE_CMA for p in live_blocks(m))


def test_split_frees_the_unmapped_subpages():
    """__split_huge_page(): subpages without a mapping are freed at the split."""
    _, m = machine()
    thp_fill(m)
    p = next(p for p in live_blocks(m) if pi_order(pinfo(m.S, m.C, p)) == mz.HPAGE_PMD_ORDER)
    m.S[m.C[mz.H_UNMAPPED] + p] = 200
    s0, n0 = m.vm(mz.VM_THP_SPLIT_PAGE), int(m.C[mz.H_NLIVE])
    assert split_folio(m.S, m.C, p) == THP - 200
    assert m.vm(mz.VM_THP_SPLIT_PAGE) == s0 + 1
    assert all(pi_state(pinfo(m.S, m.C, q)) != mz.PG_ALLOC for q in range(p + THP - 200, p + THP))  # freed
    assert int(m.C[mz.H_NLIVE]) == n0 + THP - 200 - 1
    assert all(pi_state(pinfo(m.S, m.C, q)) == mz.PG_ALLOC for q in range(p, p + THP - 200))
    assert unmapped(m, p) == 0


def test_cma_alloc_migrates_thps_whole_and_a_pin_blocks_the_folio():
    """The THP fill's cma_alloc() migrates the CMA-resident THPs as order-9 folios
    (thp_migration_success); a pin on the folio (pin_user_pages_fast() on one of its pages
    pins the folio: try_grab_folio()) keeps all 512 pages where they are and the range fails."""
    _, m = machine()
    thp_fill(m)
    a = m.area("reserved")
    in_cma = [p for p in live_blocks(m) if pi_order(pinfo(m.S, m.C, p)) == mz.HPAGE_PMD_ORDER
              and get_pageblock_type_bits(m.S, m.C, p) == mz.MIGRATE_CMA]
    assert len(in_cma) >= 2
    victim = in_cma[0]
    scratch = np.zeros(4, dtype=np.int64)
    assert pin_user_page(m.S, m.C, 0, victim, False, 10**15, scratch, 0) == victim
    pfn, ret, _ = cma_alloc(m, a, a.count, 8)
    assert ret != 0
    assert pi_order(pinfo(m.S, m.C, victim)) == mz.HPAGE_PMD_ORDER  # still one folio, not migrated
    assert pi_state(pinfo(m.S, m.C, victim)) == mz.PG_ALLOC
    migrated = m.vm(mz.VM_THP_MIGRATION_SUCCESS)
    assert migrated >= len(in_cma) - 1  # the others moved whole
    assert m.vm(mz.VM_THP_SPLIT_PAGE) == 0
    unpin_user_page(m.S, m.C, 0, victim)
    pfn, ret, _ = cma_alloc(m, a, a.count, 8)
    assert ret == 0 and m.vm(mz.VM_THP_MIGRATION_SUCCESS) == migrated + 1
    cma_release(m, a, pfn, a.count)


def test_candidates_weigh_mapped_pages():
    """scan_fill() lists virtual pages: a THP in CMA is 512 candidates (fewer when part of it
    is unmapped)."""
    _, m = machine()
    thp_fill(m)
    in_cma = [p for p in live_blocks(m) if get_pageblock_type_bits(m.S, m.C, p) == mz.MIGRATE_CMA]
    expect = sum(1 << pi_order(pinfo(m.S, m.C, p)) for p in in_cma)
    assert rescan_candidates_thp(m.S, m.C) == expect == int(m.C[mz.H_NCAND])
    m.S[m.C[mz.H_UNMAPPED] + in_cma[0]] = 12
    assert rescan_candidates_thp(m.S, m.C) == expect - 12


def test_pins_fail_phase_with_thp_fill():
    """The workload end to end (interpreted): the phase's fill faults THPs, every attempt
    succeeds without pins and migrates THPs whole."""
    from cmasim.workload.pins_fail import PinsFail, fill_thp_gfp
    sc, m = machine()
    spec = sc.workload.pins_fail
    res = PinsFail(m, spec, GFP_HIGHUSER_MOVABLE, thp_gfp=fill_thp_gfp(sc, m.policy)).run()
    ph = res["phases"][0]
    assert ph["thp"]["fault_alloc"] > 40
    for size in ("16.0", "8.0"):
        cell = ph["sizes"][size]
        assert cell["ok"] == cell["attempts"] == 2
    assert ph["sizes"]["16.0"]["thp_migrated"] >= 2  # the whole area: its borrowed THPs moved whole
    assert ph["sizes"]["16.0"]["fill_pages_in_cma_med"] >= 2 * THP
    # without THP the same keys give no THP at all
    sc2, m2 = machine(sets=["machine.thp=never"])
    res2 = PinsFail(m2, sc2.workload.pins_fail, GFP_HIGHUSER_MOVABLE, thp_gfp=fill_thp_gfp(sc2, m2.policy)).run()
    assert "thp" not in res2["phases"][0] and res2["phases"][0]["sizes"]["16.0"]["thp_migrated"] == 0


def test_churn_drops_a_run_of_the_fill_cma_or_not():
    """oracle-tool -R (the lkml_pins set-up): MADV_DONTNEED of a random run of the mapping,
    CMA pages included; the model's run is a cyclic window of the live handles (their
    allocation order)."""
    from cmasim.workload.fill import madv_dontneed_fill
    _, m = machine(sets=["machine.thp=never"])
    fill_anon(m.S, m.C, (12 << 20) // 4096, GFP_HIGHUSER_MOVABLE, m.n_pages)
    before = live_blocks(m)
    out = np.zeros(2, dtype=np.int64)
    assert madv_dontneed_fill(m.S, m.C, 1000, False, out) == 1000 and list(out) == [1000, 0]
    gone = {p for p in before} - set(live_blocks(m))
    idx = sorted(before.index(p) for p in gone)
    n = len(before)
    start = next(i for i in idx if (i - 1) % n not in idx)
    assert {(start + k) % n for k in range(1000)} == set(idx)  # one contiguous (cyclic) run
    assert any(get_pageblock_type_bits(m.S, m.C, p) == mz.MIGRATE_CMA for p in gone)


def test_sizes_in_turn_without_interleave():
    from cmasim.workload.pins_fail import PinsFail, fill_thp_gfp
    sets = ["machine.thp=never", "workload.pins_fail.interleave=false", "workload.pins_fail.churn=4MiB",
            "workload.pins_fail.headroom=0", "workload.pins_fail.reborrow=false"]
    sc, m = machine(sets=sets)
    res = PinsFail(m, sc.workload.pins_fail, GFP_HIGHUSER_MOVABLE, thp_gfp=fill_thp_gfp(sc, m.policy)).run()
    att = res["phases"][0]["attempts"]
    assert [(a["size_mib"], a["try"]) for a in att] == [(16.0, 0), (16.0, 1), (8.0, 0), (8.0, 1)]
    assert all(a["ok"] for a in att)
    sc2, _ = machine(sets=sets[:1])
    assert sc2.workload.pins_fail.interleave and sc2.workload.pins_fail.churn == 0


def test_checker_catches_a_stray_unmapped_count():
    """The invariant checker (cmasim.mm.debug E_UNMAPPED): a count only at an allocated large
    folio's head, below its size; the partial drops keep the state consistent."""
    from cmasim.machine import InvariantViolation
    _, m = machine()
    thp_fill(m)
    out = np.zeros(2, dtype=np.int64)
    drop_outside_cma_thp(m.S, m.C, 700, out)
    m.check()
    p = next(p for p in live_blocks(m) if pi_order(pinfo(m.S, m.C, p)) == mz.HPAGE_PMD_ORDER)
    m.S[m.C[mz.H_UNMAPPED] + p] = THP  # a folio unmapped whole is freed, never counted
    with pytest.raises(InvariantViolation, match=f"unmapped-subpage count {THP}"):
        m.check()
    m.S[m.C[mz.H_UNMAPPED] + p] = 0
    m.S[m.C[mz.H_UNMAPPED] + p + 1] = 3  # on a tail page
    with pytest.raises(InvariantViolation, match="unmapped-subpage count 3"):
        m.check()
