"""`cmasim sweep`, `cmasim sweeps` and `cmasim query`: the command-line side (the only code here that prints)."""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

# cmasim.sweep.spec (pydantic) and .store are imported by the commands that use them: building
# the parser must not cost every other command their imports (docs/performance.md, fixed start).

QUERY_EXAMPLES = {
    "failure rate by policy and pin rate":
        "SELECT policy, threads, round(1 - avg(cma_success_rate), 3) AS failure_rate, count(*) AS runs "
        "FROM runs WHERE status = 'ok' GROUP BY ALL ORDER BY policy, threads",
    "where does each fix stop helping":
        "WITH s AS (SELECT policy, threads, avg(cma_success_rate) AS ok FROM runs GROUP BY ALL), "
        "b AS (SELECT threads, ok AS base FROM s WHERE policy = 'linux-6.18') "
        "SELECT policy, max(threads) FILTER (WHERE ok - base > 0.01) AS helps_up_to_threads "
        "FROM s JOIN b USING (threads) WHERE policy <> 'linux-6.18' GROUP BY policy",
}


def _consoles():
    from rich.console import Console

    return Console(stderr=True), Console()


def _fail(err, msg: str) -> int:
    err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    return 2


def cmd_sweep(a) -> int:
    from cmasim.scenario import ScenarioError
    from cmasim.sweep.driver import calibrate, pending_tasks, run_sweep
    from cmasim.sweep.spec import SweepError, load_spec
    from cmasim.sweep.store import Store

    err, out = _consoles()
    try:
        sweep = load_spec(a.spec)
    except (SweepError, ScenarioError) as e:
        return _fail(err, str(e))
    out_dir = Path(a.out) if a.out else Path("results") / f"sweep-{sweep.name}"
    workers = 0 if a.local else a.workers
    if a.dry_run:
        return _dry_run(a, sweep, out_dir, workers, out, err, calibrate, pending_tasks, Store)
    from cmasim.sweep.executor import LocalExecutor, make_executor

    try:
        # Nothing left to run (a finished sweep run again): no executor to start, only the summary.
        nothing = (out_dir / "results").is_dir() and not pending_tasks(sweep, Store(out_dir))[0]
        ex = LocalExecutor() if nothing else make_executor(a.address, workers, a.local)
    except SweepError as e:
        return _fail(err, str(e))
    try:
        st = _run_with_progress(sweep, out_dir, ex, err, a.quiet, run_sweep, max(1, a.flush_every))
    except KeyboardInterrupt:
        return _fail(err, f"interrupted; finished runs are stored in {out_dir}/results/ (run the same command "
                          "again to resume)")
    finally:
        ex.close()
    out.print(f"{sweep.name}: {st.total} runs ({len(sweep.points)} points × {len(sweep.policies)} policies × "
              f"{len(sweep.seeds)} seeds); {st.stored} already stored, {st.ran} run now "
              f"({st.failed} failed) in {st.wall_s:.1f} s on {ex.name} ({ex.workers} workers)", highlight=False,
              soft_wrap=True)
    return _print_summary(sweep, Store(out_dir), out_dir, out, err)


def _run_with_progress(sweep, out_dir, ex, err, quiet, run_sweep, flush_every):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    cols = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} runs/s"), TextColumn("{task.fields[failed]}"),
            TextColumn("ETA"), TimeRemainingColumn())
    t0 = time.perf_counter()
    first: list[int] = []
    with Progress(*cols, console=err, disable=quiet, transient=False) as prog:
        task = prog.add_task(f"sweep {sweep.name}", total=len(sweep.tasks), rate="—", failed="")

        def cb(done: int, total: int, failed: int) -> None:
            if not first:
                first.append(done)
            dt = time.perf_counter() - t0
            rate = (done - first[0]) / dt if dt > 0 and done > first[0] else 0.0
            prog.update(task, completed=done, total=total, rate=f"{rate:.2f}" if rate else "—",
                        failed=f"{failed} failed" if failed else "")

        return run_sweep(sweep, out_dir, ex, progress=cb, batch_rows=flush_every)


def _dry_run(a, sweep, out_dir, workers, out, err, calibrate, pending_tasks, Store) -> int:
    import os

    from rich.table import Table

    t = Table(title=f"sweep {sweep.name} (dry run)")
    t.add_column("axis")
    t.add_column("key")
    t.add_column("values", overflow="fold")
    for name, ax in sweep.axes.items():
        vals = sorted({p[name] for p in sweep.points}, key=lambda v: (str(type(v)), v))
        shown = ", ".join(map(str, vals[:12])) + (f", … ({len(vals)} values)" if len(vals) > 12 else "")
        t.add_row(name, ax.key, shown)
    out.print(t)
    reasons: dict[str, int] = {}
    for _, r in sweep.dropped:
        reasons[r] = reasons.get(r, 0) + 1
    for r, n in reasons.items():
        out.print(f"dropped {n} points: {r}", highlight=False, soft_wrap=True)
    stored = 0
    if (out_dir / "results").is_dir():
        stored = pending_tasks(sweep, Store(out_dir))[1]
    n_workers = 1 if workers == 0 else (workers or os.cpu_count() or 1)
    out.print(f"{len(sweep.points)} points × {len(sweep.policies)} policies × {len(sweep.seeds)} seeds = "
              f"{len(sweep.tasks)} runs; {stored} already stored in {out_dir}", highlight=False, soft_wrap=True)
    if a.no_calibrate:
        return 0
    err.print("calibrating (compiling or loading the core, then timing up to 2 runs in this process) …")
    est = calibrate(sweep, out_dir, n_workers)
    out.print(f"calibration: {est.calib_s_per_run:.2f} s per run ({est.calib_runs} runs; core warm-up "
              f"{est.warm_s:.1f} s); estimate for {est.todo} runs on {n_workers} workers: "
              f"{_hms(est.seconds)} (+ start-up)", highlight=False, soft_wrap=True)
    return 0


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _print_summary(sweep, store, out_dir, out, err) -> int:
    from rich.table import Table

    from cmasim.sweep.store import StoreError
    from cmasim.sweep.summary import boundary_rows, ranking_rows, summarize, to_markdown

    try:
        s = summarize(sweep, store)
    except StoreError as e:
        return _fail(err, str(e))
    (out_dir / f"summary-{sweep.name}.md").write_text(to_markdown(s))
    t = Table(title=f"boundary: {'smallest' if s.scan == 'up' else 'largest'} {s.axis} where mean {s.metric} "
                    f"is {s.crosses} the threshold (95% bootstrap over seeds)")
    for c in ["policy", *s.by, "threshold", s.axis, "interval", "seeds"]:
        t.add_column(c)
    for r in boundary_rows(s):
        t.add_row(*r)
    out.print(t)
    if s.ranking:
        t = Table(title=f"fixes ranked by the shift of the {s.thresholds[0]:g} boundary vs {s.baseline}")
        for c in ["rank", "fix", "groups better/worse/all", "median shift", *s.costs]:
            t.add_column(c)
        for r in ranking_rows(s):
            t.add_row(*r)
        out.print(t)
    print(f"results: {out_dir}/results/*.parquet; summary: {out_dir}/summary-{sweep.name}.md; "
          f"query with: cmasim query {out_dir} \"SELECT ... FROM runs\"")
    return 0


def cmd_sweeps(a) -> int:
    from rich.table import Table

    from cmasim.sweep.spec import SweepError, builtin_sweeps, load_spec

    err, out = _consoles()
    t = Table(title="built-in sweeps (cmasim/sweeps/*.toml)")
    for c in ("name", "runs", "description"):
        t.add_column(c)
    for name in builtin_sweeps():
        try:
            sw = load_spec(name)
        except SweepError as e:
            return _fail(err, str(e))
        t.add_row(name, str(len(sw.tasks)), sw.description)
    out.print(t)
    return 0


def cmd_query(a) -> int:
    from rich.table import Table

    from cmasim.sweep.store import Store, StoreError

    err, out = _consoles()
    if not Path(a.dir).is_dir():
        return _fail(err, f"{a.dir}: no such directory")
    try:
        cols, rows = Store(a.dir).query(a.sql)
    except StoreError as e:
        return _fail(err, str(e))
    try:
        if a.csv:
            w = csv.writer(sys.stdout, lineterminator="\n")
            w.writerow(cols)
            w.writerows(rows)
            sys.stdout.flush()
            return 0
        if a.json:
            print(json.dumps([dict(zip(cols, r)) for r in rows], default=str, indent=1), flush=True)
            return 0
    except BrokenPipeError:  # piped into e.g. head: stop quietly (and keep Python's exit flush quiet too)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    t = Table()
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v)) for v in r])
    out.print(t)
    return 0


def add_parsers(sub) -> None:
    """Register `sweep`, `sweeps` and `query` on the CLI's sub-parsers."""
    s = sub.add_parser("sweep", help="run a sweep spec (scenario × policies × seeds × axes) on Ray; resumable")
    s.add_argument("spec", help="a sweep spec TOML file, or a built-in sweep name (see `cmasim sweeps`)")
    s.add_argument("--out", help="results directory (default results/sweep-<name>); rows go to OUT/results/*.parquet")
    s.add_argument("--address", help="join an existing Ray cluster: ray://HOST:PORT, HOST:PORT or auto "
                                     "(default: start a local Ray instance)")
    s.add_argument("--workers", type=int, metavar="N",
                   help="CPUs of the local Ray instance (default: all cores); 0 runs in this process")
    s.add_argument("--local", action="store_true", help="run in this process, one run after another (= --workers 0)")
    s.add_argument("--dry-run", action="store_true",
                   help="print the number of runs and a time estimate from a short calibration; run nothing")
    s.add_argument("--no-calibrate", action="store_true", help="with --dry-run: only count the runs")
    s.add_argument("--flush-every", type=int, default=64, metavar="N",
                   help="write a results file every N finished runs (and at least every 2 s); default 64")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_sweep)
    sub.add_parser("sweeps", help="list built-in sweeps").set_defaults(fn=cmd_sweeps)
    examples = "\n".join(f"  {k}:\n    {v}" for k, v in QUERY_EXAMPLES.items())
    q = sub.add_parser("query", help="DuckDB SQL over a sweep's stored runs (table `runs`)",
                       epilog=f"examples (pin sweep):\n{examples}", formatter_class=_raw_formatter())
    q.add_argument("dir", help="a sweep's results directory (the --out of `cmasim sweep`)")
    q.add_argument("sql", help="DuckDB SQL; the table is `runs` (one row per run)")
    fmt = q.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    fmt.add_argument("--json", action="store_true", help="print a JSON list of objects instead of a table")
    q.set_defaults(fn=cmd_query)


def _raw_formatter():
    import argparse

    return argparse.RawDescriptionHelpFormatter
