"""One sweep run inside a worker: (scenario text, overrides, policy, seed) -> one result row.

`execute` is what every executor calls, in-process or in a Ray worker. It never raises for a
failing run: the exception becomes a row with status "failed", its error text and the seed, and
the sweep goes on. A row holds the run's identity, its point (one column per axis), every
headline metric of `cmasim.compare.METRICS` (as DOUBLE, NULL where undefined), the /proc/vmstat
counters (`vmstat_<name>`, BIGINT), the wall time and the cmasim version. Everything except
`wall_s` and `finished_at` is a pure function of the task, so the same task gives the same row
on any executor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from cmasim import __version__
from cmasim.compare import METRICS
from cmasim.mm.vmstat import VMSTAT_ORDER
from cmasim.sweep.spec import RunTask

# Columns that vary between identical runs (left out of identical-results checks).
VOLATILE = ("wall_s", "finished_at")


# SQL types of the columns that may be NULL in a whole batch (all runs of it failed).
COLUMN_TYPES: dict[str, str] = {"error": "VARCHAR", "events": "BIGINT", "sim_time_s": "DOUBLE",
                                **{m: "DOUBLE" for m in METRICS}, **{f"vmstat_{k}": "BIGINT" for k in VMSTAT_ORDER}}


@dataclass(frozen=True)
class RunContext:
    """What every task of a sweep shares (sent once to each worker)."""

    spec_hash: str
    spec_name: str
    scenario_name: str
    scenario_text: str
    scenario_source: str


def context_of(sweep) -> RunContext:
    return RunContext(sweep.spec_hash, sweep.name, sweep.scenario_name, sweep.scenario_text,
                      f"{sweep.scenario_name} (sweep {sweep.name})")


def base_row(ctx: RunContext, task: RunTask) -> dict[str, Any]:
    import json

    row: dict[str, Any] = {
        "run_key": task.run_key, "spec_hash": ctx.spec_hash, "spec_name": ctx.spec_name,
        "scenario": ctx.scenario_name, "point_id": task.point_id,
        "point": json.dumps(dict(task.point), sort_keys=True), "policy": task.policy, "seed": task.seed,
    }
    row.update(dict(task.point))
    return row


def metric_columns(metrics: dict) -> dict[str, Any]:
    """Headline metrics (float or None) and vmstat counters of one run's metrics dict."""
    out: dict[str, Any] = {"events": int(metrics.get("events", 0)), "sim_time_s": float(metrics.get("sim_time_s", 0))}
    for name, m in METRICS.items():
        v = m.extract(metrics)
        out[name] = None if v is None else float(v)
    vm = metrics.get("vmstat", {})
    for k in VMSTAT_ORDER:
        out[f"vmstat_{k}"] = int(vm[k]) if k in vm else None
    return out


def failed_row(ctx: RunContext, task: RunTask, error: str, wall_s: float = 0.0) -> dict[str, Any]:
    row = base_row(ctx, task)
    row.update({c: None for c in COLUMN_TYPES})
    row.update(status="failed", error=error[:2000], wall_s=round(wall_s, 6), cmasim_version=__version__,
               finished_at=time.time())
    return row


def execute(ctx: RunContext, task: RunTask) -> dict[str, Any]:
    """Run one task; a row with status "ok", or "failed" with the exception's type and message."""
    from cmasim.policy import get_policy
    from cmasim.run import run_scenario
    from cmasim.scenario import load_scenario_text

    t0 = time.perf_counter()
    try:
        sc = load_scenario_text(ctx.scenario_text, ctx.scenario_source, ctx.scenario_name, list(task.sets))
        metrics = run_scenario(sc, get_policy(task.policy), task.seed)
    except Exception as e:  # noqa: BLE001 - a failing run is a result, not the end of the sweep
        return failed_row(ctx, task, f"{type(e).__name__}: {e}", time.perf_counter() - t0)
    row = base_row(ctx, task)
    row.update(status="ok", error=None)
    row.update(metric_columns(metrics))
    row.update(wall_s=round(time.perf_counter() - t0, 6), cmasim_version=__version__, finished_at=time.time())
    return row


def warm_up(policies: list[str]) -> None:
    """Compile (or load from numba's cache) the core in this process before the first real run."""
    from cmasim.policy import get_policy
    from cmasim.warmup import compile_core

    compile_core([get_policy(p) for p in policies])
