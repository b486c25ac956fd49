"""Issue 13, target 5's CPU axis: what a 64-CPU machine's churn event costs against a 2-CPU one's,
and how much of the difference is the kernel's work, in one sitting.

    PYTHONPATH=. python bench/cpu_axis.py [--rounds 3] [--events 2000000] [--json OUT] [--no-native]

Four configurations, each at 2 and 64 CPUs, 16 GiB:

  default   `cmasim bench`'s machine (DMA32 3 GiB + Normal 13 GiB) and churn (80% usage). 80% of
            16 GiB is about all of the Normal zone, so it runs at its high watermark and the
            allocator falls back to DMA32 (`get_page_from_freelist`).
  usage70   the same machine, the churn at 70% usage: no zone at a watermark.
  onezone   one 16 GiB Normal zone, the default churn (80%): 20% free, no watermark either.
  native    the native reference core (bench/native/c/scale.c, gcc -O2) with v6.18's pcp->high
            auto-tuning and THP per-CPU lists, one 16 GiB zone, 80% usage; its high_min/high_max
            are those of the onezone machine at the same CPU count. Skipped without gcc.

Per run: ns/event, the CPU time of `--events` timed events after 600,000 warm-up events (cmasim:
`churn` in chunks of 50,000; native: one `run`), and the work an event makes the allocator do:
pages moved between the buddy lists and the per-CPU lists per event (refill + drain; cmasim's
vmstat counters, the native's own), and for cmasim the share of chunk ends at which the largest
zone has ZONE_BELOW_HIGH set (the v6.7+ regime in which nr_pcp_high() shrinks pcp->high and
frees drain the lists), and the blocks drained per event (mm_page_pcpu_drain records of
100,000 more events, traced after the timed ones; the native counts its own). From the medians:
the cost of one extra block moved (64-CPU minus 2-CPU ns/event over twice the extra blocks
drained, since every block drained is refilled again) and the cost per block move that would put
the 64-CPU event at 2× the 2-CPU one. Rounds alternate every configuration and CPU count; a round's ratio is its
64-CPU run over its 2-CPU run; the table gives the median and min-max of the ratios.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cmasim.bench import NEVER, make_machine  # noqa: E402
from cmasim.machine import Machine, MachineConfig  # noqa: E402
from cmasim.mm import mmzone as mz  # noqa: E402
from cmasim.outdir import atomic_file  # noqa: E402
from cmasim.policy import get_policy  # noqa: E402
from cmasim.workload.churn import churn, churn_params  # noqa: E402

GIB = 16
CPUS = (2, 64)
WARMUP = 600_000
CHUNK = 50_000
COUNT_EVENTS = 100_000  # traced after the timed events, to count the blocks drained
DRAIN_MASK = 1 << mz.TR_MM_PAGE_PCPU_DRAIN
NATIVE_SRC = ROOT / "bench" / "native" / "c" / "scale.c"


def machine(config: str, cpus: int, trace_capacity: int = 0) -> Machine:
    """`cmasim bench`'s machine (`cmasim.bench.make_machine`), or one 16 GiB Normal zone."""
    trace = dict(trace_capacity=trace_capacity, trace_mask=DRAIN_MASK)
    if config != "onezone":
        return make_machine(GIB, cpus=cpus, **trace)
    cfg = MachineConfig(zones=[("Normal", GIB * 262144)], nr_cpus=cpus, reclaim=False, compaction=False, **trace)
    return Machine(cfg, get_policy("linux-6.18"), seed=1)


def run_cmasim(config: str, cpus: int, events: int) -> dict:
    # Trace buffer allocated but off while timed (the check is the same as with no buffer).
    m = machine(config, cpus, trace_capacity=COUNT_EVENTS * 8)
    m.C[mz.H_TRACE_ON] = 0
    W = churn_params(m, target_usage=0.70 if config == "usage70" else 0.80)
    S, C = m.S, m.C
    churn(S, C, W, WARMUP, NEVER)
    vm = C[mz.H_VM]
    big = max(range(C[mz.H_NZONES]), key=lambda z: C[C[mz.H_ZONE] + z * mz.ZS + mz.Z_MANAGED])
    zflags = C[mz.H_ZONE] + big * mz.ZS + mz.Z_FLAGS
    moved0 = C[vm + mz.VM_PCP_REFILL_PAGES] + C[vm + mz.VM_PCP_DRAIN_PAGES]
    cpu_s, below, chunks, done = 0.0, 0, 0, 0
    while done < events:
        n = min(CHUNK, events - done)
        t = time.process_time()
        churn(S, C, W, n, NEVER)
        cpu_s += time.process_time() - t
        below += bool(C[zflags] & mz.ZONE_BELOW_HIGH)
        chunks += 1
        done += n
    moved = C[vm + mz.VM_PCP_REFILL_PAGES] + C[vm + mz.VM_PCP_DRAIN_PAGES] - moved0
    # Blocks drained (mm_page_pcpu_drain records) in COUNT_EVENTS more events; refills take as many.
    C[mz.H_TRACE_N] = 0
    C[mz.H_TRACE_ON] = DRAIN_MASK
    counted = churn(S, C, W, COUNT_EVENTS, NEVER)  # fewer if the buffer nearly filled
    if C[mz.H_TRACE_LOST] or counted == 0:
        raise RuntimeError(f"{config}, {cpus} CPUs: drain records lost ({C[mz.H_TRACE_LOST]}) or none counted")
    return {"ns_per_event": cpu_s / events * 1e9, "pcp_pages_moved_per_event": float(moved / events),
            "blocks_drained_per_event": float(C[mz.H_TRACE_N] / counted), "below_high_share": below / chunks}


def build_native(tmp: str) -> dict[int, str] | None:
    """One binary per CPU count, its pcp limits those of the onezone machine (None without gcc)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    out = {}
    for cpus in CPUS:
        C = machine("onezone", cpus).C
        zb = C[mz.H_ZONE]
        exe = os.path.join(tmp, f"scale{cpus}")
        subprocess.run([gcc, "-O2", "-march=native", "-o", exe, str(NATIVE_SRC), "-DPCP_AUTOTUNE=1", "-DPCP_THP=1",
                        f"-DNCPU={cpus}", f"-DHIGH_MIN={C[zb + mz.Z_HIGH_MIN]}", f"-DHIGH_MAX={C[zb + mz.Z_HIGH_MAX]}",
                        f"-DPCP_BATCH={C[zb + mz.Z_BATCH]}"], check=True)
        out[cpus] = exe
    return out


def run_native(exe: str, events: int) -> dict:
    r = subprocess.run([exe, str(GIB), str(WARMUP), str(events)], capture_output=True, text=True, check=True)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return {"ns_per_event": res["ns_per_op"],
            "pcp_pages_moved_per_event": res["refill_pages_per_op"] + res["drain_pages_per_op"],
            "blocks_drained_per_event": res["drain_blocks_per_op"],
            "below_high_share": None, "high_min": res["high_min"], "high_max": res["high_max"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--json", help="write every run and the summary here")
    ap.add_argument("--no-native", action="store_true", help="leave out the native reference")
    a = ap.parse_args()
    if a.rounds < 1 or a.events < 1:
        ap.error("--rounds and --events must be at least 1")
    if a.json and not os.access(os.path.dirname(os.path.abspath(a.json)), os.W_OK):
        ap.error(f"--json {a.json}: its folder does not exist or cannot be written")
    configs = ["default", "usage70", "onezone", "native"]
    with tempfile.TemporaryDirectory() as tmp:
        native = None if a.no_native else build_native(tmp)
        if native is None:
            configs.remove("native")
            if not a.no_native:
                print("cpu_axis: no gcc, the native reference is left out", file=sys.stderr)
        runs: dict[str, dict[int, list[dict]]] = {c: {n: [] for n in CPUS} for c in configs}
        for r in range(a.rounds):
            for c in configs:
                for cpus in CPUS:
                    res = run_native(native[cpus], a.events) if c == "native" else run_cmasim(c, cpus, a.events)
                    runs[c][cpus].append(res)
                    bh = "" if res["below_high_share"] is None else f", ZONE_BELOW_HIGH {res['below_high_share']:.0%}"
                    print(f"round {r + 1} {c:8s} {cpus:2d} CPUs: {res['ns_per_event']:.0f} ns/event, "
                          f"{res['pcp_pages_moved_per_event']:.2f} pcp pages moved/event, "
                          f"{res['blocks_drained_per_event']:.3f} blocks drained/event{bh}", flush=True)
    summary = {}
    print("\n| configuration | ns/event, 2 → 64 CPUs | 64 / 2 CPUs, median (min–max) | pcp pages moved/event "
          "| blocks drained/event | ZONE_BELOW_HIGH | ns per block moved (extra) | needed for 2× |")
    print("|---|---|---|---|---|---|---|---|")
    for c in configs:
        lo, hi = runs[c][2], runs[c][64]
        ratios = [h["ns_per_event"] / low["ns_per_event"] for low, h in zip(lo, hi)]
        med = {n: {k: statistics.median(x[k] for x in runs[c][n])
                   for k in ("ns_per_event", "pcp_pages_moved_per_event", "blocks_drained_per_event")} for n in CPUS}
        # An extra block drained is also refilled: two moves between the buddy and the pcp lists.
        extra_moves = 2 * (med[64]["blocks_drained_per_event"] - med[2]["blocks_drained_per_event"])
        per_move = (med[64]["ns_per_event"] - med[2]["ns_per_event"]) / extra_moves if extra_moves > 0 else None
        needed = med[2]["ns_per_event"] / extra_moves if extra_moves > 0 else None
        summary[c] = {"median": med, "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
                      "ratio_max": max(ratios), "ns_per_extra_block_move": per_move,
                      "ns_per_block_move_for_2x": needed}
        bh = "—" if lo[0]["below_high_share"] is None else (
            f"{statistics.median(x['below_high_share'] for x in lo):.0%} → "
            f"{statistics.median(x['below_high_share'] for x in hi):.0%}")
        f = (lambda v: "—" if v is None else f"{v:.0f}")
        print(f"| {c} | {med[2]['ns_per_event']:.0f} → {med[64]['ns_per_event']:.0f} "
              f"| **{statistics.median(ratios):.2f}** ({min(ratios):.2f}–{max(ratios):.2f}) "
              f"| {med[2]['pcp_pages_moved_per_event']:.2f} → {med[64]['pcp_pages_moved_per_event']:.2f} "
              f"| {med[2]['blocks_drained_per_event']:.3f} → {med[64]['blocks_drained_per_event']:.3f} | {bh} "
              f"| {f(per_move)} | {f(needed)} |")
    print(f"\n{GIB} GiB, {a.events:,} timed events after {WARMUP:,}, {a.rounds} rounds")
    if a.json:
        try:
            with atomic_file(a.json) as tmpf:
                tmpf.write_text(json.dumps({"gib": GIB, "events": a.events, "runs": runs, "summary": summary}, indent=1))
        except OSError as e:
            sys.exit(f"cpu_axis: cannot write {a.json}: {e.strerror}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("cpu_axis: interrupted; nothing written")
    except subprocess.CalledProcessError as e:
        sys.exit(f"cpu_axis: {e.cmd[0]} failed (exit {e.returncode}); nothing written")
    except RuntimeError as e:
        sys.exit(f"cpu_axis: {e}; nothing written")
