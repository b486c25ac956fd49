"""Per-event cost of the bench's churn, before/after in one sitting: tree A, tree B, A, B, ...

    python bench/event_cost.py CPUS ROUNDS TREE_A [TREE_B ...] [--gib G] [--json OUT]

Each run is a child process with that source tree (its numba cache compiled) on PYTHONPATH:
`make_machine(G, cpus=CPUS)` as `cmasim bench` builds it, 600,000 warm-up events, then
8 chunks of 250,000 events timed with the process's CPU time (less sensitive than the wall
clock to other processes). A run prints its whole-run ns/event and its fastest chunk (the
least disturbed by the host); the summary gives, per tree, the median and min–max of both over
the rounds. The trees run the same events (results are bit-identical), so only speed differs.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cmasim.outdir import atomic_file  # noqa: E402

CHILD = """
import json, time
from cmasim.bench import NEVER, make_machine
from cmasim.workload.churn import churn, churn_params
m = make_machine({gib}, cpus={cpus}); W = churn_params(m); churn(m.S, m.C, W, 600_000, NEVER)
xs = []
for _ in range(8):
    t = time.process_time(); churn(m.S, m.C, W, 250_000, NEVER); xs.append((time.process_time() - t) / 250e-6)
print(json.dumps({{"ns_per_event": sum(xs) / len(xs), "fastest_chunk": min(xs)}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cpus", type=int)
    ap.add_argument("rounds", type=int)
    ap.add_argument("trees", nargs="+")
    ap.add_argument("--gib", type=float, default=16)
    ap.add_argument("--json", help="write every run and the summary here")
    a = ap.parse_args()
    if a.cpus < 1 or a.rounds < 1 or a.gib <= 0:
        ap.error("CPUS and ROUNDS must be at least 1, --gib above 0")
    for t in a.trees:
        if not os.path.isfile(os.path.join(t, "cmasim", "bench.py")):
            ap.error(f"{t}: not a cmasim source tree (no cmasim/bench.py)")
    runs: dict[str, list[dict]] = {t: [] for t in a.trees}
    for r in range(a.rounds):
        for t in a.trees:
            r = subprocess.run([sys.executable, "-c", CHILD.format(gib=a.gib, cpus=a.cpus)], cwd=t,
                               env=dict(os.environ, PYTHONPATH=t), capture_output=True, text=True)
            if r.returncode != 0:
                last = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
                sys.exit(f"event_cost: the run in {t} failed (exit {r.returncode}): {last}")
            res = json.loads(r.stdout.strip().splitlines()[-1])
            runs[t].append(res)
            print(t, f"{res['ns_per_event']:.0f} ns/event, fastest chunk {res['fastest_chunk']:.0f}", flush=True)
    summary = {}
    for t, rs in runs.items():
        whole = [x["ns_per_event"] for x in rs]
        fast = [x["fastest_chunk"] for x in rs]
        summary[t] = {"ns_per_event_median": statistics.median(whole), "min": min(whole), "max": max(whole),
                      "fastest_chunk_median": statistics.median(fast), "fastest_min": min(fast), "fastest_max": max(fast)}
        print(f"{t}: {statistics.median(whole):.0f} ({min(whole):.0f}-{max(whole):.0f}) ns/event; "
              f"fastest chunk {statistics.median(fast):.0f} ({min(fast):.0f}-{max(fast):.0f}); "
              f"{a.gib:g} GiB, {a.cpus} CPUs, {a.rounds} rounds")
    if a.json:
        try:
            with atomic_file(a.json) as tmp:
                tmp.write_text(json.dumps({"gib": a.gib, "cpus": a.cpus, "runs": runs, "summary": summary}, indent=1))
        except OSError as e:
            sys.exit(f"event_cost: cannot write {a.json}: {e.strerror}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("event_cost: interrupted; nothing written")
