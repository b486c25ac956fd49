"""Sweep specs: a TOML file naming a base scenario, policies, seeds and axes over `--set` keys.

A spec expands to runs = points × policies × seeds. Points are the product of the grid axes
(`values`, `linspace`, `logspace`) times, when the spec has a `[sample]` table, N points drawn
jointly over the sampled axes (`uniform`, `loguniform`) at random or by Latin hypercube
(scipy.stats.qmc, seeded). `[[where]]` filters drop points with a stated reason; each is a
DuckDB SQL boolean expression over the axis names (`drop = "size_mib > cma_mib"`).

    name = "pins-boundary"
    scenario = "gpu-cma-short-pins"          # built-in name, or a path relative to the spec
    policies = ["linux-6.18", "linux-6.18+pin-pending-migration"]
    seeds = 3                                # scenario seed + 0..2, or an explicit list
    set = ["workload.duration_s=2"]          # fixed overrides for every run
    [axes.threads]
    key = "workload.pinner.0.threads"
    values = [8, 32, 128]                    # or linspace/logspace = [lo, hi, n]
    format = "{}"                            # how a value is written into the override
    [summary]
    axis = "threads"                         # boundary axis; see cmasim.sweep.summary

Every point is validated against the scenario by applying its overrides (`load_scenario`), so a
key that does not exist, or a value the scenario refuses, is a `SweepError` naming the spec file,
the axis and the key before any run starts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cmasim.compare import METRICS


class SweepError(ValueError):
    """A bad sweep spec or sweep arguments; the message names the file and the key."""


_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# Columns every stored row has; an axis may not take one of these names.
RESERVED = {"run_key", "spec_hash", "spec_name", "scenario", "point_id", "point", "policy", "seed", "status",
            "error", "wall_s", "cmasim_version", "events", "sim_time_s", "finished_at"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AxisSpec(_Strict):
    """One axis: the `--set` key it varies and how its values are made."""

    key: str
    values: list[Any] | None = None
    linspace: tuple[float, float, int] | None = None
    logspace: tuple[float, float, int] | None = None  # lo and hi are values, not exponents
    uniform: tuple[float, float] | None = None  # sampled axes ([sample] table)
    loguniform: tuple[float, float] | None = None
    integer: bool = False  # round generated values to integers
    format: str = "{}"  # the override's value text; e.g. "[{}]" for a list, '"{}MiB"' for a size

    @model_validator(mode="after")
    def _one_kind(self):
        kinds = [k for k in ("values", "linspace", "logspace", "uniform", "loguniform") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of values, linspace, logspace, uniform, loguniform"
                             + (f" (got {', '.join(kinds)})" if kinds else ""))
        if self.values is not None and not self.values:
            raise ValueError("values: empty list")
        for k in ("linspace", "logspace"):
            v = getattr(self, k)
            if v is not None and v[2] < 1:
                raise ValueError(f"{k}: the number of points must be at least 1")
        for k in ("logspace", "loguniform"):
            v = getattr(self, k)
            if v is not None and (v[0] <= 0 or v[1] <= 0):
                raise ValueError(f"{k}: bounds must be positive")
        if "{}" not in self.format:
            raise ValueError("format: must contain {} where the value goes")
        return self

    @property
    def sampled(self) -> bool:
        return self.uniform is not None or self.loguniform is not None


class SampleSpec(_Strict):
    method: str = Field("lhs", pattern="^(lhs|random)$")
    n: int = Field(gt=0)
    seed: int = 1


class WhereSpec(_Strict):
    drop: str  # DuckDB SQL boolean expression over axis names
    reason: str


class SummarySpec(_Strict):
    axis: str | None = None  # boundary axis (default: the first axis)
    metric: str = "cma_success_rate"
    thresholds: list[float] = [0.99, 0.5]
    crosses: str = Field("below", pattern="^(below|above)$")  # the metric gets worse by falling (or rising)
    scan: str = Field("up", pattern="^(up|down)$")  # the axis gets worse upwards (or downwards)
    by: list[str] = []  # axes kept apart in the summary; other axes are pooled (mean per seed)
    costs: list[str] = ["cma_pages_migrated", "zone_lock_per_1000_allocs", "cma_latency_p99_ms"]
    bootstrap: int = Field(1000, ge=100)


class SpecFile(_Strict):
    name: str = ""
    description: str = ""
    scenario: str
    policies: list[str] = Field(min_length=1)
    seeds: int | list[int] = 3
    set: list[str] = []
    axes: dict[str, AxisSpec] = Field(min_length=1)
    sample: SampleSpec | None = None
    where: list[WhereSpec] = []
    summary: SummarySpec = SummarySpec()


@dataclass(frozen=True)
class RunTask:
    """One run: a point of the sweep under one policy and seed. `sets` = fixed + point overrides."""

    run_key: str
    point_id: str
    point: tuple[tuple[str, Any], ...]
    policy: str
    seed: int
    sets: tuple[str, ...]


@dataclass
class Sweep:
    """An expanded, validated spec. `scenario_text` is the base scenario's TOML (shipped to workers)."""

    name: str
    description: str
    source: str
    spec_hash: str
    scenario_arg: str
    scenario_name: str
    scenario_text: str
    policies: list[str]
    seeds: list[int]
    fixed_sets: list[str]
    axes: dict[str, AxisSpec]
    points: list[dict[str, Any]]
    dropped: list[tuple[dict[str, Any], str]]
    summary: SummarySpec
    tasks: list[RunTask] = field(default_factory=list)


# --- values -----------------------------------------------------------------------------------
def _num(x: float, integer: bool) -> int | float:
    return int(round(x)) if integer else float(x)


def grid_values(ax: AxisSpec) -> list[Any]:
    import numpy as np

    if ax.values is not None:
        vals = list(ax.values)
    elif ax.linspace is not None:
        lo, hi, n = ax.linspace
        vals = [_num(v, ax.integer) for v in np.linspace(lo, hi, n)]
    else:
        lo, hi, n = ax.logspace
        vals = [_num(v, ax.integer) for v in np.geomspace(lo, hi, n)]
    out = []
    for v in vals:  # rounding may repeat a value; keep the first
        if v not in out:
            out.append(v)
    return out


def sample_values(axes: dict[str, AxisSpec], sample: SampleSpec) -> list[dict[str, Any]]:
    """N points over the sampled axes: Latin hypercube or uniform random, from `sample.seed`."""
    import numpy as np
    from scipy.stats import qmc

    names = [a for a, ax in axes.items() if ax.sampled]
    if sample.method == "lhs":
        u = qmc.LatinHypercube(d=len(names), seed=np.random.default_rng(sample.seed)).random(sample.n)
    else:
        u = np.random.default_rng(sample.seed).random((sample.n, len(names)))
    out = []
    for row in u:
        p = {}
        for name, x in zip(names, row):
            ax = axes[name]
            if ax.uniform is not None:
                lo, hi = ax.uniform
                v = lo + x * (hi - lo)
            else:
                lo, hi = ax.loguniform
                v = math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo)))
            p[name] = _num(v, ax.integer)
        out.append(p)
    return out


def override(ax: AxisSpec, value: Any) -> str:
    """The `--set key=value` text for one axis value."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value)
    else:
        text = repr(value)
    if ax.format != "{}":
        text = ax.format.replace("{}", value if isinstance(value, str) else text)
    return f"{ax.key}={text}"


# --- loading ------------------------------------------------------------------------------------
def builtin_sweeps() -> dict[str, str]:
    """name -> TOML text of every sweep shipped in cmasim/sweeps/."""
    out = {}
    for f in sorted(resources.files("cmasim.sweeps").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".toml"):
            out[f.name[:-5]] = f.read_text()
    return out


def _format_error(source: str, e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
    msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
    more = f" (and {len(e.errors()) - 1} more problems)" if len(e.errors()) > 1 else ""
    return f"{source}: {loc}: {msg}{more}"


def load_spec(name_or_path: str) -> Sweep:
    """A built-in sweep by name or a spec file by path, expanded and validated (SweepError if bad)."""
    builtin = builtin_sweeps()
    if name_or_path in builtin:
        return parse_spec(builtin[name_or_path], f"{name_or_path} (built-in)", None, name_or_path)
    p = Path(name_or_path)
    if not p.is_file():
        raise SweepError(f"{name_or_path}: no such file, and not a built-in sweep (built-in: {', '.join(builtin)})")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SweepError(f"{name_or_path}: cannot read: {e}") from None
    return parse_spec(text, str(p), p.parent, p.stem)


def parse_spec(text: str, source: str, base_dir: Path | None = None, default_name: str = "sweep") -> Sweep:
    from cmasim.policy import UnknownPolicy, get_policy
    from cmasim.scenario import ScenarioError, builtin_scenarios, load_scenario_text

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SweepError(f"{source}: not valid TOML: {e}") from None
    try:
        spec = SpecFile.model_validate(data)
    except ValidationError as e:
        raise SweepError(_format_error(source, e)) from None
    for a in spec.axes:
        if not _NAME.fullmatch(a):
            raise SweepError(f"{source}: axes.{a}: an axis name must be a lower-case identifier (a-z, 0-9, _)")
        if a in RESERVED or a in METRICS or a.startswith("vmstat_"):
            raise SweepError(f"{source}: axes.{a}: the name is taken by a result column; choose another")
    sampled = [a for a, ax in spec.axes.items() if ax.sampled]
    if sampled and spec.sample is None:
        raise SweepError(f"{source}: axes.{sampled[0]}: uniform/loguniform axes need a [sample] table")
    if spec.sample is not None and not sampled:
        raise SweepError(f"{source}: sample: no axis is sampled (give an axis uniform = [lo, hi])")
    dup = sorted({p for p in spec.policies if spec.policies.count(p) > 1})
    if dup:
        raise SweepError(f"{source}: policies: {dup[0]} given twice")
    for p in spec.policies:
        try:
            get_policy(p)
        except UnknownPolicy as e:
            raise SweepError(f"{source}: policies: {e.args[0]}") from None
    # Base scenario.
    scen = builtin_scenarios()
    if spec.scenario in scen:
        sc_text, sc_source, sc_name = scen[spec.scenario], f"{spec.scenario} (built-in)", spec.scenario
    else:
        sp = (base_dir / spec.scenario) if base_dir is not None else Path(spec.scenario)
        if not sp.is_file():
            raise SweepError(f"{source}: scenario: {spec.scenario!r} is neither a built-in scenario nor a file")
        sc_text, sc_source, sc_name = sp.read_text(encoding="utf-8"), spec.scenario, sp.stem
    try:
        base = load_scenario_text(sc_text, sc_source, sc_name, spec.set)
    except ScenarioError as e:
        raise SweepError(f"{source}: set: {e}") from None
    seeds = [base.seed + k for k in range(spec.seeds)] if isinstance(spec.seeds, int) else list(spec.seeds)
    if not seeds:
        raise SweepError(f"{source}: seeds: no seeds")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"{source}: seeds: a seed is given twice")
    # Each axis value alone against the scenario: a bad key or value is named precisely.
    grids = {a: grid_values(ax) for a, ax in spec.axes.items() if not ax.sampled}
    for a, vals in grids.items():
        for v in vals:
            _validate(sc_text, sc_source, sc_name, spec.set + [override(spec.axes[a], v)], source,
                      f"axes.{a} ({spec.axes[a].key} = {v!r})")
    samples = sample_values(spec.axes, spec.sample) if spec.sample else [{}]
    points = []
    for combo in itertools.product(*grids.values()):
        gp = dict(zip(grids, combo))
        for s in samples:
            points.append({a: (gp[a] if a in gp else s[a]) for a in spec.axes})
    points, dropped = _apply_where(points, spec, source)
    if not points:
        why = "; ".join(sorted({r for _, r in dropped})) or "no points"
        raise SweepError(f"{source}: the sweep has no runs left: every point is dropped ({why})")
    sm = spec.summary
    for a in ([sm.axis] if sm.axis else []) + sm.by:
        if a not in spec.axes:
            raise SweepError(f"{source}: summary: {a!r} is not an axis (axes: {', '.join(spec.axes)})")
    for m in [sm.metric] + sm.costs:
        if m not in METRICS:
            raise SweepError(f"{source}: summary: unknown metric {m!r} (see cmasim.compare.METRICS)")
    if sm.axis is None:
        sm.axis = next(iter(spec.axes))
    spec_hash = hashlib.sha256(json.dumps({"spec": spec.model_dump(mode="json"), "scenario": sc_text},
                                          sort_keys=True).encode()).hexdigest()[:16]
    sw = Sweep(name=spec.name or default_name, description=" ".join(spec.description.split()), source=source,
               spec_hash=spec_hash, scenario_arg=spec.scenario, scenario_name=sc_name, scenario_text=sc_text,
               policies=spec.policies, seeds=seeds, fixed_sets=list(spec.set), axes=dict(spec.axes), points=points,
               dropped=dropped, summary=sm)
    sc_hash = hashlib.sha256(sc_text.encode()).hexdigest()
    for p in points:
        sets = tuple(spec.set) + tuple(override(spec.axes[a], v) for a, v in p.items())
        # Whole-point validation (the single-value check above cannot see combinations).
        _validate(sc_text, sc_source, sc_name, list(sets), source,
                  "point " + ", ".join(f"{a}={v!r}" for a, v in p.items()), hint=True)
        pid = hashlib.sha256(json.dumps([sc_hash, sets]).encode()).hexdigest()[:16]
        for pol in spec.policies:
            for seed in seeds:
                key = hashlib.sha256(json.dumps([pid, pol, seed]).encode()).hexdigest()[:20]
                sw.tasks.append(RunTask(key, pid, tuple(p.items()), pol, seed, sets))
    return sw


def _validate(text: str, sc_source: str, sc_name: str, sets: list[str], source: str, what: str,
              hint: bool = False) -> None:
    from cmasim.scenario import ScenarioError, load_scenario_text

    try:
        load_scenario_text(text, sc_source, sc_name, sets)
    except ScenarioError as e:
        first = str(e).splitlines()[0]
        raise SweepError(f"{source}: {what}: {first}" + ("; drop such points with a [[where]] filter" if hint
                                                           else "")) from None


def _apply_where(points: list[dict], spec: SpecFile, source: str) -> tuple[list[dict], list[tuple[dict, str]]]:
    """Evaluate each `where.drop` with DuckDB over a table of the points; the first match names the reason."""
    if not spec.where:
        return points, []
    import duckdb

    con = duckdb.connect()
    names = list(spec.axes)
    cols = ", ".join(f"{a} {_sql_type({type(p[a]) for p in points})}" for a in names)
    con.execute(f"CREATE TABLE points (i INTEGER, {cols})")
    con.executemany(f"INSERT INTO points VALUES ({', '.join('?' * (len(names) + 1))})",
                    [[i] + [p[a] for a in names] for i, p in enumerate(points)])
    reason: dict[int, str] = {}
    for k, w in enumerate(spec.where):
        try:
            hits = con.execute(f"SELECT i FROM points WHERE ({w.drop})").fetchall()
        except duckdb.Error as e:
            msg = str(e).splitlines()[0]
            raise SweepError(f"{source}: where[{k}].drop: {w.drop!r}: {msg}") from None
        for (i,) in hits:
            reason.setdefault(i, w.reason)
    keep = [p for i, p in enumerate(points) if i not in reason]
    return keep, [(points[i], r) for i, r in sorted(reason.items())]


def _sql_type(kinds: set[type]) -> str:
    if kinds <= {bool}:
        return "BOOLEAN"
    if kinds <= {int}:
        return "BIGINT"
    if kinds <= {int, float}:
        return "DOUBLE"
    return "VARCHAR"
