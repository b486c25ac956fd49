"""Before/after against the native floor in one sitting: native, tree A, native, tree B, native, ...

    python bench/ab_native.py GIB ROUNDS TREE_A [TREE_B ...]

Each cmasim run is a child process with that source tree (its numba cache compiled) on
PYTHONPATH, timing `cmasim.bench.run_bench(GIB, runs=1)` inside the child (steady-state
churn, 5 M events); each ratio is against the mean of the two native runs around it. Prints
every run in order, then per tree the ratio's median and min-max, then the raw JSON.
"""
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

gib, rounds = float(sys.argv[1]), int(sys.argv[2])
trees = sys.argv[3:]
ref = str(Path(__file__).resolve().parent / "native" / "run-native.sh")
PY = sys.executable
def native():
    env = dict(os.environ, GIB=f"{gib:g}", PYTHONPATH="", PYTHON=PY)
    return float(subprocess.run(["bash", ref], env=env, capture_output=True, text=True, check=True).stdout.split()[-1])
def sim(tree):
    env = dict(os.environ, PYTHONPATH=tree)
    code = f"from cmasim.bench import run_bench; print(run_bench({gib}, runs=1, measure_start=False)['events_per_s_median'])"
    return float(subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=tree).stdout.split()[-1])
seq = [("native", native())]
for r in range(rounds):
    for t in trees:
        seq.append((t, sim(t)))
        seq.append(("native", native()))
        print(seq[-2], seq[-1], flush=True)
res = {t: [] for t in trees}
for i, (k, v) in enumerate(seq):
    if k != "native":
        res[k].append((v, v / ((seq[i - 1][1] + seq[i + 1][1]) / 2)))
out = {"gib": gib, "rounds": rounds, "sequence": seq}
for t, xs in res.items():
    rs = [x[1] for x in xs]
    out[t] = {"events_per_s": [x[0] for x in xs], "ratio_median": statistics.median(rs), "ratio_min": min(rs), "ratio_max": max(rs)}
    print(t, f"ratio {statistics.median(rs):.3f} ({min(rs):.3f}-{max(rs):.3f})", "events/s", [f"{x[0]/1e6:.2f}M" for x in xs])
print(json.dumps(out))
