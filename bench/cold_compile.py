"""Cold compile of the core, one process against worker processes, alternating (issue 13, target 2).

    PYTHONPATH=. python bench/cold_compile.py [PAIRS] [--jobs N] [--json OUT]

Each run is a fresh `python -c "compile_core()"` (what `cmasim compile` and a first `cmasim run`
do) on its own empty `NUMBA_CACHE_DIR`: `CMASIM_COMPILE_JOBS=1` (the whole compile in one
process, as before the pool) then `CMASIM_COMPILE_JOBS=N` (default: what the machine gives,
`compile_pool.default_jobs()`), PAIRS times (default 2). Prints wall and CPU (the child and its
workers, from `resource.getrusage(RUSAGE_CHILDREN)`) per run, the medians, the load average,
and for the last pool run each part's worker and times. Speed is judged as the ratio within
one invocation, not against figures of another sitting.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = """
import json, sys
from cmasim.warmup import compile_core
log = []
compile_core(log=log)
print(json.dumps(log))
"""


def one(jobs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="cmasim-cold-") as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d, CMASIM_COMPILE_JOBS=str(jobs), PYTHONPATH=str(ROOT))
        env.pop("CMASIM_JIT", None)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode:
            sys.exit(f"compile_core() failed with {jobs} job(s):\n{out.stderr[-2000:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return {"jobs": jobs, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load": os.getloadavg()[0],
                "log": json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    from cmasim.compile_pool import default_jobs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="?", type=int, default=2, help="one-process / pool pairs (default 2)")
    ap.add_argument("--jobs", type=int, default=None, help="pool processes (default: compile_pool.default_jobs())")
    ap.add_argument("--json", help="write every run here")
    a = ap.parse_args()
    if a.pairs < 1:
        ap.error(f"PAIRS must be at least 1 (got {a.pairs})")
    n = a.jobs or default_jobs()
    if n < 2:
        ap.error(f"the pool needs at least 2 processes (--jobs {n}; this machine gives {default_jobs()})")
    runs = []
    for _ in range(a.pairs):
        for jobs in (1, n):
            r = one(jobs)
            runs.append(r)
            print(f"{jobs} process(es): {r['wall_s']:6.1f} s wall, {r['cpu_s']:6.1f} s CPU, load {r['load']:.2f}",
                  flush=True)
    for jobs in (1, n):
        w = [r["wall_s"] for r in runs if r["jobs"] == jobs]
        c = [r["cpu_s"] for r in runs if r["jobs"] == jobs]
        print(f"{jobs} process(es), median (min-max): wall {statistics.median(w):.1f} ({min(w):.1f}-{max(w):.1f}) s, "
              f"CPU {statistics.median(c):.1f} ({min(c):.1f}-{max(c):.1f}) s")
    ratio = [b["wall_s"] / a_["wall_s"] for a_, b in zip(runs[::2], runs[1::2])]
    print(f"pool / one process, wall, per pair: {', '.join(f'{x:.2f}' for x in ratio)}")
    last = [r for r in runs if r["jobs"] == n][-1]["log"]
    print("last pool run, part by part (worker, start, end, s):")
    for job, w, t0, t1 in last:
        print(f"  w{w} {t0:6.1f} {t1:6.1f} {t1 - t0:5.1f}  {job}")
    if a.json:
        Path(a.json).write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
