"""Sweep benchmarks: driver memory with a large store, and Ray's per-run overhead.

`driver_memory(n_points, out)`: a spec of `n_points` Latin-hypercube points × 2 policies × 5
seeds (n_points = 10,000 gives 100,000 runs) on a tiny scenario. An executor that returns a
copy of one real row per task (no simulation) feeds the real driver, store and summary: the
sweep is stored in batches as usual, then resumed (all 100,000 keys read back, nothing to
do) and summarised. Returns the peak RSS of this process and the time of each phase.

`overhead(n, workers)`: n runs of a tiny scenario (a few ms each, compiled) in-process and on
a local Ray instance with `workers` CPUs; the difference per run is Ray's overhead.

`throughput(workers)`: runs/s of a fixed 40-run spec (THROUGHPUT_SPEC), in-process or on a
local Ray instance with 1 or 2 CPUs.

Run as `python -m cmasim.sweep.bench memory|overhead|throughput ARGS` (this module's only
printing code).
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

TINY = """description = "sweep benchmark: tiny"
seed = 1
[machine]
memory = "32MiB"
cpus = 2
[[cma]]
name = "reserved"
size = "8MiB"
[workload]
duration_s = 0.002
[workload.churn]
events = 300
target_usage = 0.6
[[workload.device]]
area = "reserved"
size_mib = [2]
interval_ms = 1
hold_ms = 1
[[workload.pinner]]
threads = 1
hold_us = 50
gap_us = 20
"""

SPEC = """name = "bench"
scenario = "tiny.toml"
policies = ["linux-6.18", "linux-6.18+pin-pending-migration"]
seeds = {seeds}
[axes.threads]
key = "workload.pinner.0.threads"
uniform = [1, 64]
integer = true
[axes.hold]
key = "workload.pinner.0.hold_us"
loguniform = [10, 1000]
[sample]
n = {n}
seed = 1
"""


THROUGHPUT_SPEC = """name = "bench-throughput"
scenario = "thp-cma-theft"
policies = ["android", "android+rfc-thp-cma"]
seeds = 10
set = ["workload.churn.events=200000"]
[axes.gfp_cma]
key = "workload.churn.thp_gfp_cma"
values = [0.5, 1.0]
"""


def _spec(d: Path, n: int, seeds: int):
    from cmasim.sweep.spec import load_spec

    (d / "tiny.toml").write_text(TINY)
    (d / "spec.toml").write_text(SPEC.format(n=n, seeds=seeds))
    return load_spec(str(d / "spec.toml"))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _CopyExecutor:
    """Returns one real row per task, re-labelled (no simulation): load on the driver and store only."""

    name, workers = "copy", 1

    def __init__(self, template: dict):
        self.template = template

    def run(self, ctx, tasks):
        for t in tasks:
            row = dict(self.template)
            row.update(run_key=t.run_key, point_id=t.point_id, policy=t.policy, seed=t.seed, **dict(t.point))
            yield row


def driver_memory(n_points: int = 10_000, out: Path | None = None) -> dict:
    from cmasim.sweep import driver, runner
    from cmasim.sweep.store import Store
    from cmasim.sweep.summary import summarize

    d = Path(out or tempfile.mkdtemp(prefix="cmasim-sweep-bench-"))
    res: dict = {"rss_start_mib": round(_peak_rss_mib(), 1)}
    t0 = time.perf_counter()
    sw = _spec(d, n_points, 5)
    res.update(runs=len(sw.tasks), expand_s=round(time.perf_counter() - t0, 1))
    template = runner.execute(runner.context_of(sw), sw.tasks[0])
    t0 = time.perf_counter()
    driver.run_sweep(sw, d / "out", _CopyExecutor(template), batch_rows=500)
    res["store_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    st = driver.run_sweep(sw, d / "out", _CopyExecutor(template))
    res.update(resume_s=round(time.perf_counter() - t0, 1), resume_stored=st.stored, resume_ran=st.ran)
    t0 = time.perf_counter()
    summarize(sw, Store(d / "out"))
    res["summary_s"] = round(time.perf_counter() - t0, 1)
    res["stored_rows"] = Store(d / "out").count()
    res["files"] = len(Store(d / "out").files())
    res["peak_rss_mib"] = round(_peak_rss_mib(), 1)
    return res


def overhead(n: int = 200, workers: int = 1) -> dict:
    import os

    from cmasim.sweep import driver, runner
    from cmasim.sweep.executor import LocalExecutor, RayExecutor

    d = Path(tempfile.mkdtemp(prefix="cmasim-sweep-ovh-"))
    sw = _spec(d, max(1, n // 2), 1)
    res: dict = {"runs": len(sw.tasks), "jit": os.environ.get("CMASIM_JIT", "1")}
    runner.warm_up(sw.policies)
    t0 = time.perf_counter()
    driver.run_sweep(sw, d / "local", LocalExecutor())
    res["local_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    ex = RayExecutor(None, workers)
    res["ray_start_s"] = round(time.perf_counter() - t0, 1)
    try:
        t0 = time.perf_counter()
        list(ex.run(runner.context_of(sw), sw.tasks[:workers * 2]))  # each worker loads the core once
        res["ray_first_runs_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        driver.run_sweep(sw, d / "ray", ex)
        res["ray_s"] = round(time.perf_counter() - t0, 2)
    finally:
        ex.close()
    res["workers"] = workers
    res["local_ms_per_run"] = round(1000 * res["local_s"] / res["runs"], 1)
    res["ray_ms_per_run"] = round(1000 * res["ray_s"] / res["runs"] * workers, 1)
    res["ray_overhead_ms_per_run"] = round(res["ray_ms_per_run"] - res["local_ms_per_run"], 1)
    return res


def throughput(workers: int = 0) -> dict:
    """runs/s of THROUGHPUT_SPEC (40 runs of thp-cma-theft at 200,000 churn events, compiled):
    in-process (workers 0) or on a local Ray instance with `workers` CPUs; Ray's start-up and each
    worker's first load of the core are timed apart (the first 2 × workers runs)."""
    from cmasim.sweep import driver, runner
    from cmasim.sweep.executor import LocalExecutor, RayExecutor
    from cmasim.sweep.spec import parse_spec

    d = Path(tempfile.mkdtemp(prefix="cmasim-sweep-tp-"))
    sw = parse_spec(THROUGHPUT_SPEC, "bench-throughput")
    res: dict = {"runs": len(sw.tasks), "workers": workers}
    t0 = time.perf_counter()
    if workers == 0:
        runner.warm_up(sw.policies)
        ex = LocalExecutor()
    else:
        ex = RayExecutor(None, workers)
    res["start_s"] = round(time.perf_counter() - t0, 1)
    try:
        first = sw.tasks[:2 * max(1, workers)]
        t0 = time.perf_counter()
        list(ex.run(runner.context_of(sw), first))
        res["first_runs_s"] = round(time.perf_counter() - t0, 1)
        rest = dataclasses.replace(sw, tasks=sw.tasks[len(first):])
        t0 = time.perf_counter()
        driver.run_sweep(rest, d / "out", ex)
        wall = time.perf_counter() - t0
    finally:
        ex.close()
    res.update(timed_runs=len(rest.tasks), wall_s=round(wall, 1), runs_per_s=round(len(rest.tasks) / wall, 2))
    return res


if __name__ == "__main__":
    import json

    what = sys.argv[1] if len(sys.argv) > 1 else "memory"
    args = [int(x) for x in sys.argv[2:]]
    fn = {"memory": driver_memory, "overhead": overhead, "throughput": throughput}[what]
    print(json.dumps(fn(*args), indent=1))
