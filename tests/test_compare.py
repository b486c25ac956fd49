"""`cmasim compare`: per-run numbers, CI and Welch arithmetic, significance marks, determinism.

The end-to-end tests run a tiny scenario (32 MiB, an 8 MiB CMA area, 10 ms of churn, a device
making small cma_alloc() calls) interpreted, 2 policies x 2 seeds, in-process (jobs=1); one test
checks that a fork pool of 2 gives the same files.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from cmasim import compare as C
from cmasim.policy import UnknownPolicy
from cmasim.scenario import ScenarioError

TINY = """\
description = "compare test: tiny machine, churn and a device making small cma_alloc() calls"
seed = 7
[machine]
memory = "32MiB"
cpus = 2
[[cma]]
name = "reserved"
size = "8MiB"
[workload]
duration_s = 0.01
[workload.churn]
events = 10000
target_usage = 0.7
[[workload.device]]
area = "reserved"
size_mib = [0.25, 1]
interval_ms = 2
hold_ms = 1
"""
POLICIES = ["linux-6.18", "linux-6.1"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    sc = d / "tiny.toml"
    sc.write_text(TINY)
    out = d / "out"
    calls = []
    rep = C.compare(str(sc), POLICIES, 2, [], out, jobs=1, progress=lambda *a: calls.append(a))
    return SimpleNamespace(dir=d, scenario=sc, out=out, report=rep, calls=calls)


def _run_metrics(out: Path, policy: str, k: int) -> dict:
    return json.loads((out / "runs" / policy / f"seed{7 + k}" / "metrics.json").read_text())  # named by seed


def test_files_and_per_run_numbers(tiny):
    out, rep = tiny.out, tiny.report
    for f in ("compare.md", "compare.csv", "compare.json"):
        assert (out / f).is_file()
    assert json.loads((out / "compare.json").read_text()) == rep
    assert rep["seeds"] == [7, 8] and rep["baseline"] == "linux-6.18"
    assert list(rep["metrics"]) == list(C.DEFAULT_METRICS)
    assert [(r["policy"], r["seed"], r["dir"]) for r in rep["runs"]] == [
        (p, 7 + k, f"runs/{p}/seed{7 + k}") for p in POLICIES for k in range(2)]
    for p in POLICIES:
        runs = [_run_metrics(out, p, k) for k in range(2)]
        assert [m["seed"] for m in runs] == [7, 8] and all(m["policy"] == p for m in runs)
        # Recomputed by hand from metrics.json (one CMA area).
        areas = [m["cma"]["reserved"] for m in runs]
        assert all(a["requests"] > 0 for a in areas), "the device must make cma_alloc() calls"
        expect = {
            "cma_success_rate": [a["success"] / a["requests"] for a in areas],
            "cma_busy_retries_per_request": [a["busy_retries"] / a["requests"] for a in areas],
            "cma_latency_p50_ms": [a["latency"]["p50_ms"] if a["success"] else None for a in areas],
            "cma_latency_p99_ms": [a["latency"]["p99_ms"] if a["success"] else None for a in areas],
            "cma_pages_migrated": [a["pages_migrated"] for a in areas],
            "pcp_hit_rate": [m["pcp"]["hit_rate"] for m in runs],
            "zone_lock_per_1000_allocs": [m["pcp"]["zone_lock_per_1000_allocs"] for m in runs],
            "alloc_fail": [m["counters"]["alloc_fail"] for m in runs],
            "pgmigrate_success": [m["vmstat"]["pgmigrate_success"] for m in runs],
            "compact_stall": [m["vmstat"]["compact_stall"] for m in runs],
            "oom_kill": [m["vmstat"]["oom_kill"] for m in runs],
            "cma_to_non_cma_alloc": [m["counters"].get("cma_to_non_cma_alloc", 0) for m in runs],
            "gfp_cma_thp_no_cma": [m["counters"].get("gfp_cma_thp_no_cma", 0) for m in runs],
        }
        for name, vals in expect.items():
            st = rep["metrics"][name]["policies"][p]
            assert st["values"] == pytest.approx(vals), name
            defined = [v for v in vals if v is not None]
            assert st["n"] == len(defined)
            if defined and name == "cma_success_rate":  # a rate: the proportion pooled over the runs
                assert st["mean"] == pytest.approx(sum(a["success"] for a in areas) / sum(a["requests"] for a in areas))
            elif defined:
                assert st["mean"] == pytest.approx(sum(defined) / len(defined))
            if st["ci_low"] is not None:
                assert 0 <= st["ci_low"] <= st["mean"] <= st["ci_high"], name
    # The CSV carries the same numbers, one line per (metric, policy).
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert list(rows[0]) == ["metric", "policy", "mean", "ci_low", "ci_high", "n", "significant_vs_baseline",
                             "p_value"]
    assert len(rows) == len(C.DEFAULT_METRICS) * len(POLICIES)
    for row in rows:
        st = rep["metrics"][row["metric"]]["policies"][row["policy"]]
        assert int(row["n"]) == st["n"]
        for key in ("mean", "ci_low", "ci_high", "p_value"):
            assert (row[key] == "") if st[key] is None else float(row[key]) == st[key]
        sig = st["significant_vs_baseline"]
        assert row["significant_vs_baseline"] == ("" if sig is None else str(sig).lower())
        if row["policy"] == "linux-6.18":
            assert row["significant_vs_baseline"] == ""
    md = (out / "compare.md").read_text()
    assert "| metric | linux-6.18 | linux-6.1 |" in md and "Welch" in md
    assert f"--scenario {tiny.scenario.name} --policy linux-6.18 --policy linux-6.1 --seeds 2" in md
    assert str(tiny.dir) not in md + (out / "compare.json").read_text()  # no absolute paths
    assert tiny.calls[0] == (0, 4, "starting") and tiny.calls[-1][:2] == (4, 4)


def test_deterministic(tiny, tmp_path):
    C.compare(str(tiny.scenario), POLICIES, 2, [], tmp_path / "again", jobs=1)
    for f in ("compare.md", "compare.csv", "compare.json"):
        assert (tmp_path / "again" / f).read_bytes() == (tiny.out / f).read_bytes(), f


def test_fork_pool_gives_the_same_files(tiny, tmp_path):
    C.compare(str(tiny.scenario), POLICIES, 2, [], tmp_path / "pool", jobs=2)
    for f in ("compare.md", "compare.csv", "compare.json"):
        assert (tmp_path / "pool" / f).read_bytes() == (tiny.out / f).read_bytes(), f


def test_ci_math_by_hand():
    from cmasim import stats

    # Wilson score interval, 8 of 10: p = 0.8, z = 1.959964; centre (0.8 + z²/20) / (1 + z²/10),
    # half-width z·sqrt(0.016 + z²/400) / (1 + z²/10) -> (0.4902, 0.9433) as in published tables.
    lo, hi = stats.wilson(8, 10)
    assert (lo, hi) == pytest.approx((0.490162, 0.943318), abs=1e-5)
    assert stats.wilson(0, 5)[0] == 0.0 and stats.wilson(5, 5)[1] == 1.0
    # Exact Poisson: 0 events in 3 runs -> upper bound chi2(0.975, 2)/2 / 3 = 3.6889 / 3.
    assert stats.poisson_mean(0, 3) == pytest.approx((0.0, 3.688879 / 3), rel=1e-6)
    # 10 events in 2 runs: Garwood (4.7954, 18.3904) / 2.
    assert stats.poisson_mean(10, 2) == pytest.approx((4.795389 / 2, 18.390356 / 2), rel=1e-6)
    # A rate's mean is pooled; its interval is Wilson of the pooled counts, even with one run.
    st = C.summarize([0.5, 1.0], kind="rate", parts=[(1, 2), (8, 8)])
    assert st["mean"] == pytest.approx(9 / 10) and (st["ci_low"], st["ci_high"]) == pytest.approx(stats.wilson(9, 10))
    assert C.summarize([0.8], kind="rate", parts=[(8, 10)])["ci_low"] == pytest.approx(0.490162, abs=1e-5)
    # Counts: never below zero, at least as wide as the Poisson interval, and wider when runs disagree.
    few = C.summarize([0.0, 0.0, 1.0], kind="count")
    assert few["ci_low"] == 0.0 and few["ci_high"] >= stats.poisson_mean(1, 3)[1]
    spread = C.summarize([0.0, 0.0, 3000.0], kind="count")
    assert spread["ci_low"] >= 0 and spread["ci_high"] > stats.poisson_mean(3000, 3)[1]
    # Other values: bootstrap of the mean, inside the observed range, deterministic.
    st = C.summarize([1.0, 2.0, 3.0, 4.0])
    assert st["n"] == 4 and st["mean"] == 2.5 and st["sd"] == pytest.approx(math.sqrt(5 / 3))
    assert 1.0 <= st["ci_low"] < 2.5 < st["ci_high"] <= 4.0 and st == C.summarize([1.0, 2.0, 3.0, 4.0])
    assert C.summarize([5.0, 5.0, 5.0])["half_width"] == 0.0
    # The old Student-t interval of these latencies went below zero; this one cannot.
    assert C.summarize([0.1, 0.1, 9.0])["ci_low"] >= 0.1
    one = C.summarize([3.0])
    assert one["mean"] == 3.0 and one["n"] == 1 and one["half_width"] is None and one["ci_low"] is None
    assert C.summarize([])["mean"] is None


def test_welch_by_hand():
    a, b = [1.0, 2.0, 3.0, 4.0], [3.0, 5.0, 7.0, 9.0, 11.0]
    sa, sb = (5 / 3) / 4, 10 / 5  # variance / n
    t = (2.5 - 7) / math.sqrt(sa + sb)
    df = (sa + sb) ** 2 / (sa**2 / 3 + sb**2 / 4)
    assert t == pytest.approx(-2.894704, rel=1e-6) and df == pytest.approx(5.520788, rel=1e-6)
    from scipy import stats

    p = C.welch_p(a, b)
    assert p == pytest.approx(2 * stats.t.sf(abs(t), df))
    assert p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert 0.02 < p < 0.04
    assert C.significance(a, b) == (p, True)
    # Overlapping noise: not significant.
    p2, sig2 = C.significance([10.0, 10.5, 9.5], [10.2, 9.8, 10.6])
    assert p2 > 0.5 and sig2 is False
    # Degenerate and untestable cases.
    assert C.significance([1.0, 1.0], [1.0, 1.0]) == (1.0, False)
    assert C.significance([1.0, 1.0], [2.0, 2.0]) == (0.0, True)
    assert C.significance([1.0], [2.0, 3.0]) == (None, None)


def _fake_report(values: dict[str, list[float]], metrics=("pcp_hit_rate", "alloc_fail")):
    """_build_report on hand-made metrics dicts: pcp hit rate per policy per seed, alloc_fail = 0."""
    pols = list(values)
    seeds = len(values[pols[0]])
    results = {(pi, k): {"seed": 1 + k, "pcp": {"hit_rate": values[p][k]}, "counters": {}, "cma": {}}
               for pi, p in enumerate(pols) for k in range(seeds)}
    sc = SimpleNamespace(name="fake", seed=1, description="hand-made")
    run_dir = {(pi, k): Path("runs") / p / f"seed{k}" for pi, p in enumerate(pols) for k in range(seeds)}
    return C._build_report(sc, "fake", pols, seeds, [], None, C.resolve_metrics(list(metrics)), results, run_dir)


def test_significance_marking():
    r = _fake_report({"base": [0.90, 0.91, 0.89], "same": [0.905, 0.895, 0.90], "worse": [0.50, 0.52, 0.51]})
    hit = r["metrics"]["pcp_hit_rate"]["policies"]
    assert hit["base"]["significant_vs_baseline"] is None
    assert hit["same"]["significant_vs_baseline"] is False and hit["worse"]["significant_vs_baseline"] is True
    md = C.render_markdown(r)
    row = next(line for line in md.splitlines() if line.startswith("| per-CPU list hit rate"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    from cmasim.stats import bootstrap_mean

    lo, hi = bootstrap_mean([0.90, 0.91, 0.89])
    assert cells[0] == f"0.900 [{lo:.3f}, {hi:.3f}]"  # a value metric: bootstrap interval of the mean
    assert cells[1].endswith(C.NOT_SIGNIFICANT) and not cells[2].endswith(C.NOT_SIGNIFICANT)
    assert not cells[0].endswith(C.NOT_SIGNIFICANT)
    # alloc_fail is 0 everywhere: equal deterministic values are not a difference.
    fail_row = next(line for line in md.splitlines() if line.startswith("| allocation failures"))
    assert fail_row.count(C.NOT_SIGNIFICANT) == 2
    # CMA metrics without areas are undefined, shown as a dash.
    r2 = _fake_report({"a": [0.9, 0.8], "b": [0.7, 0.6]}, metrics=("cma_success_rate", "pcp_hit_rate"))
    assert r2["metrics"]["cma_success_rate"]["policies"]["a"]["n"] == 0
    assert "| cma_alloc success rate | — | — |" in C.render_markdown(r2)


def test_one_seed_marks_nothing():
    r = _fake_report({"base": [0.9], "other": [0.5]})
    st = r["metrics"]["pcp_hit_rate"]["policies"]["other"]
    assert st["n"] == 1 and st["half_width"] is None and st["significant_vs_baseline"] is None
    md = C.render_markdown(r)
    assert "0.900 (n=1)" in md and "0.500 (n=1)" in md and md.count(C.NOT_SIGNIFICANT) == 0
    assert "no significance test" in md
    assert all(row["significant_vs_baseline"] == "" for row in csv.DictReader(C.render_csv(r).splitlines()))


def test_metric_selection():
    ms = C.resolve_metrics(["pcp_hit_rate", "counters.extfrag", "cma.reserved.fail.busy", "workload.pinners.0.pins"])
    m = {"pcp": {"hit_rate": 0.5}, "counters": {"extfrag": 3}, "cma": {"reserved": {"fail": {"busy": 2}}},
         "workload": {"pinners": [{"pins": 9}]}}
    assert [x.extract(m) for x in ms] == [0.5, 3, 2, 9]
    assert C.resolve_metrics(["counters.nothing_here"])[0].extract(m) is None
    # Counters other developers add may be missing from older runs: they read as 0.
    assert C.METRICS["cma_to_non_cma_alloc"].extract({"counters": {}}) == 0
    # Two areas: success-weighted latency, summed rates.
    two = {"cma": {"a": {"requests": 4, "success": 3, "busy_retries": 2, "latency": {"p50_ms": 1.0}},
                   "b": {"requests": 2, "success": 1, "busy_retries": 0, "latency": {"p50_ms": 5.0}}}}
    assert C.METRICS["cma_success_rate"].extract(two) == 4 / 6
    assert C.METRICS["cma_busy_retries_per_request"].extract(two) == 2 / 6
    assert C.METRICS["cma_latency_p50_ms"].extract(two) == (3 * 1.0 + 1 * 5.0) / 4
    with pytest.raises(C.CompareError, match="unknown metric"):
        C.resolve_metrics(["no_such_metric"])


def test_bad_input(tiny, tmp_path):
    with pytest.raises(UnknownPolicy, match="unknown policy"):
        C.compare(str(tiny.scenario), ["linux-6.18", "no-such-policy"], 1, [], tmp_path, jobs=1)
    with pytest.raises(ScenarioError, match="built-in"):
        C.compare("no-such-scenario", POLICIES, 1, [], tmp_path, jobs=1)
    with pytest.raises(ScenarioError):
        C.compare(str(tiny.scenario), POLICIES, 1, ["machine.cpus=0"], tmp_path, jobs=1)
    with pytest.raises(C.CompareError, match="twice"):
        C.compare(str(tiny.scenario), ["linux-6.1", "linux-6.1"], 1, [], tmp_path, jobs=1)
    with pytest.raises(C.CompareError, match="seeds"):
        C.compare(str(tiny.scenario), POLICIES, 0, [], tmp_path, jobs=1)
    assert not list(tmp_path.iterdir()), "nothing is written before the arguments are checked"


def _cli(argv):
    p = argparse.ArgumentParser(prog="cmasim")
    C.add_parser(p.add_subparsers(dest="cmd", required=True))
    a = p.parse_args(argv)
    return a.fn(a)


def test_cli(tiny, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = _cli(["compare", "--scenario", str(tiny.scenario), "--policy", "linux-6.18", "--policy", "linux-6.1",
               "--seeds", "1", "--jobs", "1", "--quiet", "--out", str(out), "--set", "workload.duration_s=0.004",
               "--metric", "pcp_hit_rate", "--metric", "counters.extfrag"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "per-CPU list hit rate" in text and "counters.extfrag" in text
    r = json.loads((out / "compare.json").read_text())
    assert list(r["metrics"]) == ["pcp_hit_rate", "counters.extfrag"] and r["sets"] == ["workload.duration_s=0.004"]
    assert (out / "runs" / "linux-6.1" / "seed7" / "metrics.json").is_file()  # named by the seed it ran
    assert _cli(["compare", "--scenario", str(tiny.scenario), "--policy", "linux-6.18", "--quiet"]) == 2
    assert "at least two" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _cli(["compare", "--scenario", "x", "--policy", "a", "--policy", "b", "--seeds", "0"])


def test_reproduce_command_is_shell_quoted():
    r = {"scenario_arg": "my file.toml", "policies": ["linux-6.18", "linux-6.18+cma-retry"], "seeds": [1, 2],
         "sets": ["workload.device.0.size_mib=[30, 500]"], "metrics_arg": ["pcp_hit_rate"]}
    assert C.reproduce_command(r) == ("cmasim compare --scenario 'my file.toml' --policy linux-6.18 "
                                      "--policy linux-6.18+cma-retry --seeds 2 "
                                      "--set 'workload.device.0.size_mib=[30, 500]' --metric pcp_hit_rate")
