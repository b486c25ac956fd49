"""Scale table of the compiled core: per-event cost and bytes of state per page for 1, 4, 16
and 64 GiB (2 CPUs) and 2, 8 and 64 CPUs (16 GiB), as a markdown table and a plot.

    PYTHONPATH=. python bench/scale.py [--events N] [--runs R] [--out docs/perf-scale.svg]
    PYTHONPATH=. python bench/scale.py --points 16x2,16x64 --out none   # the CPU-count target only

Each point is `cmasim.bench.run_bench` (fresh machine, warm-up to steady state, then the timed
churn); the figure is the median of R runs with min-max, beside the work behind it: the pages
the timed events moved between the buddy and the per-CPU lists, per event. Absolute costs vary with the machine's
load; compare points of one invocation only.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cmasim.bench import run_bench  # noqa: E402

POINTS = [(1, 2), (4, 2), (16, 2), (64, 2), (16, 8), (16, 64)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default="docs/perf-scale.svg", help="the plot; 'none' for no plot")
    ap.add_argument("--json", help="also write the rows as JSON here")
    ap.add_argument("--from-json", help="re-draw the table and plot from rows written by --json")
    ap.add_argument("--points", help="GIBxCPUS,... instead of the whole curve (must include 16x2, the reference)")
    a = ap.parse_args()
    try:
        points = [tuple(int(v) for v in p.split("x", 1)) for p in a.points.split(",")] if a.points else POINTS
        if any(len(p) != 2 for p in points):
            raise ValueError
    except ValueError:
        ap.error(f"--points {a.points!r}: expected GIBxCPUS,... (e.g. 16x2,16x64)")
    if (16, 2) not in points and not a.from_json:
        ap.error("--points: must include 16x2, the reference the others are divided by")
    rows = json.loads(Path(a.from_json).read_text()) if a.from_json else []
    for gib, cpus in ([] if a.from_json else points):
        r = run_bench(gib, runs=a.runs, events=a.events, measure_start=False, cpus=cpus)
        r["ns_per_event_median"] = 1e9 / r["events_per_s_median"]
        r["ns_per_event_min"] = 1e9 / r["events_per_s_max"]
        r["ns_per_event_max"] = 1e9 / r["events_per_s_min"]
        rows.append(r)
        print(f"{gib} GiB {cpus} CPUs: {r['ns_per_event_median']:.0f} ns/event "
              f"({r['ns_per_event_min']:.0f}-{r['ns_per_event_max']:.0f}), "
              f"{r['state_bytes_per_page']} B/page, RSS {r['peak_rss_mib']} MiB", flush=True)
    base = next(r for r in rows if r["gib"] == 16 and r["cpus"] == 2)["ns_per_event_median"]
    print("\n| GiB | CPUs | ns/event, median (min–max) | × 16 GiB/2 CPUs | pcp pages moved/event | state bytes/page |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        moved = r.get("pcp_pages_moved_per_event")  # rows written before it was measured have none
        print(f"| {r['gib']} | {r['cpus']} | {r['ns_per_event_median']:.0f} ({r['ns_per_event_min']:.0f}–"
              f"{r['ns_per_event_max']:.0f}) | {r['ns_per_event_median'] / base:.2f} "
              f"| {'—' if moved is None else f'{moved:g}'} | {r['state_bytes_per_page']} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    if a.out == "none":
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, sel, key, label in ((ax1, [r for r in rows if r["cpus"] == 2], "gib", "simulated memory (GiB), 2 CPUs"),
                                (ax2, [r for r in rows if r["gib"] == 16], "cpus", "simulated CPUs, 16 GiB")):
        x = [r[key] for r in sel]
        y = [r["ns_per_event_median"] for r in sel]
        lo = [r["ns_per_event_median"] - r["ns_per_event_min"] for r in sel]
        hi = [r["ns_per_event_max"] - r["ns_per_event_median"] for r in sel]
        ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3)
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(v) for v in x])
        ax.set_xlabel(label)
        ax.set_ylabel("ns per churn event")
        ax.set_ylim(0, max(r["ns_per_event_max"] for r in rows) * 1.15)
        ax2b = ax.twinx()
        ax2b.plot(x, [r["state_bytes_per_page"] for r in sel], "s--", color="tab:orange")
        ax2b.set_ylabel("state bytes / page", color="tab:orange")
        ax2b.set_ylim(0, 40)
    fig.suptitle("cmasim bench: per-event cost and state per page")
    fig.tight_layout()
    fig.savefig(a.out)
    print(f"plot: {a.out}")


if __name__ == "__main__":
    main()
