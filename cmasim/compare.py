"""`cmasim compare`: several policies on the same seeded scenario, with confidence intervals.

`compare()` runs every policy on the same seeds (scenario seed + k, k = 0..seeds-1), each run
through `cmasim.run.run_scenario` with its own output directory `<out>/runs/<policy>/seed<seed>`,
extracts the headline metrics (`METRICS`) from each run's metrics dict and writes, in `out`:

- `compare.md`: one row per metric, one column per policy, "mean [95% confidence interval]", a † where a policy does not differ significantly from the first policy
  (the baseline), and a footer saying how that was decided;
- `compare.csv`: long format, one line per (metric, policy);
- `compare.json`: the same plus every per-seed value and the list of runs.

The files hold no wall-clock times and no absolute paths, so the same command gives the same
bytes whatever the worker scheduling was. Only `cmd_compare` (the CLI side) prints.

Statistics. Per policy and metric, over the n seeds where the metric is defined: the mean and
a 95% confidence interval of the kind that suits the metric (`Metric.kind`, cmasim.stats): Wilson
for rates (the value shown is then the proportion pooled over the runs), exact Poisson joined with
the bootstrap for counts, the percentile bootstrap of the mean for other values; none leaves the
range the quantity can take. A policy differs significantly from the baseline when Welch's unequal-variance
t-test gives p < 0.05 (per cell, no correction for multiple comparisons). With n = 1 there is
no interval and no test ("n=1", nothing marked). When both samples have zero variance the test
degenerates: equal means count as not significant, different means as significant (the
metric is deterministic under both policies and differs). scipy.stats supplies the t
distribution; it is imported only when statistics are computed.

Parallel runs. Runs are independent, so they go to a `ProcessPoolExecutor` with
`jobs or os.cpu_count()` workers (capped at the number of runs; one worker = run in this
process, as most tests do). The compiled core takes ~100-170 s to compile cold and
~1 s to load from numba's on-disk cache in a fresh process, while a run of the built-in
`default` scenario takes ~0.4 s. So the parent first runs a tiny scenario that touches every
workload feature (`cmasim.warmup.compile_core`) under each requested policy, compiling or loading the
core once, and the workers are then created with the "fork" start method: they inherit the
compiled code and start at once. Measured on the 2-CPU development machine, `default`, 2
policies x 3 seeds, time inside compare(): warm cache, fork + warm-up 2.0-2.1 s, fork without
warm-up 2.2-2.3 s, spawn + warm-up 3.2 s, spawn without 5.9 s, one process 2.5 s; cold cache
(empty NUMBA_CACHE_DIR), fork + warm-up 168 s against 210 s for two workers compiling at
once. Spawn would also compile in every worker if numba's cache were unusable (read-only
install). Where "fork" is unavailable the platform default is used. The workers are forked
before any thread of ours exists (for "fork" the pool starts all workers before its manager
thread), and the CLI's progress display is refreshed by hand (no refresh thread).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shlex
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmasim.fmt import with_ci

CONFIDENCE = 0.95
ALPHA = 0.05
NOT_SIGNIFICANT = "†"
TEST_NAME = "Welch's t-test"


class CompareError(ValueError):
    """Bad arguments to compare() (policy list, seeds, metric names); the message says which."""


# --- headline metrics ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """A number extracted from one run's metrics dict (None: not defined in that run)."""

    name: str
    label: str
    extract: Callable[[dict], float | None]
    description: str
    kind: str = "value"  # "rate", "count" or "value": which interval suits it (cmasim.stats)
    parts: Callable[[dict], tuple[float, float] | None] | None = None  # a rate's (successes, trials) in one run


def _areas(m: dict) -> list[dict]:
    return list(m.get("cma", {}).values())


def _cma_sum(key: str) -> Callable[[dict], float | None]:
    def f(m: dict) -> float | None:
        areas = _areas(m)
        return sum(a.get(key, 0) for a in areas) if areas else None
    return f


def _cma_fail(kind: str) -> Callable[[dict], float | None]:
    def f(m: dict) -> float | None:
        areas = _areas(m)
        return sum(a.get("fail", {}).get(kind, 0) for a in areas) if areas else None
    return f


def _cma_per_request(key: str) -> Callable[[dict], float | None]:
    def f(m: dict) -> float | None:
        areas = _areas(m)
        req = sum(a.get("requests", 0) for a in areas)
        return sum(a.get(key, 0) for a in areas) / req if req else None
    return f


def _cma_latency(key: str) -> Callable[[dict], float | None]:
    """Latency of successful cma_alloc() calls; over several areas the success-weighted mean of
    the per-area percentiles (metrics.json keeps no raw latencies to pool; exact for one area)."""
    def f(m: dict) -> float | None:
        pairs = [(a.get("success", 0), a.get("latency", {}).get(key, 0.0)) for a in _areas(m)]
        pairs = [(w, v) for w, v in pairs if w]
        if len(pairs) == 1:
            return pairs[0][1]  # exactly the area's figure
        ok = sum(w for w, _ in pairs)
        return sum(w * v for w, v in pairs) / ok if ok else None
    return f


def _get(section: str, key: str) -> Callable[[dict], float | None]:
    return lambda m: m.get(section, {}).get(key, 0)


def _class(cls: str, key: str) -> Callable[[dict], float | None]:
    """pcp.by_class[cls][key] (None for runs from before the per-class counters)."""
    def f(m: dict) -> float | None:
        v = m.get("pcp", {}).get("by_class", {}).get(cls, {})
        return v.get(key) if v.get("served") else None
    return f


def _vmstat_sum(*keys: str) -> Callable[[dict], float | None]:
    return lambda m: sum(m.get("vmstat", {}).get(k, 0) for k in keys)


def _cma_success_parts(m: dict) -> tuple[float, float] | None:
    areas = _areas(m)
    req = sum(a.get("requests", 0) for a in areas)
    return (sum(a.get("success", 0) for a in areas), req) if req else None


def _cma_success_rate(m: dict) -> float | None:
    parts = _cma_success_parts(m)
    return parts[0] / parts[1] if parts else None


_ALL = (
    Metric("cma_success_rate", "cma_alloc success rate", _cma_success_rate,
           "successful cma_alloc() calls / calls, summed over CMA areas (undefined without calls)", "rate",
           _cma_success_parts),
    Metric("cma_busy_retries_per_request", "cma busy retries / request", _cma_per_request("busy_retries"),
           "alloc_contig_range() -EBUSY retries inside cma_alloc() per call"),
    Metric("cma_latency_p50_ms", "cma_alloc latency p50 (ms)", _cma_latency("p50_ms"),
           "median simulated latency of successful cma_alloc() calls"),
    Metric("cma_latency_p99_ms", "cma_alloc latency p99 (ms)", _cma_latency("p99_ms"),
           "99th percentile simulated latency of successful cma_alloc() calls"),
    Metric("cma_pages_migrated", "cma pages migrated", _cma_sum("pages_migrated"),
           "pages migrated out of CMA ranges by cma_alloc()", "count"),
    Metric("pcp_hit_rate", "per-CPU list hit rate", _get("pcp", "hit_rate"),
           "allocations served from a per-CPU list without taking the zone lock / allocations"),
    Metric("zone_lock_per_1000_allocs", "zone lock / 1000 allocs", _get("pcp", "zone_lock_per_1000_allocs"),
           "buddy-path allocations plus per-CPU refills per 1,000 allocations"),
    Metric("alloc_fail", "allocation failures", _get("counters", "alloc_fail"),
           "page allocations that returned no page", "count"),
    Metric("pgmigrate_success", "pgmigrate_success", _get("vmstat", "pgmigrate_success"),
           "/proc/vmstat pgmigrate_success", "count"),
    Metric("compact_stall", "compact_stall", _get("vmstat", "compact_stall"), "/proc/vmstat compact_stall", "count"),
    Metric("oom_kill", "oom_kill", _get("vmstat", "oom_kill"), "/proc/vmstat oom_kill", "count"),
    Metric("cma_to_non_cma_alloc", "CMA page to non-__GFP_CMA alloc", _get("counters", "cma_to_non_cma_alloc"),
           "CMA pages handed to allocations not allowed to use CMA (a contract violation under android)", "count"),
    Metric("gfp_cma_thp_no_cma", "__GFP_CMA THP alloc without CMA page", _get("counters", "gfp_cma_thp_no_cma"),
           "THP-order __GFP_CMA allocations that did not get a CMA page", "count"),
    Metric("non_cma_to_cma_alloc", "non-CMA page to __GFP_CMA alloc, CMA free",
           _get("counters", "non_cma_to_cma_alloc"),
           "pages of non-CMA blocks handed to allocations allowed to use CMA (ALLOC_CMA: __GFP_CMA under "
           "android) while the zone had free CMA pages (the seed thread's 'consumed')", "count"),
    # Not shown by default; ask for them with metrics=[...] / --metric.
    Metric("pcp_hit_rate_cma", "per-CPU hit rate, ALLOC_CMA", _class("cma", "hit_rate"),
           "ALLOC_CMA requests served from a per-CPU list without the zone lock / ALLOC_CMA requests served"),
    Metric("zone_lock_per_1000_cma", "zone lock / 1000, ALLOC_CMA", _class("cma", "zone_lock_per_1000"),
           "zone-lock trips inside rmqueue() per 1,000 ALLOC_CMA requests served"),
    Metric("pcp_hit_rate_movable_no_cma", "per-CPU hit rate, movable w/o ALLOC_CMA",
           _class("movable_no_cma", "hit_rate"),
           "movable w/o ALLOC_CMA requests served from a per-CPU list without the zone lock / "
           "movable w/o ALLOC_CMA requests served"),
    Metric("zone_lock_per_1000_movable_no_cma", "zone lock / 1000, movable w/o ALLOC_CMA",
           _class("movable_no_cma", "zone_lock_per_1000"),
           "zone-lock trips inside rmqueue() per 1,000 movable w/o ALLOC_CMA requests served"),
    Metric("cma_to_movable_no_cma", "CMA page to movable w/o ALLOC_CMA", _class("movable_no_cma", "cma_pages"),
           "CMA pages served to MOVABLE requests without ALLOC_CMA (pollution of that class)", "count"),
    Metric("cma_to_other", "CMA page to non-movable alloc", _class("other", "cma_pages"),
           "CMA pages served to UNMOVABLE/RECLAIMABLE requests (pollution of that class)", "count"),
    Metric("pcp_hit_rate_other", "per-CPU hit rate, non-movable", _class("other", "hit_rate"),
           "non-movable requests served from a per-CPU list without the zone lock / non-movable requests served"),
    Metric("zone_lock_per_1000_other", "zone lock / 1000, non-movable", _class("other", "zone_lock_per_1000"),
           "zone-lock trips inside rmqueue() per 1,000 non-movable requests served"),
    Metric("cma_requests", "cma_alloc calls", _cma_sum("requests"), "cma_alloc() calls, summed over areas", "count"),
    Metric("cma_fail_busy", "cma_alloc fail: busy", _cma_fail("busy"), "cma_alloc() failures on -EBUSY", "count"),
    Metric("cma_fail_no_free_range", "cma_alloc fail: no range", _cma_fail("no_free_range"),
           "cma_alloc() failures with no free range in the bitmap", "count"),
    Metric("cma_fail_nomem", "cma_alloc fail: no memory", _cma_fail("nomem"),
           "cma_alloc() failures because alloc_contig_range() found no migration target (-ENOMEM)", "count"),
    Metric("cma_fail_other", "cma_alloc fail: other", _cma_fail("other"), "cma_alloc() failures of other kinds", "count"),
    Metric("cma_latency_p90_ms", "cma_alloc latency p90 (ms)", _cma_latency("p90_ms"),
           "90th percentile simulated latency of successful cma_alloc() calls"),
    Metric("cma_latency_max_ms", "cma_alloc latency max (ms)", _cma_latency("max_ms"),
           "largest simulated latency of a successful cma_alloc() call (success-weighted over areas)"),
    Metric("pcp_refills", "per-CPU refills", _get("pcp", "refills"), "rmqueue_bulk() refills of per-CPU lists", "count"),
    Metric("pcp_drains", "per-CPU drains", _get("pcp", "drains"), "per-CPU list drains back to the buddy", "count"),
    Metric("extfrag", "extfrag events", _get("counters", "extfrag"), "fallback allocations (mm_page_alloc_extfrag)", "count"),
    Metric("claims", "pageblock claims", _get("counters", "claims"), "fallbacks that claimed the pageblock", "count"),
    Metric("steals", "steals", _get("counters", "steals"), "fallbacks that took pages without claiming", "count"),
    Metric("pgmigrate_fail", "pgmigrate_fail", _get("vmstat", "pgmigrate_fail"), "/proc/vmstat pgmigrate_fail", "count"),
    Metric("compact_fail", "compact_fail", _get("vmstat", "compact_fail"), "/proc/vmstat compact_fail", "count"),
    Metric("allocstall", "allocstall", _vmstat_sum("allocstall_dma", "allocstall_dma32", "allocstall_normal",
                                                   "allocstall_movable"),
           "/proc/vmstat allocstall_*, summed (direct reclaim entries)", "count"),
    Metric("pgsteal", "pgsteal", _vmstat_sum("pgsteal_kswapd", "pgsteal_direct"),
           "/proc/vmstat pgsteal_kswapd + pgsteal_direct", "count"),
    Metric("pswpout", "pswpout", _get("vmstat", "pswpout"), "/proc/vmstat pswpout", "count"),
    Metric("nr_free_cma", "nr_free_cma at end", _get("vmstat", "nr_free_cma"), "free CMA pages at the end of the run"),
    Metric("thp_fault_fallback", "thp_fault_fallback", _get("vmstat", "thp_fault_fallback"),
           "/proc/vmstat thp_fault_fallback", "count"),
    Metric("pin_fail", "pin failures", _get("counters", "pin_fail"), "pin attempts that failed", "count"),
    Metric("longterm_pin_on_cma", "long-term pins on CMA", _get("counters", "longterm_pin_on_cma"),
           "long-term pins left on a CMA page", "count"),
    Metric("cma_idle_share", "CMA idle share", _get("workload", "cma_idle_share"),
           "mean share of the CMA areas left free (sampled every 10 ms of simulated time)"),
    Metric("non_cma_free_mean", "non-CMA free pages (mean)", _get("workload", "non_cma_free_mean"),
           "mean free pages outside CMA (what non-CMA allocations can use)"),
    Metric("cma_pin_busy_skips", "pinned pages met by cma_alloc", _cma_sum("pinned_pages_skipped"),
           "pinned anonymous pages the migrate scanner skipped (each makes its range -EBUSY)", "count"),
    Metric("short_pin_migrated", "short pins that migrated first", _get("counters", "short_pin_migrated"),
           "short-term pins whose page was migrated before pinning (candidate fixes)", "count"),
)
METRICS: dict[str, Metric] = {m.name: m for m in _ALL}
DEFAULT_METRICS: tuple[str, ...] = (
    "cma_success_rate", "cma_busy_retries_per_request", "cma_latency_p50_ms", "cma_latency_p99_ms",
    "cma_pages_migrated", "pcp_hit_rate", "zone_lock_per_1000_allocs", "alloc_fail", "pgmigrate_success",
    "compact_stall", "oom_kill", "cma_to_non_cma_alloc", "gfp_cma_thp_no_cma",
)
# Top-level keys of run_scenario()'s metrics dict that a dotted-path metric may start with.
PATH_ROOTS = ("vmstat", "pcp", "cma", "counters", "workload", "zones", "events", "sim_time_s")


def _path_metric(path: str) -> Metric:
    parts = path.split(".")

    def f(m: dict) -> float | None:
        node: Any = m
        for p in parts:
            if isinstance(node, dict) and p in node:
                node = node[p]
            elif isinstance(node, list) and p.isdigit() and int(p) < len(node):
                node = node[int(p)]
            else:
                return None
        if isinstance(node, bool):
            return int(node)
        return node if isinstance(node, (int, float)) else None

    return Metric(path, path, f, f"metrics.json {path}")


def resolve_metrics(names: list[str] | tuple[str, ...] | None) -> list[Metric]:
    """Registry names, or dotted paths into metrics.json (e.g. `counters.extfrag`,
    `cma.reserved.fail.busy`, `workload.pinners.0.fails`); None gives DEFAULT_METRICS."""
    names = list(DEFAULT_METRICS if names is None else names)
    if not names:
        raise CompareError("no metrics to show")
    out, seen = [], set()
    for n in names:
        if n in seen:
            continue
        seen.add(n)
        if n in METRICS:
            out.append(METRICS[n])
        elif n.split(".")[0] in PATH_ROOTS and all(n.split(".")):
            out.append(_path_metric(n))
        else:
            raise CompareError(f"unknown metric {n!r}; known: {', '.join(METRICS)}; or a dotted path into "
                               f"metrics.json starting with one of: {', '.join(PATH_ROOTS)}")
    return out


# --- statistics (pure) --------------------------------------------------------------------------------
def t_quantile(q: float, df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(q, df))


def summarize(values: list[float], confidence: float = CONFIDENCE, kind: str = "value",
              parts: list[tuple[float, float]] | None = None) -> dict:
    """n, mean, sd and the confidence interval of `values` that suits the metric's `kind`
    (cmasim.stats: Wilson for rates, exact Poisson joined with bootstrap for counts, bootstrap
    for other values); None where undefined. A rate's mean is the proportion pooled over the
    runs' (successes, trials) `parts`. `half_width` is half the interval's width (for rounding)."""
    from cmasim import stats

    n = len(values)
    res: dict[str, Any] = {"n": n, "mean": None, "sd": None, "half_width": None, "ci_low": None, "ci_high": None,
                           "interval": stats.METHOD[kind]}
    if n == 0:
        return res
    num = den = None
    if kind == "rate" and parts:
        num, den = sum(p[0] for p in parts), sum(p[1] for p in parts)
        res["mean"] = num / den if den else statistics.fmean(values)
    else:
        res["mean"] = statistics.fmean(values)
    if n >= 2:
        res["sd"] = math.sqrt(statistics.variance(values))
    ci = stats.interval(kind, values, num, den, confidence)
    if ci is not None and (n >= 2 or kind == "rate"):
        res.update(ci_low=ci[0], ci_high=ci[1], half_width=(ci[1] - ci[0]) / 2)
    return res


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test of mean(a) == mean(b); None with fewer than 2 values a side.

    Zero variance on both sides: 1.0 for equal means, 0.0 otherwise (module docstring).
    """
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    ma, mb = statistics.fmean(a), statistics.fmean(b)
    sa, sb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se2 = sa + sb
    if se2 == 0:
        return 1.0 if ma == mb else 0.0
    t = (ma - mb) / math.sqrt(se2)
    df = se2 * se2 / ((sa * sa / (len(a) - 1) if sa else 0.0) + (sb * sb / (len(b) - 1) if sb else 0.0))
    return float(2 * stats.t.sf(abs(t), df))


def significance(base: list[float], other: list[float], alpha: float = ALPHA) -> tuple[float | None, bool | None]:
    """(p, significant): significant is None when no test is possible (n < 2 on a side)."""
    p = welch_p(base, other)
    return p, (None if p is None else p < alpha)


# --- running ------------------------------------------------------------------------------------------------
def _run_one(sc, policy, seed: int, out_dir: str) -> dict:
    from cmasim.run import run_scenario

    return run_scenario(sc, policy, seed, out_dir=Path(out_dir))


def _pool_context():
    import multiprocessing as mp

    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None


def _display_arg(scenario: str) -> str:
    """The scenario as typed, unless it is an absolute path (then only its file name)."""
    return Path(scenario).name if os.path.isabs(scenario) else scenario


def compare(scenario_name_or_path: str, policies: list[str], seeds: int = 3, sets: list[str] | None = None,
            out_dir: str | Path | None = None, jobs: int | None = None,
            progress: Callable[[int, int, str], None] | None = None,
            metrics: list[str] | None = None) -> dict:
    """Run every policy on seeds scenario.seed + k (k < seeds); write compare.{md,csv,json}; return the json dict.

    Unknown scenario/policy names raise ScenarioError / UnknownPolicy (before any run); bad
    arguments raise CompareError. `metrics` restricts or extends the rows (names from METRICS or
    dotted paths); None takes the scenario's `metrics` if it has one, else DEFAULT_METRICS.
    `progress(done_runs, total_runs, what)` is called as runs finish.
    """
    from cmasim.policy import get_policy
    from cmasim.scenario import load_scenario

    sets = list(sets or [])
    policies = list(policies)
    if not policies:
        raise CompareError("give at least one policy")
    dup = sorted({p for p in policies if policies.count(p) > 1})
    if dup:
        raise CompareError(f"policy given twice: {', '.join(dup)}")
    if seeds < 1:
        raise CompareError(f"seeds must be at least 1, got {seeds}")
    if jobs is not None and jobs < 1:
        raise CompareError(f"jobs must be at least 1, got {jobs}")
    sc = load_scenario(scenario_name_or_path, sets)
    pols = [get_policy(p) for p in policies]
    # A scenario may name its own metrics (a `metrics` list); an explicit argument wins.
    mlist = resolve_metrics(metrics if metrics is not None else getattr(sc, "metrics", None) or None)
    out = Path(out_dir) if out_dir is not None else Path("results") / f"compare-{sc.name}"
    out.mkdir(parents=True, exist_ok=True)

    tasks = [(pi, k, sc.seed + k) for pi in range(len(pols)) for k in range(seeds)]
    total = len(tasks)
    run_dir = {(pi, k): Path("runs") / policies[pi] / f"seed{seed}" for pi, k, seed in tasks}
    workers = min(jobs or os.cpu_count() or 1, total)
    results: dict[tuple[int, int], dict] = {}
    done = 0
    if progress:
        progress(0, total, "starting")
    if workers <= 1:
        for pi, k, seed in tasks:
            results[(pi, k)] = _run_one(sc, pols[pi], seed, str(out / run_dir[(pi, k)]))
            done += 1
            if progress:
                progress(done, total, f"{policies[pi]} seed {seed}")
    else:
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait  # not at import: CLI start-up

        from cmasim.mm.jit import JIT

        if JIT:
            if progress:
                progress(0, total, "compiling / loading the core")
            from cmasim.warmup import compile_core

            compile_core(pols)
        ex = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context())
        try:
            futs = {ex.submit(_run_one, sc, pols[pi], seed, str(out / run_dir[(pi, k)])): (pi, k, seed)
                    for pi, k, seed in tasks}
            pending = set(futs)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in sorted(finished, key=lambda f: futs[f]):
                    pi, k, seed = futs[f]
                    results[(pi, k)] = f.result()  # re-raises a worker's exception
                    done += 1
                    if progress:
                        progress(done, total, f"{policies[pi]} seed {seed}")
        finally:
            ex.shutdown(wait=True, cancel_futures=True)

    report = _build_report(sc, scenario_name_or_path, policies, seeds, sets, metrics, mlist, results, run_dir)
    write_report(report, out)
    return report


def _build_report(sc, scenario_arg, policies, seeds, sets, metrics_arg, mlist, results, run_dir) -> dict:
    seed_list = [sc.seed + k for k in range(seeds)]
    rows: dict[str, dict] = {}
    for met in mlist:
        per_pol: dict[str, dict] = {}
        base_vals: list[float] = []
        for pi, p in enumerate(policies):
            per_seed = [met.extract(results[(pi, k)]) for k in range(seeds)]
            vals = [float(v) for v in per_seed if v is not None]
            parts = [pp for pp in (met.parts(results[(pi, k)]) for k in range(seeds)) if pp] if met.parts else None
            st = summarize(vals, kind=met.kind, parts=parts)
            if pi == 0:
                base_vals = vals
                st.update(p_value=None, significant_vs_baseline=None)
            else:
                pv, sig = significance(base_vals, vals)
                st.update(p_value=pv, significant_vs_baseline=sig)
            st["values"] = per_seed
            per_pol[p] = st
        rows[met.name] = {"label": met.label, "description": met.description, "policies": per_pol}
    runs = []
    for pi, p in enumerate(policies):
        for k in range(seeds):
            m = results[(pi, k)]
            runs.append({"policy": p, "k": k, "seed": m.get("seed", seed_list[k]),
                         "dir": run_dir[(pi, k)].as_posix(), "events": m.get("events"),
                         "sim_time_s": m.get("sim_time_s")})
    return {
        "scenario": sc.name,
        "scenario_arg": _display_arg(scenario_arg),
        "description": " ".join(sc.description.split()),
        "sets": sets,
        "policies": policies,
        "baseline": policies[0],
        "seeds": seed_list,
        "metrics_arg": list(metrics_arg) if metrics_arg is not None else None,
        "confidence": CONFIDENCE,
        "test": {"name": "welch", "alpha": ALPHA, "marker": NOT_SIGNIFICANT},
        "metrics": rows,
        "runs": runs,
    }


# --- output ----------------------------------------------------------------------------------------------
def cell(st: dict, seeds: int, marker: bool = True) -> str:
    """'mean [low, high]' (with (n=k) when fewer runs than seeds defined it, † if not significant)."""
    if st["mean"] is None:
        return "—"
    if st["ci_low"] is None:
        s = f"{with_ci(st['mean'])} (n={st['n']})"
    else:
        hw = st["half_width"]
        s = f"{with_ci(st['mean'], hw)} [{with_ci(st['ci_low'], hw)}, {with_ci(st['ci_high'], hw)}]"
        if st["n"] < seeds:
            s += f" (n={st['n']})"
    if marker and st.get("significant_vs_baseline") is False:
        s += f" {NOT_SIGNIFICANT}"
    return s


def reproduce_command(r: dict) -> str:
    q = shlex.quote
    parts = ["cmasim compare", f"--scenario {q(r['scenario_arg'])}"]
    parts += [f"--policy {q(p)}" for p in r["policies"]]
    parts.append(f"--seeds {len(r['seeds'])}")
    parts += [f"--set {q(s)}" for s in r["sets"]]
    if r["metrics_arg"] is not None:
        parts += [f"--metric {q(m)}" for m in r["metrics_arg"]]
    return " ".join(parts)


def footer_text(r: dict) -> str:
    n = len(r["seeds"])
    conf = round(r["confidence"] * 100)
    if n == 1:
        return ("One seed per policy: the values are single runs (n=1); only rates get an interval (Wilson, over "
                "the run's trials); no significance test is possible, so no difference is marked.")
    return (f"Mean [{conf}% confidence interval] over {n} seeds: Wilson score interval of the pooled proportion "
            "for rates (whose value is the pooled proportion), exact Poisson interval joined with the bootstrap "
            "interval for counts, percentile bootstrap of the mean for other values (narrow with few seeds). "
            f"{NOT_SIGNIFICANT}: not significantly different from the baseline "
            f"{r['baseline']} ({TEST_NAME}, p ≥ {r['test']['alpha']}; each cell tested on its own, no "
            "correction for multiple comparisons). Unmarked: significant difference, the baseline itself, or "
            "no test possible (fewer than 2 values on a side). "
            "—: not defined in any run (e.g. no cma_alloc() calls); (n=k): defined in only k runs.")


def render_markdown(r: dict) -> str:
    seeds = len(r["seeds"])
    lines = [f"# cmasim compare: {r['scenario']}", ""]
    if r["description"]:
        lines += [r["description"], ""]
    lines += [f"Policies: {', '.join(r['policies'])} (baseline: {r['baseline']}). "
              f"Seeds: {', '.join(map(str, r['seeds']))}."
              + (f" Overrides: {', '.join('`' + s + '`' for s in r['sets'])}." if r["sets"] else ""), "",
              f"Reproduce: `{reproduce_command(r)}`", ""]
    lines.append("| metric | " + " | ".join(r["policies"]) + " |")
    lines.append("|---|" + "---:|" * len(r["policies"]))
    for row in r["metrics"].values():
        cells = [cell(row["policies"][p], seeds) for p in r["policies"]]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    lines += ["", footer_text(r), "", "Metrics:", ""]
    lines += [f"- {row['label']} (`{name}`): {row['description']}" for name, row in r["metrics"].items()]
    return "\n".join(lines) + "\n"


def _csv_num(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def render_csv(r: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["metric", "policy", "mean", "ci_low", "ci_high", "n", "significant_vs_baseline", "p_value"])
    for name, row in r["metrics"].items():
        for p in r["policies"]:
            st = row["policies"][p]
            sig = st["significant_vs_baseline"]
            w.writerow([name, p, _csv_num(st["mean"]), _csv_num(st["ci_low"]), _csv_num(st["ci_high"]), st["n"],
                        "" if sig is None else str(sig).lower(), _csv_num(st["p_value"])])
    return buf.getvalue()


def write_report(r: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(render_markdown(r))
    (out / "compare.csv").write_text(render_csv(r))
    (out / "compare.json").write_text(json.dumps(r, indent=2, ensure_ascii=False) + "\n")


# --- command line -------------------------------------------------------------------------------------
def _positive_int(s: str) -> int:
    import argparse

    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def cmd_compare(a) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from cmasim.cli import compile_notice
    from cmasim.outdir import staged_output
    from cmasim.scenario import load_scenario

    err, out = Console(stderr=True), Console()
    if len(a.policy) < 2:
        err.print("[bold red]error:[/] compare needs at least two --policy options (the first is the baseline)",
                  highlight=False)
        return 2
    name = load_scenario(a.scenario, a.set).name  # a bad scenario fails before the output folder is touched
    d = Path(a.out) if a.out else Path("results") / f"compare-{name}"
    t0 = time.perf_counter()
    # auto_refresh=False: no refresh thread exists when compare() forks its workers.
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[what]}"), TimeElapsedColumn(), console=err, auto_refresh=False, transient=True,
                  disable=a.quiet) as prog:
        task = prog.add_task(f"compare {a.scenario}", total=None, what="")

        def cb(done: int, total: int, what: str) -> None:
            prog.update(task, completed=done, total=total, what=what)
            prog.refresh()

        try:
            with staged_output(d, a.force) as tmp, compile_notice(a.quiet):
                r = compare(a.scenario, a.policy, a.seeds, a.set, tmp, jobs=a.jobs, progress=cb, metrics=a.metric)
                if a.report:
                    from cmasim.report import write_report

                    write_report(tmp, tmp / "report.html")
        except CompareError as e:
            from cmasim.cli import _fail

            return _fail(str(e))
    wall = time.perf_counter() - t0
    seeds = len(r["seeds"])
    t = Table(title=f"{r['scenario']}: {len(r['policies'])} policies × {seeds} seeds "
                    f"({', '.join(map(str, r['seeds']))}), baseline {r['baseline']}")
    t.add_column("metric")
    for p in r["policies"]:
        t.add_column(p, justify="right", overflow="fold")
    for row in r["metrics"].values():
        t.add_row(row["label"], *[cell(row["policies"][p], seeds) for p in r["policies"]])
    t.caption = footer_text(r)
    out.print(t)
    out.print(f"results: {d}/compare.md, {d}/compare.csv, {d}/compare.json, runs in {d}/runs/ "
              f"({wall:.1f} s)", highlight=False)
    return 0


def add_parser(subparsers) -> None:
    """Register `cmasim compare` on the CLI's sub-parsers."""
    c = subparsers.add_parser("compare", help="run several policies on the same seeds; mean and 95%% CI table")
    c.add_argument("--scenario", required=True, help="built-in scenario name or a TOML file")
    c.add_argument("--policy", action="append", required=True, metavar="P",
                   help="a policy (repeat, at least two; the first is the baseline)")
    c.add_argument("--seeds", type=_positive_int, default=3, metavar="K",
                   help="seeds per policy: the scenario seed + 0..K-1 (default 3)")
    c.add_argument("--out", help="output folder, replaced only with --force (default results/compare-<scenario>)")
    c.add_argument("--force", action="store_true", help="replace a non-empty output folder whole")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario parameter, e.g. workload.pinner.0.threads=8 (repeatable)")
    c.add_argument("--jobs", type=_positive_int, metavar="N", help="parallel runs (default: number of CPUs)")
    c.add_argument("--metric", action="append", metavar="NAME",
                   help="show this metric (repeatable; a name from cmasim.compare.METRICS or a dotted path "
                        "into metrics.json such as counters.extfrag); default: the headline set")
    c.add_argument("--quiet", action="store_true", help="no progress display")
    c.add_argument("--report", action="store_true", help="write report.html (cmasim report) into the folder")
    c.set_defaults(fn=cmd_compare)
