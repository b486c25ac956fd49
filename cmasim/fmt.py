"""Number formats for every table cmasim prints or writes.

`num()` is the one format for counts and measured values (run summaries, sweep boundary
tables); `with_ci()` formats a mean and its interval with as many decimals as the interval's
half-width needs (compare tables). Both are plain functions of the value: no locale.
"""

from __future__ import annotations

import math


def num(v) -> str:
    """Thousands separators, floats to 4 significant digits (integral above 1,000), ±∞ spelt out."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isinf(v):
            return "+∞" if v > 0 else "−∞"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return str(v)


def with_ci(x: float | None, ref: float | None = None) -> str:
    """x with as many decimals as two significant digits of `ref` (the CI half-width) need."""
    if x is None:
        return "—"
    if ref is not None and ref > 0:
        d = max(0, min(6, 1 - math.floor(math.log10(ref))))
    elif x == 0 or float(x).is_integer():
        d = 0
    else:
        ax = abs(x)
        d = 0 if ax >= 100 else 2 if ax >= 1 else max(0, min(6, 2 - math.floor(math.log10(ax))))
    return f"{x:,.{d}f}"
