"""Where a replay's time goes: fixed start and per-stage throughput (lines/s).

    PYTHONPATH=. python bench/replay_stages.py data/traces/linux-6.18-x86_64/pybuild

Prints, for the trace in DIR (trace.txt.xz with its before./after. snapshot):
- decompress and parse, from `cmasim.trace.parser.benchmark` (the trace read into memory, then
  parsed in memory), in lines/s;
- the replay from the columnar cache (parsed once beforehand, as `cmasim replay --out` keeps it),
  split by wrapping the stages of `cmasim.trace.replay.replay`: reading the cache (once: the
  records stay in memory for the later passes), prescan, per-CPU list inference, building the
  machine from the snapshot, the translation into engine events (compiled, with the pre-trace
  frees in Python) and the compiled event loop (`_Engine.run`), then `fidelity_table`;
- the fixed start of a process: `cmasim replay --max-records 1000` end to end, in a child
  (wall and CPU seconds);
- decay_phase(): for a trace without a background drain (thp-mix), the replays that place the
  vmstat worker, as one stage (the stages of those replays count there, not in the others).
The replay from the cache runs twice: the first in the process also loads the compiled
functions (numba's cache and target context), the second shows the marginal cost per record.
Each stage is given as [wall s, CPU s, lines per CPU second] (the trace's lines over the
stage's CPU time), on whatever load the machine has; compare within one invocation.
"""

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    d = Path(sys.argv[1])
    trace = d / "trace.txt.xz"
    from cmasim.trace import parser as P

    bench = P.benchmark(trace, "mainline")
    lines = bench["lines"]
    t = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", "import sys; from cmasim.cli import main; sys.exit(main())",
                          "replay", str(trace), "--snapshot", str(d), "--max-records", "1000"],
                         capture_output=True, text=True)
    fixed = time.perf_counter() - t
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    fixed_cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    assert out.returncode == 0, out.stderr

    from cmasim.policy import get_policy
    from cmasim.trace import columnar, fidelity, replay as R, snapshot as SN

    times: dict[str, float] = {}

    cpus: dict[str, float] = {}

    inside = [0]  # > 0 while decay_phase() runs: its replays' stages count as decay_phase's

    def add(name, t0, c0):
        if inside[0] and not name.startswith("decay_phase"):
            return
        times[name] = times.get(name, 0.0) + time.perf_counter() - t0
        cpus[name] = cpus.get(name, 0.0) + time.process_time() - c0

    def timed(name, fn):
        def w(*a, **k):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                add(name, t0, c0)
        return w

    def timed_gen(name, fn):
        def w(*a, **k):
            it = fn(*a, **k)
            while True:
                t0, c0 = time.perf_counter(), time.process_time()
                try:
                    x = next(it)
                except StopIteration:
                    add(name, t0, c0)
                    return
                add(name, t0, c0)
                yield x
        return w

    R.prescan = timed("prescan (compiled pass; incl. the one read of the cache)", R.prescan)
    R.infer_pcp_lists = timed("infer_pcp_lists (compiled loops)", R.infer_pcp_lists)
    R.build_machine = timed("build_machine (snapshot -> machine)", R.build_machine)
    R._Engine.run = timed("compiled event loop (_Engine.run)", R._Engine.run)
    decay = timed("decay_phase (replays without the vmstat worker; thp-mix)", R.decay_phase)

    def decay_phase(*a, **k):
        inside[0] += 1
        try:
            return decay(*a, **k)
        finally:
            inside[0] -= 1
    R.decay_phase = decay_phase
    columnar.read_cache = timed_gen("read columnar cache", columnar.read_cache)
    SN.SnapState.take_pretrace = timed("take_pretrace (pre-trace frees)", SN.SnapState.take_pretrace)
    snap = SN.load_snapshot(str(d))
    after = SN.load_snapshot(str(d), prefix="after.")
    pol = get_policy("linux-6.18")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "trace.npz"
        list(columnar.CachedTrace(trace, cache, snap.flavour).chunks())  # parse once, as --out keeps it
        rows = {"lines": lines, "records": bench["records"],
                "decompress_lines_per_s": bench["decompress_lines_per_s"],
                "parse_lines_per_s": bench["parse_lines_per_s"],
                "fixed_start_s (replay --max-records 1000, child process)": round(fixed, 2),
                "fixed_start_cpu_s": round(fixed_cpu, 2)}
        # The first replay in a process also loads the compiled functions from numba's cache (and
        # numba's target context); the second shows what each further record costs.
        for run in ("first replay in the process", "second replay (warm)"):
            times.clear()
            cpus.clear()
            t0 = time.perf_counter()
            c0 = time.process_time()
            res = R.replay(trace, pol, snap, cache=cache)
            total = time.perf_counter() - t0
            cpu = time.process_time() - c0
            t1, c1 = time.perf_counter(), time.process_time()
            fidelity.fidelity_table(res, after)
            t_fid, c_fid = time.perf_counter() - t1, time.process_time() - c1
            nested = ("take_pretrace (pre-trace frees)", "read columnar cache")
            rest = "translation (compiled pass), pre-trace frees and the rest (replay - the stages above)"
            times[rest] = total - sum(v for k, v in times.items() if k not in nested)
            cpus[rest] = cpu - sum(v for k, v in cpus.items() if k not in nested)
            st = {"replay_from_cache_s": round(total, 3), "replay_cpu_s": round(cpu, 3),
                  "replay_lines_per_cpu_s": round(lines / cpu), "fidelity_s": round(t_fid, 3),
                  "fidelity_cpu_s": round(c_fid, 3)}
            # wall s, CPU s, lines per CPU second (the trace's lines over the stage's CPU time)
            st["stages (wall s, CPU s, lines/CPU s)"] = {
                k: [round(times[k], 3), round(cpus[k], 3), round(lines / cpus[k]) if cpus[k] > 0 else None]
                for k in times}
            rows[run] = st
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
