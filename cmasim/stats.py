"""Confidence intervals that suit what is measured (used by `cmasim compare`).

A headline metric is one of three kinds, and each gets the interval that fits it, so no
interval leaves the range the quantity can take (no negative lower bound for a count):

- **rate** — a proportion of independent trials, such as cma_alloc() successes per call:
  the Wilson score interval of the proportion pooled over all runs (Σ successes / Σ trials).
  The central value shown is that pooled proportion.
- **count** — events counted per run (failures, migrations, stalls): the exact Poisson
  (Garwood) interval of the mean count per run, from the total over the runs, joined with the
  bootstrap interval below, so that both few events (0 in every run still gives an upper
  bound) and run-to-run spread above Poisson noise widen it.
- **value** — anything else (latencies, per-request averages, shares): the percentile
  bootstrap interval of the mean over runs (resamples drawn with a fixed seed, so the same
  values give the same interval). It stays within the observed values' range; with few runs
  (fewer than ~10) it is narrower than a true 95% interval, which `docs/findings.md` says
  where it quotes one.

Each returns (low, high) or None when no interval is possible (one run, no trials).
"""

from __future__ import annotations

import math

import numpy as np

METHOD = {"rate": "wilson", "count": "poisson+bootstrap", "value": "bootstrap"}
BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_SEED = 20261130


def wilson(successes: float, trials: float, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of successes / trials."""
    if trials <= 0:
        return None
    from scipy import stats

    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / trials
    den = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / den
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def poisson_mean(total: float, runs: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Exact (Garwood) interval of the mean count per run, given `total` events over `runs` runs."""
    if runs < 1:
        return None
    from scipy import stats

    a = 1 - confidence
    k = round(total)
    lo = 0.0 if k == 0 else float(stats.chi2.ppf(a / 2, 2 * k)) / 2
    hi = float(stats.chi2.ppf(1 - a / 2, 2 * k + 2)) / 2
    return lo / runs, hi / runs


def bootstrap_mean(values: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of `values` (deterministic resampling)."""
    n = len(values)
    if n < 2:
        return None
    x = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = x[rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))].mean(axis=1)
    a = 1 - confidence
    lo, hi = np.quantile(means, [a / 2, 1 - a / 2])
    return float(lo), float(hi)


def interval(kind: str, values: list[float], num: float | None = None, den: float | None = None,
             confidence: float = 0.95) -> tuple[float, float] | None:
    """The interval for a metric of `kind` (module docstring); rates need the pooled num/den."""
    if kind == "rate":
        return wilson(num, den, confidence) if (num is not None and den) else None
    if kind == "count":
        if len(values) < 2:
            return None
        pois = poisson_mean(sum(values), len(values), confidence)
        boot = bootstrap_mean(values, confidence)
        return min(pois[0], boot[0]), max(pois[1], boot[1])
    return bootstrap_mean(values, confidence)
