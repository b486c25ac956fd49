"""Fidelity: the kernel's own trace events against the simulation of the same requests.

Every statistic counts the same tracepoint on both sides, so the two agree in meaning:

* ``pcp_refill_per_1000_allocs`` — `mm_page_alloc_zone_locked` with ``percpu_refill=1`` per
  1,000 successful allocations. The kernel emits that event in __rmqueue_smallest() once per
  *block* taken under the zone lock (so a refill of 63 order-0 pages is 63 events), with
  percpu_refill = pcp_allowed_order(order) && migratetype < MIGRATE_PCPTYPES — a property of
  the request, not of the caller. The core emits the same record at the same place with the
  same rule, so the simulator side counts its own records: blocks taken, not
  rmqueue_bulk() calls (``pcp_refills``) and not pages (``pcp_refill_pages``).
* ``buddy_path_per_1000_allocs`` — the same event with ``percpu_refill=0`` (orders 4-8 and
  10, and HighAtomic/CMA lists).
* ``pcpu_drain_per_1000_frees`` — `mm_page_pcpu_drain` (one per block drained) per 1,000
  `mm_page_free`.
* ``extfrag_per_1e6_allocs`` and ``extfrag_change_ownership_share`` —
  `mm_page_alloc_extfrag` per 10^6 allocations and the share with ``change_ownership=1``.
* ``buddyinfo_after`` — free pages in the buddy lists after the trace, kernel's
  ``after.buddyinfo`` against the simulated buddyinfo; ``rel_err`` is the page-weighted L1
  distance of the two per-zone, per-order histograms divided by the kernel's free pages
  (0: identical; 1: as far apart as the whole free memory).

Each statistic is ``{"kernel": x, "sim": y, "rel_err": |y - x| / x}`` plus the event counts
behind it and ``ok``: within 10%, or — when the kernel count is below 100 — within the 95%
Poisson interval of that count (scaled to the same denominator).
"""

from __future__ import annotations

import math

from cmasim.mm import mmzone as mz
from cmasim.mm import vmstat
from cmasim.trace.snapshot import Snapshot

TOLERANCE = 0.10
POISSON_BELOW = 100


def _poisson_cdf(k: int, lam: float) -> float:
    if lam <= 0:
        return 1.0
    term = math.exp(-lam)
    s = term
    for i in range(1, k + 1):
        term *= lam / i
        s += term
    return min(1.0, s)


def poisson_interval(k: int, conf: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval for a Poisson mean given k observed events."""
    a = (1 - conf) / 2

    def solve(f, lo, hi):
        for _ in range(200):
            mid = (lo + hi) / 2
            if f(mid):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    upper = solve(lambda lam: _poisson_cdf(k, lam) > a, 0.0, 10.0 * k + 20)
    lower = 0.0 if k == 0 else solve(lambda lam: 1 - _poisson_cdf(k - 1, lam) < a, 0.0, 10.0 * k + 20)
    return lower, upper


def stat(k_events: int, k_den: int, s_events: int, s_den: int, scale: float) -> dict:
    kv = scale * k_events / k_den if k_den else 0.0
    sv = scale * s_events / s_den if s_den else 0.0
    rel = abs(sv - kv) / kv if kv else (0.0 if sv == 0 else None)
    out = {"kernel": round(kv, 4), "sim": round(sv, 4), "rel_err": None if rel is None else round(rel, 4),
           "kernel_events": k_events, "sim_events": s_events}
    if k_events < POISSON_BELOW:
        lo, hi = poisson_interval(k_events)
        out["kernel_95"] = [round(scale * lo / k_den, 4) if k_den else 0.0, round(scale * hi / k_den, 4) if k_den else 0.0]
        # the simulated count, brought to the kernel's denominator, must be a plausible draw
        s_at_k = s_events * k_den / s_den if s_den else 0.0
        out["ok"] = lo <= s_at_k <= hi
    else:
        out["ok"] = rel is not None and rel <= TOLERANCE
    return out


def share(k_num: int, k_den: int, s_num: int, s_den: int) -> dict:
    kv = k_num / k_den if k_den else None
    sv = s_num / s_den if s_den else None
    rel = abs(sv - kv) / kv if kv and sv is not None else (0.0 if kv == sv else None)
    out = {"kernel": None if kv is None else round(kv, 4), "sim": None if sv is None else round(sv, 4),
           "rel_err": None if rel is None else round(rel, 4), "kernel_events": k_den, "sim_events": s_den}
    if k_den < POISSON_BELOW:
        out["ok"] = None if k_den == 0 or s_den == 0 else True  # too few events to judge a share
    else:
        out["ok"] = rel is not None and rel <= TOLERANCE
    return out


def buddyinfo_distance(kernel: dict[str, list[int]], sim: dict[str, list[int]]) -> dict:
    kpages = spages = diff = 0
    for zone, kv in kernel.items():
        sv = sim.get(zone, [0] * len(kv))
        for o, (a, b) in enumerate(zip(kv, sv)):
            kpages += a << o
            spages += b << o
            diff += abs(a - b) << o
    return {"kernel": kpages, "sim": spages, "rel_err": round(diff / kpages, 4) if kpages else None,
            "kernel_buddyinfo": kernel, "sim_buddyinfo": sim,
            "ok": bool(kpages) and diff / kpages <= TOLERANCE}


def sim_buddyinfo(m) -> dict[str, list[int]]:
    return {m.zone_names[z]: vmstat.zone_nr_free(m, z) for z in range(m.nr_zones)}


def fidelity_table(res, after: Snapshot | None = None) -> dict:
    """The statistics of one replay (a `cmasim.trace.replay.ReplayResult`)."""
    k, s = res.kernel, res.sim
    out = {
        "pcp_refill_per_1000_allocs": stat(k.refill_blocks, k.allocs, s.refill_blocks, s.allocs, 1e3),
        "buddy_path_per_1000_allocs": stat(k.buddy_blocks, k.allocs, s.buddy_blocks, s.allocs, 1e3),
        "pcpu_drain_per_1000_frees": stat(k.pcpu_drain, k.frees, s.pcpu_drain, s.frees, 1e3),
        "extfrag_per_1e6_allocs": stat(k.extfrag, k.allocs, s.extfrag, s.allocs, 1e6),
        "extfrag_change_ownership_share": share(k.extfrag_change_ownership, k.extfrag,
                                                s.extfrag_change_ownership, s.extfrag),
    }
    if after is not None:
        out["buddyinfo_after"] = buddyinfo_distance(after.buddyinfo(), sim_buddyinfo(res.machine))
    return out


def markdown_table(name: str, fid: dict) -> str:
    rows = [f"| statistic ({name}) | kernel | sim | rel. error | kernel events | sim events | ok |",
            "|---|---|---|---|---|---|---|"]
    for key, v in fid.items():
        ke = v.get("kernel_events", "")
        se = v.get("sim_events", "")
        if key == "buddyinfo_after":
            ke, se = "free pages", "free pages"
        rel = "–" if v["rel_err"] is None else f"{100 * v['rel_err']:.1f}%"
        extra = f" (95%: {v['kernel_95'][0]}–{v['kernel_95'][1]})" if "kernel_95" in v else ""
        rows.append(f"| {key} | {v['kernel']}{extra} | {v['sim']} | {rel} | {ke} | {se} | "
                    f"{'–' if v['ok'] is None else ('yes' if v['ok'] else 'no')} |")
    return "\n".join(rows) + "\n"


_ = mz  # (constants documented above refer to mmzone's TR_* kinds)
