"""Kernel vs model, cell by cell, for the oracle's pins_fail experiment.

`kernel_cells(folder)` reads the per-phase `<phase>.txt` files written by the oracle's
oracle-tool (ALLOC and WINDOW lines; ../shared/oracle/tools/pins_fail_table.py reads the
same lines); `sim_cells(metrics)` reads the `workload.pins_fail` part of a run's metrics
(cmasim.workload.pins_fail). A cell is one (phase, request size). `table()` prints both side
by side as markdown.

The kernel's WINDOW lines of this data set carry no __alloc_contig_migrate_range() return,
so its busy ranges are classified by their signature: the first busy page still
DMA-pinned at test_pages_isolated() (CMAO_FIN_DMA_PINNED) means the page was isolated and
pinned before it moved ("migration gave up": the range ends early, 5 x 10 passes fail in
well under a millisecond while the pin lasts); an unpinned busy page means it was skipped
at the isolation scan ("left behind", or a give-up whose pin ended before the test, which
the data cannot tell apart).

    python -m cmasim.oracle [--seeds 1,2] [--set key=value ...] [--lkml]

runs the built-in `oracle-pins-fail` scenario (compiled) and prints the table; with --lkml,
`oracle-lkml-pins` against the older lkml_pins run (lkml_kernel_cells()).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

FIN_DMA_PINNED = 0x10  # cmaoracle_uapi.h CMAO_FIN_DMA_PINNED
KV = re.compile(r"(\w+)=(\S+)")
DATA = Path(__file__).resolve().parent.parent / "data" / "oracle" / "linux-6.1-cma-qemu" / "pins_fail_cma64"


def _kv(line: str) -> dict[str, str]:
    return dict(KV.findall(line))


def _med(v):
    return statistics.median(v) if v else None


def kernel_cells(folder: Path = DATA) -> dict[tuple[str, int], dict]:
    """{(phase, size MiB): cell} from the oracle folder, phases in LOADS order."""
    params = _kv((folder / "params.txt").read_text())
    out = {}
    for spec in params["LOADS"].split(","):
        ph = spec.split(":")[0]
        allocs, wins = [], []
        for line in (folder / f"{ph}.txt").read_text().splitlines():
            if line.startswith("ALLOC"):
                allocs.append(_kv(line))
            elif line.startswith("WINDOW"):
                wins.append(_kv(line))
        for size in dict.fromkeys(int(a["size_mib"]) for a in allocs):
            aa = [a for a in allocs if int(a["size_mib"]) == size]
            ww = [w for w in wins if int(w["size_mib"]) == size]
            busy = [w for w in ww if w["ret"] == "-16"]
            first = [int(w["ns"]) / 1e6 for w in ww if w["i"] == "0"]
            later = [int(w["ns"]) / 1e6 for w in ww if w["i"] != "0"]
            errs: dict[str, int] = {}
            for a in aa:
                if a["ok"] != "1":
                    errs[a["err"]] = errs.get(a["err"], 0) + 1
            out[(ph, size)] = {
                "attempts": len(aa), "fail": sum(a["ok"] != "1" for a in aa), "errors": errs,
                "ranges": sum(int(a["windows"]) for a in aa), "busy_retries": sum(int(a["ebusy"]) for a in aa),
                "busy_pinned_at_test": sum(bool(int(w["fin_flags"], 16) & FIN_DMA_PINNED) for w in busy),
                "busy_unpinned_at_test": sum(not int(w["fin_flags"], 16) & FIN_DMA_PINNED for w in busy),
                "first_range_ms_med": _med(first), "later_range_ms_med": _med(later),
                "held_cma_start_med": _med([int(a["held_cma_start"]) for a in aa]),
                "held_cma_max": max(int(a["held_cma_max"]) for a in aa),
                "pins_cma_during_med": _med([int(a["pins_cma_during"]) for a in aa]),
                "fill_pages_in_cma_med": _med([int(a["fill_pages_in_cma"]) for a in aa]),
            }
    return out


LKML = DATA.parent / "lkml_pins"
LKML_PHASES = ("nopin", "pins_short", "pins_short_heavy", "pins_longterm")


def _first_line(path: Path, text: str, tag: str) -> str:
    """The first line of `text` starting with `tag`; a ValueError naming the file if none."""
    line = next((ln for ln in text.splitlines() if ln.startswith(tag)), None)
    if line is None:
        raise ValueError(f"{path}: no {tag} line")
    return line


def lkml_kernel_cells(folder: Path = LKML) -> dict[tuple[str, int], dict]:
    """{(phase, size MiB): cell} of the older lkml_pins run (`<phase>.txt`: CONFIG, ALLOC lines
    without WINDOW records). Every attempt there succeeded and the area was free before each,
    so cma_alloc() started at the area's first aligned range and each -EBUSY moved one
    alignment step on (mm/cma.c cma_alloc()): busy retries = (pfn - base_pfn) >> align. The
    sum per phase equals the trace's cma_alloc_busy_retry count (`<phase>.trace.event_counts`)."""
    out = {}
    for ph in LKML_PHASES:
        path = folder / f"{ph}.txt"
        text = path.read_text()
        cfg = _kv(_first_line(path, text, "CONFIG"))
        try:
            base, align = int(cfg["base_pfn"]), int(cfg["align"])
        except (KeyError, ValueError) as e:
            raise ValueError(f"{path}: CONFIG line: field {e} missing or not a number") from None
        allocs = [_kv(line) for line in text.splitlines() if line.startswith("ALLOC")]
        pins = _kv(_first_line(path, text, "PINS"))
        for size in dict.fromkeys(int(a["size_mib"]) for a in allocs):
            aa = [a for a in allocs if int(a["size_mib"]) == size]
            ok = [a for a in aa if a["ok"] == "1"]
            out[(ph, size)] = {
                "attempts": len(aa), "ok": len(ok), "fail": len(aa) - len(ok),
                "busy_retries": sum((int(a["pfn"]) - base) >> align for a in ok),
                "ok_ms_med": _med([int(a["ns"]) / 1e6 for a in ok]),
                "fill_pages_in_cma_med": _med([int(a["fill_pages_in_cma"]) for a in aa]),
                "phase_pins": int(pins["done"]), "phase_pins_in_cma": int(pins["pages_in_cma"]),
            }
    return out


def _seed_mean(ss: list[dict]):
    """mean(field) over the seeds' cells that have it (None if none has)."""
    def mean(f):
        v = [s[f] for s in ss if s.get(f) is not None]
        return sum(v) / len(v) if v else None
    return mean


def lkml_table(kernel: dict, sims: list[dict]) -> str:
    """Markdown, one row per (phase, size): ok, busy retries (sim: mean, min-max over seeds),
    median latency of the successful attempts, fill pages in CMA."""
    head = ("| phase | MiB | ok k / sim | busy retries k / sim (min-max) | ok ms median k / sim | "
            "fill in CMA k / sim |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for key, k in kernel.items():
        ss = [s[key] for s in sims if key in s]
        if not ss:
            continue
        mean = _seed_mean(ss)
        busy = [s["busy_retries"] for s in ss]
        lines.append(f"| {key[0]} | {key[1]} | {k['ok']}/{k['attempts']} / {mean('ok'):.1f} | "
                     f"{k['busy_retries']} / {mean('busy_retries'):.1f} ({min(busy)}-{max(busy)}) | "
                     f"{_f(k['ok_ms_med'])} / {_f(mean('ok_ms_med'))} | "
                     f"{_f(k['fill_pages_in_cma_med'])} / {_f(mean('fill_pages_in_cma_med'))} |")
    return "\n".join(lines)


def sim_cells(metrics: dict) -> dict[tuple[str, int], dict]:
    """{(phase, size MiB): cell} from one run's metrics (same keys as kernel_cells, plus the
    model's exact cause split busy_gave_up / busy_left_behind)."""
    out = {}
    for ph in metrics["workload"]["pins_fail"]["phases"]:
        for size, c in ph["sizes"].items():
            cell = dict(c)
            cell["busy_pinned_at_test"] = c["busy_still_pinned"]
            cell["busy_unpinned_at_test"] = c["busy_retries"] - c["busy_still_pinned"]
            out[(ph["name"], int(float(size)))] = cell
    return out


def _f(x, nd=0):
    return "-" if x is None else f"{x:.{nd}f}"


def table(kernel: dict, sims: list[dict]) -> str:
    """Markdown: one row per cell; sim columns are the mean over seeds (min-max for failures);
    a cell is within ±2 when the mean of the seeds' failures is."""
    head = ("| phase | MiB | fail k / sim (min-max) | busy k / sim | busy pinned-at-test k / sim | sim gave up / "
            "left behind | first range ms k / sim | later range ms k / sim | CMA pins during k / sim | "
            "fill in CMA k / sim | within ±2 |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    ok = 0
    for key, k in kernel.items():
        ss = [s[key] for s in sims if key in s]
        if not ss:
            continue
        mean = _seed_mean(ss)
        fails = [s["fail"] for s in ss]
        hit = abs(mean("fail") - k["fail"]) <= 2
        ok += hit
        lines.append(
            f"| {key[0]} | {key[1]} | {k['fail']} / {mean('fail'):.1f} ({min(fails)}-{max(fails)}) | "
            f"{k['busy_retries']} / {mean('busy_retries'):.1f} | {k['busy_pinned_at_test']} / "
            f"{mean('busy_pinned_at_test'):.1f} | {mean('busy_gave_up'):.1f} / {mean('busy_left_behind'):.1f} | "
            f"{_f(k['first_range_ms_med'])} / {_f(mean('first_range_ms_med'))} | "
            f"{_f(k['later_range_ms_med'], 1)} / {_f(mean('later_range_ms_med'), 1)} | "
            f"{_f(k['pins_cma_during_med'])} / {_f(mean('pins_cma_during_med'))} | "
            f"{_f(k['fill_pages_in_cma_med'])} / {_f(mean('fill_pages_in_cma_med'))} | {'yes' if hit else 'NO'} |")
    lines.append("")
    lines.append(f"{ok} of {len(kernel)} cells within ±2 failures of the kernel (mean of {len(sims)} seeds).")
    return "\n".join(lines)


def run_cells(seeds: list[int], sets: list[str] | None = None, policy: str = "linux-6.1",
              scenario: str = "oracle-pins-fail") -> list[dict]:
    from cmasim.policy import get_policy
    from cmasim.run import run_scenario
    from cmasim.scenario import load_scenario
    sc = load_scenario(scenario, sets or [])
    return [sim_cells(run_scenario(sc, get_policy(policy), seed=s)) for s in seeds]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cmasim.oracle", description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1", help="comma list of seeds (default 1)")
    ap.add_argument("--set", action="append", default=[], help="scenario override key=value")
    ap.add_argument("--lkml", action="store_true", help="the lkml_pins run (scenario oracle-lkml-pins)")
    a = ap.parse_args(argv)
    try:
        seeds = [int(x) for x in a.seeds.split(",")]
    except ValueError:
        ap.error(f"--seeds: {a.seeds!r} is not a comma list of integers")
    try:
        if a.lkml:
            print(lkml_table(lkml_kernel_cells(), run_cells(seeds, a.set, scenario="oracle-lkml-pins")))
        else:
            print(table(kernel_cells(), run_cells(seeds, a.set)))
    except (ValueError, OSError) as e:  # ScenarioError is a ValueError: bad --set, broken data file
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
