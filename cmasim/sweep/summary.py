"""End-of-sweep summary: per policy, where the metric crosses each threshold along the boundary
axis, with bootstrap intervals over seeds; and the fixes ranked by how far they move it and
what they cost.

Boundary. For one policy (and one combination of the `summary.by` axes), the runs give a matrix
Y[seed, x]: the metric (default `cma_success_rate`) at each value x of the boundary axis, the
mean over the other (pooled) axes for that seed. The boundary at threshold θ is the smallest x
at which the mean over seeds of Y falls below θ (the axis is read as "more of it is worse",
e.g. pinner threads); "> max" when it never does. Its interval is the 2.5-97.5% percentile
bootstrap over seeds: seeds are resampled with replacement (B times, numpy's generator seeded
with 0), the boundary recomputed, and the quantiles taken with the inverted-CDF rule, so the
ends are axis values (or "> max"). One seed: no interval.

Ranking. The first policy is the baseline. In each `by` group a fix's shift is its boundary
minus the baseline's at the first threshold ("+∞" where the fix never crosses it but the
baseline does; sign turned for scan "down", so positive is always better). Fixes are ranked
by the number of groups they move to the better side minus those they move to the worse,
then by the lower median of the shifts. Costs are the mean of each `summary.costs` metric
over all its successful runs, beside the baseline's.

Everything is read from the store with DuckDB (only runs of this sweep, by run_key); nothing
here prints.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cmasim.fmt import num as _num
from cmasim.sweep.spec import Sweep
from cmasim.sweep.store import Store

INF = math.inf


@dataclass
class Boundary:
    policy: str
    group: dict[str, Any]
    threshold: float
    value: float  # axis value, INF: never below the threshold
    low: float | None  # bootstrap interval (None: one seed)
    high: float | None
    seeds: int


@dataclass
class Summary:
    sweep: str
    axis: str
    metric: str
    thresholds: list[float]
    by: list[str]
    crosses: str
    baseline: str
    boundaries: list[Boundary] = field(default_factory=list)
    ranking: list[dict[str, Any]] = field(default_factory=list)
    costs: list[str] = field(default_factory=list)
    runs_ok: int = 0
    runs_failed: int = 0
    axis_max: float | None = None
    axis_min: float | None = None
    scan: str = "up"


def boundary_of(xs: list[float], y: np.ndarray, threshold: float, crosses: str = "below",
                scan: str = "up") -> float:
    """First x (smallest with scan "up", largest with "down") at which the seed-mean of y
    (seeds × len(xs)) is below `threshold` (or above, with crosses "above"); INF if none."""
    with np.errstate(all="ignore"):
        curve = np.nanmean(y, axis=0)
    pairs = list(zip(xs, curve))
    for x, v in (pairs if scan == "up" else pairs[::-1]):
        if not math.isnan(v) and (v < threshold if crosses == "below" else v > threshold):
            return float(x)
    return INF


def bootstrap_interval(xs: list[float], y: np.ndarray, threshold: float, reps: int, seed: int = 0,
                       crosses: str = "below", scan: str = "up") -> tuple[float, float] | None:
    """2.5-97.5% percentile bootstrap of `boundary_of` over the rows (seeds) of y."""
    n = y.shape[0]
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(reps, n))
    stats = np.array([boundary_of(xs, y[i], threshold, crosses, scan) for i in idx])
    if scan == "down":  # INF (never) is the good end: order by badness, then map back
        stats = np.where(stats == INF, -INF, stats)
    lo, hi = np.quantile(stats, [0.025, 0.975], method="inverted_cdf")
    lo, hi = float(lo), float(hi)
    if scan == "down":
        lo, hi = (INF if lo == -INF else lo), (INF if hi == -INF else hi)
    return lo, hi


def _keys_table(con, sweep: Sweep) -> None:
    con.execute("CREATE TEMP TABLE sweep_keys (run_key VARCHAR)")
    con.execute("INSERT INTO sweep_keys SELECT unnest(?::VARCHAR[])", [[t.run_key for t in sweep.tasks]])


def summarize(sweep: Sweep, store: Store) -> Summary:
    sm = sweep.summary
    s = Summary(sweep=sweep.name, axis=sm.axis, metric=sm.metric, thresholds=list(sm.thresholds), by=list(sm.by),
                crosses=sm.crosses,
                baseline=sweep.policies[0], costs=list(sm.costs))
    con = store.connect()
    try:
        _keys_table(con, sweep)
        s.runs_ok, s.runs_failed = con.execute(
            "SELECT count(*) FILTER (WHERE status = 'ok'), count(*) FILTER (WHERE status <> 'ok') "
            "FROM runs JOIN sweep_keys USING (run_key)").fetchone()
        by_sql = "".join(f", {b}" for b in sm.by)
        rows = con.execute(
            f"SELECT policy{by_sql}, {sm.axis} AS x, seed, avg({sm.metric}) AS y FROM runs "
            f"JOIN sweep_keys USING (run_key) WHERE status = 'ok' GROUP BY ALL").fetchall()
        cost_rows = {}
        if sm.costs:
            cost_sql = ", ".join(f"avg({c})" for c in sm.costs)
            for r in con.execute(f"SELECT policy, {cost_sql} FROM runs JOIN sweep_keys USING (run_key) "
                                 f"WHERE status = 'ok' GROUP BY policy").fetchall():
                cost_rows[r[0]] = dict(zip(sm.costs, r[1:]))
    finally:
        con.close()
    nb = len(sm.by)
    data: dict[tuple, dict[tuple[Any, int], float]] = {}
    xs_all = set()
    for r in rows:
        pol, grp, x, seed, y = r[0], tuple(r[1:1 + nb]), r[1 + nb], r[2 + nb], r[3 + nb]
        data.setdefault((pol, grp), {})[(x, seed)] = np.nan if y is None else y
        xs_all.add(x)
    if xs_all:
        s.axis_max, s.axis_min = max(xs_all), min(xs_all)
    s.scan = sm.scan
    groups = sorted({g for _, g in data}, key=lambda g: tuple(str(v) for v in g))
    shift: dict[str, list[float]] = {p: [] for p in sweep.policies[1:]}
    for grp in groups:
        base_b = None
        for pol in sweep.policies:
            cells = data.get((pol, grp))
            if not cells:
                continue
            xs = sorted({x for x, _ in cells})
            seeds = sorted({sd for _, sd in cells})
            y = np.array([[cells.get((x, sd), np.nan) for x in xs] for sd in seeds], dtype=float)
            for k, th in enumerate(sm.thresholds):
                b = boundary_of(xs, y, th, sm.crosses, sm.scan)
                ci = bootstrap_interval(xs, y, th, sm.bootstrap, 0, sm.crosses, sm.scan)
                s.boundaries.append(Boundary(pol, dict(zip(sm.by, grp)), th, b, ci[0] if ci else None,
                                             ci[1] if ci else None, len(seeds)))
                if k == 0:
                    if pol == sweep.policies[0]:
                        base_b = b
                    elif base_b is not None:
                        d = _diff(b, base_b)
                        shift[pol].append(-d if sm.scan == "down" and math.isfinite(d) else d)
    base_cost = cost_rows.get(sweep.policies[0], {})
    for pol in sweep.policies[1:]:
        sh = statistics.median_low(shift[pol]) if shift[pol] else None
        s.ranking.append({"policy": pol, "shift": sh, "groups": len(shift[pol]),
                          "moved_up": sum(1 for d in shift[pol] if d > 0),
                          "moved_down": sum(1 for d in shift[pol] if d < 0),
                          "costs": cost_rows.get(pol, {}), "baseline_costs": base_cost})
    s.ranking.sort(key=lambda r: (r["shift"] is None, -(r["moved_up"] - r["moved_down"]),
                                  -(r["shift"] if r["shift"] is not None else 0)))
    return s


def _diff(b: float, base: float) -> float:
    if b == INF and base == INF:
        return 0.0
    if b == INF:
        return INF
    if base == INF:
        return -INF
    return b - base


def fmt_axis(v: float | None, s: Summary) -> str:
    """An axis value; INF (never crosses) as "> max" (or "< min" when scanning down)."""
    if v is None:
        return "—"
    if v == INF:
        end = s.axis_max if s.scan == "up" else s.axis_min
        return "never" if end is None else f"{'>' if s.scan == 'up' else '<'} {_num(end)}"
    return _num(v)


def boundary_rows(s: Summary) -> list[list[str]]:
    """Table rows: policy, by-group values, threshold, boundary, interval, seeds."""
    out = []
    for b in s.boundaries:
        ci = "—" if b.low is None else f"[{fmt_axis(b.low, s)}, {fmt_axis(b.high, s)}]"
        out.append([b.policy, *[_num(b.group[k]) for k in s.by], f"{'<' if s.crosses == 'below' else '>'} {b.threshold:g}",
                    fmt_axis(b.value, s), ci, str(b.seeds)])
    return out


def ranking_rows(s: Summary) -> list[list[str]]:
    out = []
    for i, r in enumerate(s.ranking, 1):
        costs = [f"{_num(r['costs'].get(c))} (base {_num(r['baseline_costs'].get(c))})" for c in s.costs]
        out.append([str(i), r["policy"], f"{r['moved_up']} / {r['moved_down']} / {r['groups']}",
                    "—" if r["shift"] is None else _num(r["shift"]), *costs])
    return out


def to_markdown(s: Summary) -> str:
    head = ["policy", *s.by, f"{s.metric}", f"{s.axis} boundary", "95% bootstrap interval", "seeds"]
    word = ("smallest" if s.scan == "up" else "largest")
    lines = [f"Boundary: {word} `{s.axis}` at which the seed-mean `{s.metric}` is {s.crosses} the threshold "
             f"(runs ok {s.runs_ok}, failed {s.runs_failed}).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in boundary_rows(s)]
    if s.ranking:
        head = ["rank", "fix", "groups moved better / worse / all", f"median shift of the {s.thresholds[0]:g} boundary "
                f"vs {s.baseline}", *s.costs]
        lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in ranking_rows(s)]
    return "\n".join(lines) + "\n"
