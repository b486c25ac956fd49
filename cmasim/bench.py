"""`cmasim bench`: throughput, memory and start-up time of the compiled core.

The fixed churn workload of the allocator-core issue: 80% order-0, 15% order 1-3, 5%
order-9 allocations; 70% movable, 20% unmovable, 10% reclaimable; frees of random live
blocks keeping memory about 80% used; 2 CPUs; mainline 6.18 rules. One event = one
allocation or one free with all the refill, drain, merge and split work it causes.

Figures: median events/s over several runs (each on a fresh machine, after a warm-up to
steady state), peak RSS of this process, bytes of state per simulated page, and cold/warm
start time measured in child processes: cold = `cmasim compile` (every compiled entry point a
command can call) with an empty numba cache directory, warm = the same with that cache.

With a native reference (`run_reference_bench`, `cmasim bench --reference run-native.sh`) the
native C core of the same churn and cmasim run alternately in one sitting — native, cmasim,
native, ..., native — and each cmasim run is divided by the mean of the two native runs around
it: this machine is shared and noisy, so only such back-to-back ratios mean anything.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from cmasim.machine import Machine, MachineConfig
from cmasim.mm import mmzone as mz
from cmasim.policy import get_policy
from cmasim.workload.churn import churn, churn_params

NEVER = 1 << 62
# What `make install` does (cmasim compile): compile or load every compiled entry point.
_START_SNIPPET = (
    "import time; t=time.perf_counter();"
    "from cmasim.warmup import compile_core; compile_core();"
    "print(time.perf_counter()-t)"
)


def make_machine(gib: float, policy: str = "linux-6.18", cpus: int = 2, **config) -> Machine:
    """The bench's machine: DMA32 up to 3 GiB, Normal above it. `config`: further MachineConfig
    fields (e.g. a trace buffer, as bench/cpu_axis.py counts drained blocks)."""
    pages = int(gib * 262144)
    dma32 = min(pages, 3 * 262144)
    zones = [("DMA32", dma32)] + ([("Normal", pages - dma32)] if pages > dma32 else [])
    # Reclaim and compaction stay off: the fixed workload never needs them, and the figure is
    # the allocator core's own speed.
    return Machine(MachineConfig(zones=zones, nr_cpus=cpus, reclaim=False, compaction=False, **config),
                   get_policy(policy), seed=1)


def _start_time(cache_dir: str) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    env.pop("CMASIM_JIT", None)
    env.pop("NUMBA_DISABLE_JIT", None)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _START_SNIPPET], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    float(out.stdout.strip())  # the child really ran the core
    return wall


def start_times() -> tuple[float, float]:
    """(cold, warm) seconds for a fresh process to import, compile or load, and run 1000 events."""
    with tempfile.TemporaryDirectory() as d:
        cold = _start_time(d)
        warm = _start_time(d)
    return cold, warm


def pcp_pages_moved(m: Machine) -> int:
    """Pages moved so far between the buddy free lists and the per-CPU lists: rmqueue_bulk()
    refills plus free_pcppages_bulk() drains (the model's vmstat counters pcp_refill_pages and
    pcp_drain_pages). At many CPUs this, not the event count, is what the churn's cost follows
    (docs/performance.md, "Issue 13: the CPU axis")."""
    vm = int(m.C[mz.H_VM])
    return int(m.C[vm + mz.VM_PCP_REFILL_PAGES] + m.C[vm + mz.VM_PCP_DRAIN_PAGES])


def run_bench(gib: float = 1, runs: int = 3, events: int = 5_000_000, warmup: int | None = None,
              measure_start: bool = True, cpus: int = 2) -> dict:
    rates = []
    state_bytes = 0
    n_pages = 0
    usage = 0.0
    for _ in range(runs):
        m = make_machine(gib, cpus=cpus)
        W = churn_params(m)
        churn(m.S, m.C, W, warmup if warmup is not None else 600_000 if gib > 4 else 200_000, NEVER)
        moved0 = pcp_pages_moved(m)
        t = time.perf_counter()
        churn(m.S, m.C, W, events, NEVER)
        rates.append(events / (time.perf_counter() - t))
        moved = pcp_pages_moved(m) - moved0
        state_bytes = m.S.nbytes + m.C.nbytes + W.nbytes
        n_pages = m.n_pages
        usage = int(m.C[mz.H_LIVE_PAGES]) / m.n_pages
        m.check()
    res = {
        "gib": gib, "cpus": cpus, "runs": runs, "events_per_run": events,
        "events_per_s_median": round(statistics.median(rates)),
        "events_per_s_min": round(min(rates)), "events_per_s_max": round(max(rates)),
        "usage_at_end": round(usage, 4),
        # The work behind an event's cost: pages the timed events moved between the buddy free
        # lists and the per-CPU lists (refills + drains; the same in every run, one seed).
        "pcp_pages_moved_per_event": round(moved / events, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "state_bytes_per_page": round(state_bytes / n_pages, 2),
        "allocator_state_bytes_per_page": round((state_bytes - W.nbytes) / n_pages, 2),
    }
    if measure_start:
        cold, warm = start_times()
        res["cold_start_s"] = round(cold, 2)
        res["warm_start_s"] = round(warm, 2)
    return res


def native_rate(reference: str, gib: float) -> float:
    """Ops/s of one run of the native reference script (`GIB=gib reference`; last line of its output)."""
    env = dict(os.environ, GIB=f"{gib:g}", PYTHON=sys.executable)
    out = subprocess.run(["bash", reference], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run_reference_bench(reference: str, gib: float = 1, runs: int = 3, events: int = 5_000_000,
                        warmup: int | None = None) -> dict:
    """Native and cmasim alternately: native, cmasim, native, ..., native (`runs` cmasim runs,
    `runs + 1` native runs). Ratio i = cmasim run i / mean of the native runs before and after it."""
    if not os.path.isfile(reference):
        raise FileNotFoundError(f"no native reference script at {reference}")
    native = [native_rate(reference, gib)]
    sim = []
    for _ in range(runs):
        sim.append(run_bench(gib, runs=1, events=events, warmup=warmup, measure_start=False)["events_per_s_median"])
        native.append(native_rate(reference, gib))
    ratios = [s / ((native[i] + native[i + 1]) / 2) for i, s in enumerate(sim)]
    return {
        "gib": gib, "runs": runs, "events_per_run": events, "reference": reference,
        "native_ops_per_s": [round(x) for x in native], "cmasim_events_per_s": sim,
        "native_median": round(statistics.median(native)), "cmasim_median": round(statistics.median(sim)),
        "ratios": ratios,
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios), "ratio_max": max(ratios),
    }
