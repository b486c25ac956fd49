#!/usr/bin/env python3
"""Fit the alloc_contig_range() cost model to the oracle's pins_fail_cma64 latencies.

    PYTHONPATH=. python tools/fit_cost_model.py [FOLDER] [--hw-migrate-us 4.0]

Model of one successful range (docs/model.md "Cost model"):

    ms = fixed + pages_migrated * per_page

where `fixed` is the per-call work (isolation, drains, test_pages_isolated, undo) and
`per_page` the migration of one borrowed 4 KiB page (scan, unmap, copy, remap). Data: every
successful WINDOW (ret=0) of every phase; the first range of an attempt migrates the
borrowed pages of the whole range (fill_pages_in_cma x size / area), a later range only
those of the MiB it adds (fill share x 256). The per-page cost is the ratio of the
per-size medians of first ranges to their pages (weighted by count), the fixed cost the
median residual of the later ranges (medians: emulation adds long outliers).
The speed factor is per_page / the hardware migrate cost (costs.migrate_page_us, 4 us);
the fixed cost is then expressed in hardware µs as costs.contig_call_us (minus what
isolation and drain already charge). Prints the [costs] table for the scenario.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from cmasim.oracle import DATA, _kv


def windows(folder: Path):
    params = _kv((folder / "params.txt").read_text())
    area = int(_kv((folder / "cma_area.txt").read_text())["count"])
    for spec in params["LOADS"].split(","):
        ph = spec.split(":")[0]
        fill = {}
        for line in (folder / f"{ph}.txt").read_text().splitlines():
            if line.startswith("ALLOC"):
                a = _kv(line)
                fill[(a["size_mib"], a["try"])] = int(a["fill_pages_in_cma"])
        for line in (folder / f"{ph}.txt").read_text().splitlines():
            if line.startswith("WINDOW"):
                w = _kv(line)
                yield ph, int(w["size_mib"]), int(w["i"]), int(w["ret"]), int(w["ns"]) / 1e6, \
                    fill.get((w["size_mib"], w["try"]), 0), area


def fit(folder: Path, hw_migrate_us: float, isolate_us: float, drain_us: float) -> dict:
    rows = list(windows(folder))
    area = rows[0][6]
    pts = []  # (pages migrated, ms) per group median
    for size in sorted({r[1] for r in rows}, reverse=True):
        first = [(r[5] * size * 256 / area, r[4]) for r in rows if r[1] == size and r[2] == 0 and r[3] == 0]
        if first:
            pts.append((statistics.median(p for p, _ in first), statistics.median(m for _, m in first), len(first),
                        f"first range, {size} MiB"))
    later = [(r[5] / area * 256, r[4]) for r in rows if r[2] > 0 and r[3] == 0]
    pts.append((statistics.median(p for p, _ in later), statistics.median(m for _, m in later), len(later),
                "later ranges"))
    # per page: the first ranges through the origin (their fixed part is ~1% of them);
    # fixed: the median residual of the later ranges (a median: their added MiB is sometimes
    # free, sometimes fully borrowed, and failed first ranges make some of them long).
    per_page_ms = sum(m * n for _, m, n, _ in pts[:-1]) / sum(p * n for p, _, n, _ in pts[:-1])
    fixed_ms = statistics.median(ms - p * per_page_ms for p, ms in later)
    factor = per_page_ms * 1000 / hw_migrate_us
    nblocks = 32  # pageblocks isolated per range of the 64 MiB area
    call_hw_us = max(0.0, fixed_ms * 1000 / factor - nblocks * isolate_us - drain_us)
    return {"points": pts, "fixed_ms": fixed_ms, "per_page_us": per_page_ms * 1000, "speed_factor": factor,
            "contig_call_us": call_hw_us,
            "pred": [fixed_ms + per_page_ms * p for p, _, _, _ in pts]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", nargs="?", type=Path, default=DATA)
    ap.add_argument("--hw-migrate-us", type=float, default=4.0)
    ap.add_argument("--isolate-us", type=float, default=1.0)
    ap.add_argument("--drain-us", type=float, default=20.0)
    a = ap.parse_args(argv)
    r = fit(a.folder, a.hw_migrate_us, a.isolate_us, a.drain_us)
    print("| group | ranges | pages migrated (est.) | kernel ms (median) | fit ms |")
    print("| --- | --- | --- | --- | --- |")
    for (p, m, n, name), pr in zip(r["points"], r["pred"]):
        print(f"| {name} | {n} | {p:.0f} | {m:.2f} | {pr:.2f} |")
    print(f"\nfixed {r['fixed_ms']:.2f} ms per range, {r['per_page_us']:.2f} us per migrated page (emulated)")
    print("\n[costs]  # fitted by tools/fit_cost_model.py")
    print(f"migrate_page_us = {a.hw_migrate_us}")
    print(f"contig_call_us = {r['contig_call_us']:.0f}")
    print(f"speed_factor = {r['speed_factor']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
