"""The model against the real Linux 6.1 `pins_fail_cma64` measurements, cell by cell.

The built-in scenario `oracle-pins-fail` runs the 13 pinner loads as phases on one machine
(cmasim.workload.pins_fail); each (phase, size) cell is compared with the kernel's ALLOC and
WINDOW records (cmasim.oracle): failures within ±2 of the kernel's (of 12), busy retries
within ±50% where the kernel has at least 10, the fill borrowing the area like the kernel's
(within 5%), and no FOLL_LONGTERM pin ever on a CMA page. Failures and busy retries are the
mean over SEEDS runs: one run of 12 attempts at a failure chance of 1/2 has a standard
deviation of 1.7 failures, as has the kernel's single run, so a per-run ±2 would fail a
faithful model in ~15% of such cells.
Cells the model's mechanisms do not reproduce are xfail with the reason (docs/fidelity.md).
Runs compiled in a subprocess (the interpreted core takes minutes per phase).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from cmasim.oracle import kernel_cells

SEEDS = [1, 2, 3, 4, 5, 6, 7, 8]
# Cells whose kernel result no faithful mechanism of the model reproduces (docs/fidelity.md).
XFAIL = {
    ("r4", 64): "4 threads pinning any fill page: the kernel fails 8/12 with ~21 CMA pins per attempt, "
                "4x fewer than t1 (81) for the same failures; uniform random pins cannot (docs/fidelity.md)",
}
# Cells whose busy-retry count the model misses (docs/fidelity.md): the kernel's later ranges fail
# again and again on pages pinned near the end of the first range; the model's later ranges take
# 1.5x longer (its borrowed layout is the same every attempt, the top of the area fully borrowed).
XFAIL_BUSY = {
    ("t4h20", 48): "kernel 44 busy retries, model ~20: later ranges (docs/fidelity.md)",
}

SCRIPT = r"""
import json, sys
from cmasim.mm.jit import JIT
assert JIT
from cmasim.policy import get_policy
from cmasim.run import run_scenario
from cmasim.scenario import load_scenario
from cmasim.oracle import sim_cells
out = []
for seed in json.loads(sys.argv[1]):
    m = run_scenario(load_scenario("oracle-pins-fail"), get_policy("linux-6.1"), seed=seed)
    cells = {f"{k[0]}:{k[1]}": v for k, v in sim_cells(m).items()}
    out.append({"cells": cells, "longterm_on_cma": m["counters"].get("longterm_pin_on_cma", -1),
                "lt_pages_in_cma": sum(p["pins"]["pages_in_cma"] for p in m["workload"]["pins_fail"]["phases"]
                                       if p["name"].startswith("lt")),
                "lt_pins": sum(p["pins"]["pins"] for p in m["workload"]["pins_fail"]["phases"]
                               if p["name"].startswith("lt"))})
print(json.dumps(out))
"""

KERNEL = kernel_cells()


@pytest.fixture(scope="module")
def sim():
    env = dict(os.environ, CMASIM_JIT="1", PYTHONPATH=str(ROOT))
    env.pop("NUMBA_DISABLE_JIT", None)
    r = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(SEEDS)], cwd=ROOT, env=env, text=True,
                       capture_output=True, timeout=3000)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _cells(xfail, keep=lambda k: True):
    for key, k in KERNEL.items():
        if not keep(k):
            continue
        marks = [pytest.mark.xfail(reason=xfail[key], strict=True)] if key in xfail else []
        yield pytest.param(key, marks=marks, id=f"{key[0]}-{key[1]}")


def _mean(sim, key, field):
    return sum(run["cells"][f"{key[0]}:{key[1]}"][field] for run in sim) / len(sim)


@pytest.mark.compiled
@pytest.mark.parametrize("key", list(_cells(XFAIL)))
def test_cell_failures(sim, key):
    k = KERNEL[key]
    for run in sim:
        s = run["cells"][f"{key[0]}:{key[1]}"]
        assert s["attempts"] == k["attempts"] == 12
        assert set(s["errors"]) <= {"-16"}  # every failure is -EBUSY, as in the kernel
    assert abs(_mean(sim, key, "fail") - k["fail"]) <= 2, (key, _mean(sim, key, "fail"), k["fail"])


@pytest.mark.compiled
@pytest.mark.parametrize("key", list(_cells(XFAIL_BUSY, lambda k: k["busy_retries"] >= 10)))
def test_cell_busy_retries(sim, key):
    ratio = _mean(sim, key, "busy_retries") / KERNEL[key]["busy_retries"]
    assert 0.5 <= ratio <= 1.5, (key, ratio)


@pytest.mark.compiled
def test_fill_borrows_the_area_like_the_kernel(sim):
    """Before the LONGTERM phases: ~13,500 fill pages in CMA per attempt, within 5%. After
    them (t16h20) the kernel borrows ~95% (their UNMOVABLE migration targets stole movable
    pageblocks); the model must show the same rise."""
    before_lt = [key for key in KERNEL if key[0] not in ("lt4", "lt8h5", "t16h20")]
    for run in sim:
        for key in before_lt:
            s = run["cells"][f"{key[0]}:{key[1]}"]["fill_pages_in_cma_med"]
            k = KERNEL[key]["fill_pages_in_cma_med"]
            assert abs(s - k) <= 0.05 * k, (key, s, k)
        for size in (64, 56, 48):
            rise_k = (KERNEL[("t16h20", size)]["fill_pages_in_cma_med"]
                      / KERNEL[("nopin", size)]["fill_pages_in_cma_med"])
            rise_s = (run["cells"][f"t16h20:{size}"]["fill_pages_in_cma_med"]
                      / run["cells"][f"nopin:{size}"]["fill_pages_in_cma_med"])
            assert rise_k > 1.1 and rise_s > 1.1, (size, rise_k, rise_s)


@pytest.mark.compiled
def test_no_longterm_pin_on_cma(sim):
    for run in sim:
        assert run["lt_pins"] > 1000  # the LONGTERM phases did pin
        assert run["lt_pages_in_cma"] == 0
        assert run["longterm_on_cma"] == 0


def test_bad_loads_name_file_and_field():
    from cmasim.scenario import ScenarioError, load_scenario
    for bad, words in (("t4:4:1000", "name:threads:hold_us:gap_us"), ("t4:4:1000:0:X", "unknown flag"),
                       ("a:1:10:0,a:1:10:0", "share a name"), ("t:2:0:0", "hold_us > 0")):
        with pytest.raises(ScenarioError) as e:
            load_scenario("oracle-pins-fail", [f"workload.pins_fail.loads={bad}"])
        assert "oracle-pins-fail" in str(e.value) and "workload.pins_fail.loads" in str(e.value), str(e.value)
        assert words in str(e.value)
    with pytest.raises(ScenarioError, match="workload.pins_fail.phases: no load named 'zz'"):
        load_scenario("oracle-pins-fail", ['workload.pins_fail.phases=["zz"]'])
    with pytest.raises(ScenarioError, match="workload.pins_fail.sizes_mib"):
        load_scenario("oracle-pins-fail", ["workload.pins_fail.sizes_mib=[65]"])


def test_pinner_rows_follow_the_tool():
    from cmasim.mm import mmzone as mz
    from cmasim.scenario import load_scenario
    from cmasim.workload.pins_fail import hold_jitter_ns, pinner_rows
    spec = load_scenario("oracle-pins-fail").workload.pins_fail
    rows = {ld.name: r for ld, r in zip(spec.load_list(), pinner_rows(spec))}
    wake = int(spec.pin_wake_us * 1000)
    assert hold_jitter_ns(1000, 250) == 126_000  # usleep_range(H, H + H/8 + 1)
    assert hold_jitter_ns(20000, 100) == 10_000_000  # msleep: up to one jiffy more
    assert rows["t4"]["hold_ns"] == 1_000_000 + wake and rows["t4"]["gap_ns"] == 0
    assert rows["t1g9"]["gap_ns"] == 9_000_000 + wake
    assert rows["r4"]["pick"] == mz.PICK_FILL and rows["t4"]["pick"] == mz.PICK_CANDIDATES
    assert rows["lt4"]["longterm"] and not rows["t4"]["longterm"]
    assert all(r["start_ns"] == -1 for r in rows.values())


SMALL = """
[machine]
zones = { DMA32 = "128MiB" }
cpus = 2
thp = false
[[cma]]
size = "16MiB"
[workload.pins_fail]
leave = "12MiB"
headroom = "16MiB"
sizes_mib = [16]
loads = "t1:1:1000:0"
"""


def test_candidate_list_goes_stale_when_cma_alloc_migrates():
    """The candidate handles follow their data: after cma_alloc() migrated them out of CMA,
    a pick from the (unchanged) list lands outside CMA; a rescan finds none left in CMA."""
    from cmasim.gfp import GFP_HIGHUSER_MOVABLE
    from cmasim.mm import mmzone as mz
    from cmasim.mm.cma import cma_alloc
    from cmasim.mm.freelist import get_pageblock_type_bits
    from cmasim.policy import get_policy
    from cmasim.run import build_machine
    from cmasim.scenario import load_scenario_text
    from cmasim.workload.fill import drop_outside_cma, fill_anon, rescan_candidates
    from cmasim.workload.pinner import pick_candidate
    sc = load_scenario_text(SMALL, "small.toml")
    m = build_machine(sc, get_policy("linux-6.1"), 1)
    S, C = m.S, m.C
    fill_anon(S, C, (12 << 20) // 4096, GFP_HIGHUSER_MOVABLE, m.n_pages)
    assert drop_outside_cma(S, C, 4096) == 4096
    n = rescan_candidates(S, C)
    assert n > 1000 and C[mz.H_NCAND] == n
    picks = [pick_candidate(S, C) for _ in range(50)]
    assert all(p >= 0 and get_pageblock_type_bits(S, C, p) == mz.MIGRATE_CMA for p in picks)
    a = m.area("reserved")
    pfn, ret, _ = cma_alloc(m, a, a.count, 8)
    assert ret == 0
    picks = [pick_candidate(S, C) for _ in range(50)]
    assert all(p >= 0 and get_pageblock_type_bits(S, C, p) != mz.MIGRATE_CMA for p in picks)
    assert rescan_candidates(S, C) == 0
