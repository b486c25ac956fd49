"""The sweep driver: skip stored runs, hand the rest to an executor, stream rows to the store.

Resumable by construction: a run's identity is its `run_key` (a hash of the base scenario's
text, the run's overrides, the policy and the seed), the store is read for keys already done,
and only the others are run. Rows are written in batches as new files (`store.BatchWriter`), so
a driver killed at any moment loses at most the runs of the batch not yet written; those
are simply run again next time, and no run is stored twice. The driver holds the done keys and
one batch, never the stored rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cmasim.sweep.runner import COLUMN_TYPES, context_of, execute, warm_up
from cmasim.sweep.spec import Sweep
from cmasim.sweep.store import BatchWriter, Store


@dataclass
class SweepStatus:
    total: int  # runs in the spec
    stored: int  # of those, already in the store before this call
    ran: int = 0  # run by this call
    failed: int = 0  # of those, stored as failed
    wall_s: float = 0.0


def write_spec_record(sweep: Sweep, out: Path) -> None:
    """`DIR/sweeps/<spec_hash>.json`: what the sweep was (name, axes, policies, seeds), for later readers."""
    d = out / "sweeps"
    d.mkdir(parents=True, exist_ok=True)
    rec = {"name": sweep.name, "spec_hash": sweep.spec_hash, "scenario": sweep.scenario_name,
           "policies": sweep.policies, "seeds": sweep.seeds, "set": sweep.fixed_sets,
           "axes": {a: ax.model_dump(exclude_none=True) for a, ax in sweep.axes.items()},
           "points": len(sweep.points), "runs": len(sweep.tasks),
           "dropped": [{"point": p, "reason": r} for p, r in sweep.dropped],
           "summary": sweep.summary.model_dump()}
    f = d / f"{sweep.spec_hash}.json"
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
    tmp.replace(f)


def pending_tasks(sweep: Sweep, store: Store) -> tuple[list, int]:
    done = store.done_keys()
    todo = [t for t in sweep.tasks if t.run_key not in done]
    return todo, len(sweep.tasks) - len(todo)


def run_sweep(sweep: Sweep, out: str | Path, executor, progress: Callable[[int, int, int], None] | None = None,
              batch_rows: int = 64, batch_s: float = 2.0) -> SweepStatus:
    """Run every task of `sweep` not yet in the store at `out`; `progress(done, total, failed)` as rows arrive."""
    out = Path(out)
    store = Store(out)
    write_spec_record(sweep, out)
    todo, stored = pending_tasks(sweep, store)
    st = SweepStatus(total=len(sweep.tasks), stored=stored)
    t0 = time.perf_counter()
    if progress:
        progress(stored, st.total, 0)
    writer = BatchWriter(store, batch_rows, batch_s, COLUMN_TYPES)
    try:
        for row in executor.run(context_of(sweep), todo):
            writer.add(row)
            st.ran += 1
            st.failed += row["status"] != "ok"
            if progress:
                progress(stored + st.ran, st.total, st.failed)
    finally:
        writer.flush()  # also on Ctrl-C: finished runs are kept
    st.wall_s = time.perf_counter() - t0
    return st


@dataclass
class Estimate:
    runs: int
    todo: int
    calib_runs: int
    calib_s_per_run: float
    warm_s: float
    workers: int

    @property
    def seconds(self) -> float:
        return self.todo * self.calib_s_per_run / max(1, self.workers)


def calibrate(sweep: Sweep, out: str | Path | None, workers: int, n: int = 2) -> Estimate:
    """Time up to `n` runs in this process (first and last task: the axes' extremes) after a warm-up
    (compiling or loading the core, timed apart); nothing is stored."""
    todo = sweep.tasks
    if out is not None and (Path(out) / "results").is_dir():
        todo, _ = pending_tasks(sweep, Store(out))
    t0 = time.perf_counter()
    warm_up(sweep.policies[:1])
    warm = time.perf_counter() - t0
    picks = [sweep.tasks[0], sweep.tasks[-1]][:n] if len(sweep.tasks) > 1 else sweep.tasks[:1]
    ctx = context_of(sweep)
    t1 = time.perf_counter()
    for t in picks:
        execute(ctx, t)
    per = (time.perf_counter() - t1) / len(picks)
    return Estimate(len(sweep.tasks), len(todo), len(picks), per, warm, workers)
