"""cmasim.sweep without Ray: spec parsing and its errors, the store's exactly-once resume,
failed runs, the summary's boundary arithmetic and the `sweep` / `query` commands."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sweep_helpers import strip_volatile, write_tiny

from cmasim import cli
from cmasim.sweep import driver, runner, summary
from cmasim.sweep.executor import LocalExecutor, check_address, make_executor
from cmasim.sweep.spec import SweepError, load_spec, parse_spec
from cmasim.sweep.store import Store


# --- spec -------------------------------------------------------------------------------------
def test_grid_product_with_where_filter(tmp_path):
    spec = write_tiny(tmp_path, seeds=2, threads="[1, 4, 16]",
                      extra='[[where]]\ndrop = "size > 4 and threads > 8"\nreason = "too big"\n')
    sw = load_spec(str(spec))
    assert [(p["threads"], p["size"]) for p in sw.points] == [(1, 1), (1, 6), (4, 1), (4, 6), (16, 1)]
    assert sw.dropped == [({"threads": 16, "size": 6}, "too big")]
    assert len(sw.tasks) == 5 * 2 * 2
    assert sw.seeds == [1, 2]  # scenario seed + 0..1
    assert len({t.run_key for t in sw.tasks}) == len(sw.tasks)
    t = sw.tasks[4]  # point 1 (each point: 2 policies × 2 seeds)
    assert t.sets == ("workload.pinner.0.threads=1", "workload.device.0.size_mib=[6]")
    # The key depends on the run, not on the spec's name: the same run in another spec is the same run.
    sw2 = parse_spec(spec.read_text().replace('name = "tiny"', 'name = "other"'), "x", tmp_path)
    assert {t.run_key for t in sw2.tasks} == {t.run_key for t in sw.tasks}


def test_linspace_logspace_and_latin_hypercube(tmp_path):
    write_tiny(tmp_path)
    text = """scenario = "tiny.toml"
policies = ["linux-6.18"]
seeds = [3]
[axes.threads]
key = "workload.pinner.0.threads"
logspace = [1, 64, 4]
integer = true
[axes.hold]
key = "workload.pinner.0.hold_us"
linspace = [10, 40, 4]
[axes.gap]
key = "workload.pinner.0.gap_us"
uniform = [0, 100]
[sample]
method = "lhs"
n = 3
seed = 7
"""
    sw = parse_spec(text, "s.toml", tmp_path)
    assert sorted({p["threads"] for p in sw.points}) == [1, 4, 16, 64]
    assert sorted({p["hold"] for p in sw.points}) == [10.0, 20.0, 30.0, 40.0]
    gaps = sorted({p["gap"] for p in sw.points})
    assert len(gaps) == 3 and all(0 <= g <= 100 for g in gaps)
    # Latin hypercube: one sample in each third of the range.
    assert sorted(int(g // (100 / 3)) for g in gaps) == [0, 1, 2]
    assert len(sw.points) == 4 * 4 * 3
    assert [p["gap"] for p in parse_spec(text, "s.toml", tmp_path).points] == [p["gap"] for p in sw.points]


@pytest.mark.parametrize("edit, message", [
    (lambda s: "bogus = 1\n" + s, "spec.toml: bogus: unknown key"),
    (lambda s: s.replace("workload.pinner.0.threads", "workload.pinner.0.thread"),
     "axes.threads (workload.pinner.0.thread = 1): tiny.toml: workload.pinner.0.thread: unknown key"),
    (lambda s: s.replace("values = [1, 8]", "values = [1, 0]"), "workload.pinner.0.threads = 0"),
    (lambda s: s.replace("values = [1, 8]", "values = []"), "axes.threads: Value error, values: empty list"),
    (lambda s: s + '[[where]]\ndrop = "threads > 0"\nreason = "all of them"\n',
     "the sweep has no runs left: every point is dropped (all of them)"),
    (lambda s: s + '[[where]]\ndrop = "thread > 0"\nreason = "typo"\n', "where[0].drop: 'thread > 0'"),
    (lambda s: s.replace('"linux-6.18",', '"linux-9.9",'), "policies: unknown policy"),
    (lambda s: s.replace('scenario = "tiny.toml"', 'scenario = "nope.toml"'), "scenario: 'nope.toml'"),
    (lambda s: s.replace("values = [1, 6]", "values = [1, 12]"),
     "size_mib: 12.0 MiB is larger than area 'reserved'"),
    (lambda s: s.replace('by = ["size"]', 'by = ["sizes"]'), "summary: 'sizes' is not an axis"),
])
def test_bad_specs_name_file_and_key(tmp_path, edit, message):
    spec = write_tiny(tmp_path)
    spec.write_text(edit(spec.read_text()))
    with pytest.raises(SweepError) as e:
        load_spec(str(spec))
    assert message in str(e.value)
    assert str(spec) in str(e.value)
    assert "\n" not in str(e.value)


def test_cli_bad_spec_is_one_line_and_nonzero(tmp_path, capsys):
    spec = write_tiny(tmp_path)
    spec.write_text("bogus = 1\n" + spec.read_text())
    assert cli.main(["sweep", str(spec), "--local", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bogus: unknown key" in err
    assert not (tmp_path / "o").exists()  # nothing ran, nothing written


def test_unreachable_address_fails_before_any_run(tmp_path, capsys):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(SweepError, match=f"--address ray://127.0.0.1:{port}: cannot reach"):
        check_address(f"ray://127.0.0.1:{port}")
    spec = write_tiny(tmp_path)
    assert cli.main(["sweep", str(spec), "--address", f"127.0.0.1:{port}", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "cannot reach a Ray cluster" in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "results").exists()
    with pytest.raises(SweepError, match="--workers"):
        make_executor(None, -1, False)
    with pytest.raises(SweepError, match="--workers: sets the size of a local Ray instance"):
        make_executor(f"127.0.0.1:{port}", 2, False)


# --- store and resume -------------------------------------------------------------------------
class _StopAfter(LocalExecutor):
    """A local executor that dies (like a killed driver) after n runs."""

    def __init__(self, n):
        self.n = n

    def run(self, ctx, tasks):
        for i, row in enumerate(super().run(ctx, tasks)):
            if i == self.n:
                raise KeyboardInterrupt
            yield row


def test_store_resume_exactly_once(tmp_path):
    spec = write_tiny(tmp_path)
    sw = load_spec(str(spec))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        driver.run_sweep(sw, out, _StopAfter(3), batch_rows=2)
    store = Store(out)
    assert store.count() == 3  # the finished runs were flushed on the way out
    (store.dir / ".part-x.parquet.tmp").write_text("half a file")  # as a kill mid-write would leave
    st = driver.run_sweep(sw, out, LocalExecutor(), batch_rows=2)
    assert (st.total, st.stored, st.ran, st.failed) == (8, 3, 5, 0)
    store = Store(out)
    assert not list(store.dir.glob(".*.tmp"))
    cols, rows = store.query("SELECT run_key, count(*) FROM runs GROUP BY run_key")
    assert sorted(k for k, _ in rows) == sorted(t.run_key for t in sw.tasks)
    assert all(n == 1 for _, n in rows)
    st = driver.run_sweep(sw, out, LocalExecutor())
    assert (st.stored, st.ran) == (8, 0)
    assert store.count() == 8
    # Same task -> same row (but for wall time), first time or after resume.
    cols, rows = store.query("SELECT * FROM runs WHERE status = 'ok' ORDER BY run_key LIMIT 1")
    stored = dict(zip(cols, rows[0]))
    task = next(t for t in sw.tasks if t.run_key == stored["run_key"])
    fresh = runner.execute(runner.context_of(sw), task)
    a, b = strip_volatile(stored), strip_volatile(fresh)
    assert {k: v for k, v in a.items() if k in b} == b
    rec = json.loads((out / "sweeps" / f"{sw.spec_hash}.json").read_text())
    assert rec["runs"] == 8 and rec["axes"]["threads"]["key"] == "workload.pinner.0.threads"
    assert rec["summary"]["metric"] == sw.summary.metric  # the report draws the summary's boundary from it


def test_failed_run_is_stored_with_error_and_seed(tmp_path):
    sw = load_spec(str(write_tiny(tmp_path)))
    ctx = runner.context_of(sw)
    bad = runner.RunContext(ctx.spec_hash, ctx.spec_name, ctx.scenario_name,
                            ctx.scenario_text.replace('size = "8MiB"', 'size = "7MiB"'), "tiny")
    rows = [runner.execute(bad, sw.tasks[0]), runner.execute(ctx, sw.tasks[1])]
    assert rows[0]["status"] == "failed" and rows[0]["seed"] == sw.tasks[0].seed
    assert rows[0]["error"].startswith("ScenarioError: ")
    assert rows[1]["status"] == "ok"
    store = Store(tmp_path / "o")
    store.append(rows)
    cols, got = store.query("SELECT status, seed, error IS NULL, cma_success_rate IS NULL FROM runs ORDER BY status")
    assert got == [("failed", sw.tasks[0].seed, False, True), ("ok", sw.tasks[1].seed, True, False)]


def test_query_command_table_csv_json(tmp_path, capsys):
    spec = write_tiny(tmp_path)
    out = tmp_path / "out"
    assert cli.main(["sweep", str(spec), "--local", "--quiet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "8 runs (4 points × 2 policies × 1 seeds)" in text
    assert (out / "summary-tiny.md").exists()
    sql = "SELECT policy, threads, count(*) AS n FROM runs GROUP BY ALL ORDER BY ALL"
    assert cli.main(["query", str(out), sql, "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "policy,threads,n" and lines[1] == "linux-6.18,1,2" and len(lines) == 5
    assert cli.main(["query", str(out), sql, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0] == {"policy": "linux-6.18", "threads": 1, "n": 2}
    assert cli.main(["query", str(out), "SELECT nope FROM runs"]) == 2
    assert "query: " in capsys.readouterr().err
    assert cli.main(["query", str(tmp_path / "none"), "SELECT 1"]) == 2
    # A rerun of a finished sweep runs nothing and still prints the summary.
    assert cli.main(["sweep", str(spec), "--local", "--quiet", "--out", str(out)]) == 0
    assert "8 already stored, 0 run now" in capsys.readouterr().out


# --- summary ------------------------------------------------------------------------------------
def test_boundary_and_bootstrap():
    xs = [1, 2, 4, 8]
    y = np.array([[1.0, 1.0, 0.9, 0.2], [1.0, 0.98, 0.7, 0.1], [1.0, 1.0, 1.0, 0.6]])
    assert summary.boundary_of(xs, y, 0.99) == 4  # seed-mean at x=2 is 0.993, at 4 it is 0.867
    assert summary.boundary_of(xs, y, 0.5) == 8
    assert summary.boundary_of(xs, y, 0.05) == math.inf
    lo, hi = summary.bootstrap_interval(xs, y, 0.99, 500)
    assert (lo, hi) == (2, 8)  # 2: seed 2 drawn twice or more; 8: seed 3 alone (p = 1/27 > 2.5%)
    assert summary.bootstrap_interval(xs, y[:1], 0.99, 500) is None
    assert summary.bootstrap_interval(xs, y, 0.99, 500) == (lo, hi)  # seeded


def test_builtin_sweeps_load():
    from cmasim.sweep.spec import builtin_sweeps

    names = builtin_sweeps()
    assert {"pins-boundary", "android-cma-pressure", "thp-theft"} <= set(names)
    for n in names:
        sw = load_spec(n)
        assert sw.tasks and sw.summary.axis in sw.axes


def test_dry_run_counts_and_estimates(tmp_path, capsys):
    spec = write_tiny(tmp_path)
    assert cli.main(["sweep", str(spec), "--dry-run", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "4 points × 2 policies × 1 seeds = 8 runs; 0 already stored" in out
    assert "calibration: " in out and "estimate for 8 runs on" in out
    assert not (tmp_path / "o").exists()  # a dry run stores nothing


def test_query_reads_without_creating(tmp_path, capsys):
    """`cmasim query` on a folder without runs says so and leaves no results/ folder behind."""
    from cmasim.cli import main

    (tmp_path / "q").mkdir()
    assert main(["query", str(tmp_path / "q"), "SELECT 1"]) != 0
    assert "no stored runs" in capsys.readouterr().err
    assert list((tmp_path / "q").iterdir()) == []
