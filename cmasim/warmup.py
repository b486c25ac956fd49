"""Compiling the allocator core once: the warm-up run, the "is it cached" check, and progress.

The core (cmasim/mm, the workloads, the clock) is compiled by numba on first use and kept
in numba's on-disk cache next to the sources (cmasim.mm.jit). A cold compile takes about
80 s of CPU on the 2-core development machine, 42 s wall on two processes (docs/performance.md),
a cached load about a second.
`compile_core()` runs a tiny scenario that touches every workload feature, plus a tiny trace replay, so that every
compiled entry point (`churn`, `fill_anon`, `alloc_contig_range`, the pinners, `run_events`,
...) is compiled or loaded once — on a cold cache in several processes at once
(`cmasim.compile_pool`, each running some of the warm-up's `PARTS` or a single
`kjit_fixed` function); `make install` calls it (`cmasim compile`), so a user's
first `cmasim run` loads the cache. `core_cached()` says whether the cache matches the
current sources (the stamp `compile_core()` leaves), so the CLI can warn before a compile.
`compile_listener()` reports each function numba starts compiling, for a progress line.

This module never prints.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from cmasim.mm import jit

# Cold compile: the first `cmasim run` (compile_core() on two processes and the default scenario)
# took 48 s wall on the idle 2-core development machine, compile_core() in one process 80-86 s
# (docs/performance.md, "Cold compile on two processes"); a busy machine takes longer.
COLD_COMPILE_S = 60
_part_listeners: list[Callable[[str], None]] = []  # compile_listener()s, told of each finished pool part

WARMUP_SCENARIO = """\
description = "warm-up: every workload feature on a tiny machine, to compile the core once"
seed = 1
[machine]
memory = "32MiB"
cpus = 2
[[cma]]
name = "reserved"
size = "8MiB"
[workload]
duration_s = 0.005
[workload.fill]
free = "12MiB"
start_ms = 1
[workload.churn]
events = 1000
target_usage = 0.6
[[workload.device]]
area = "reserved"
size_mib = [0.5, 2]
interval_ms = 1
hold_ms = 1
recycle_mib = 1
[[workload.pinner]]
threads = 1
hold_us = 50
gap_us = 20
"""

# Four kernel lines (tracefs layout): enough to drive the replay path's compiled loop.
_WARMUP_TRACE = "".join(
    f"          warmup-1       [000] .....     1.{i:06d}: {ev}\n" for i, ev in enumerate([
        "mm_page_alloc: page=0000000000000001 pfn=0x1000 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE",
        "mm_page_alloc: page=0000000000000002 pfn=0x1200 order=0 migratetype=0 gfp_flags=GFP_KERNEL",
        "mm_page_free: page=0000000000000001 pfn=0x1000 order=0",
        "mm_page_free: page=0000000000000002 pfn=0x1200 order=0",
    ]))


def _stamp() -> Path:
    """Where the "compiled" stamp lives: beside numba's cache (NUMBA_CACHE_DIR when set)."""
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    if cache_dir:
        return Path(cache_dir) / "cmasim-core.compiled"
    return Path(jit.__file__).resolve().parent.parent / "__pycache__" / "cmasim-core.compiled"


def core_cached() -> bool:
    """True when the compiled core matches the sources (compile_core() ran since they changed),
    or when nothing is compiled at all (interpreted mode)."""
    if not jit.JIT:
        return True
    try:
        return _stamp().read_text() == jit.CORE_DIGEST
    except OSError:
        return False


def mark_cached() -> None:
    """Record that the on-disk cache holds the core for the current sources."""
    try:
        _stamp().parent.mkdir(exist_ok=True)
        _stamp().write_text(jit.CORE_DIGEST)
    except OSError:  # a read-only install: the notice just shows again
        pass


def compile_core(policies: list | None = None, jobs: int | None = None,
                 on_job: Callable[[str, int, int], None] | None = None, log: list | None = None) -> None:
    """Compile (or load) every compiled entry point a command can call.

    On a cold cache with more than one CPU, worker processes compile it (`cmasim.compile_pool`:
    `jobs` of them, default `compile_pool.default_jobs()`; `on_job(job, done, total)` as each
    part finishes, `log` receives each part's worker and times), and this process only marks
    the cache compiled. Otherwise, or if a worker fails, it runs the warm-up's parts here, which
    compiles what is not cached and shows any real error."""
    if jit.JIT and not core_cached():
        from cmasim import compile_pool

        n = compile_pool.default_jobs() if jobs is None else jobs
        if n > 1 and compile_pool.locked_cache_saves():

            def done(job: str, k: int, total: int) -> None:
                for show in _part_listeners:
                    show(f"{job.removeprefix('cmasim.').replace(':', '.')}, part {k}/{total} on {n} processes")
                if on_job is not None:
                    on_job(job, k, total)

            if compile_pool.run_pool(n, done, log):
                # Every part ran in a worker and is cached. Policies are data (the same code
                # for all of them), so nothing is left to compile here.
                mark_cached()
                return
    for p in policies or [_default_policy()]:
        compile_entry("scenario", p)
    for part in ("replay", "snapshot", "pcp"):  # the scenario covers "contig" and "anon"
        compile_entry(part, policies[0] if policies else None)
    if jit.JIT:
        mark_cached()


def _default_policy():
    from cmasim.policy import get_policy

    return get_policy("linux-6.18")


# The warm-up's parts, each compiling or loading what it calls (`compile_entry`).
PARTS = ("scenario", "replay", "snapshot", "pcp", "contig", "anon")


def compile_entry(job: str, policy=None) -> None:
    """Run one of the warm-up's parts — "scenario" (a tiny scenario touching every workload
    feature), "replay" (a four-line trace), "snapshot" (a machine built from a /proc
    snapshot), "pcp" (`infer_pcp_lists` on five records), "contig" (one cma_alloc()) or
    "anon" (an anonymous fill and the invariant check). The scenario covers "contig" and "anon"."""
    from cmasim.run import run_scenario
    from cmasim.scenario import load_scenario_text
    from cmasim.trace.replay import replay

    policy = policy or _default_policy()
    if job == "scenario":
        run_scenario(load_scenario_text(WARMUP_SCENARIO, "warm-up", "warmup"), policy, 1)
    elif job == "replay":
        with tempfile.TemporaryDirectory(prefix="cmasim-warmup-") as d:
            t = Path(d) / "trace.txt"
            t.write_text(_WARMUP_TRACE)
            replay(t, policy, cache=Path(d) / "trace.npz")
    elif job == "snapshot":
        _snapshot_machine(policy)
    elif job == "pcp":
        _pcp_lists(policy)
    elif job == "contig":
        _contig(policy)
    elif job == "anon":
        _anon(policy)
    else:
        raise ValueError(f"unknown warm-up part {job!r}: expected one of {', '.join(PARTS)}")


def _snapshot_zone():
    from cmasim.mm import mmzone as mz
    from cmasim.trace.snapshot import Snapshot, ZoneSnap

    blocks = [0] * mz.MIGRATE_TYPES
    blocks[mz.MIGRATE_MOVABLE] = 8
    free = [[0] * mz.NR_PAGE_ORDERS for _ in range(mz.MIGRATE_TYPES)]
    free[mz.MIGRATE_MOVABLE][:3] = [2, 1, 1]
    pcp = [{"count": 2, "high": 8, "batch": 2, "high_min": 0, "high_max": 0}] * 2
    zs = ZoneSnap("Normal", 8 * 512, 8 * 512, 8 * 512, 0, 8, blocks, free,
                  {"min": 16, "low": 20, "high": 24, "promo": 28, "boost": 0}, [], pcp)
    return Snapshot([zs], 2, "mainline")


def _snapshot_machine(policy) -> None:
    """A tiny machine built from a /proc snapshot, and a pre-trace page taken from it: the
    compiled loops of `cmasim.trace.snapshot` (free blocks, per-CPU pages, the pre-trace search)
    that a replay with --snapshot uses and the snapshot-less warm-up replay does not."""
    from cmasim.mm import mmzone as mz
    from cmasim.trace.snapshot import build_machine

    st = build_machine(_snapshot_zone(), policy)
    st.take_pretrace(0, 1, mz.MIGRATE_MOVABLE)


def _pcp_lists(policy) -> None:
    """`infer_pcp_lists()`' compiled loops (replay with --snapshot): a round trip, a refill, a
    drain. They use no allocator code, so a cold compile can start them first."""
    import numpy as np

    from cmasim.trace import parser as P
    from cmasim.trace.replay import infer_pcp_lists

    rows = np.full((5, P.NCOL), P.ABSENT, dtype=np.int64)
    for i, (kind, pfn, f) in enumerate([(P.K_PAGE_FREE, 1, (0,)), (P.K_PAGE_ALLOC, 1, (0, 1, 0)),
                                        (P.K_ZONE_LOCKED, 2, (0, 1, 1)), (P.K_ZONE_LOCKED, 3, (0, 1, 1)),
                                        (P.K_PCPU_DRAIN, 2, (0, 1))]):
        rows[i, [P.C_KIND, P.C_TIME, P.C_CPU, P.C_PID, P.C_PFN, P.C_LINE]] = kind, i, 0, 1, pfn, i + 1
        rows[i, P.C_F0:P.C_F0 + len(f)] = f
    infer_pcp_lists(iter([rows]), _snapshot_zone(), policy, {}, {})


def _warmup_machine(policy):
    from cmasim.run import build_machine
    from cmasim.scenario import load_scenario_text

    return build_machine(load_scenario_text(WARMUP_SCENARIO, "warm-up", "warmup"), policy, 1)


def _anon(policy) -> None:
    """The warm-up scenario's machine filled with anonymous pages, then checked: `anon_faults`
    and `check_state`, apart from the scenario (which reaches them after the churn loop)."""
    from cmasim.gfp import GFP_HIGHUSER_MOVABLE
    from cmasim.workload.fill import fill_anon

    m = _warmup_machine(policy)
    fill_anon(m.S, m.C, m.n_pages // 2, GFP_HIGHUSER_MOVABLE, m.n_pages)
    m.check()


def _contig(policy) -> None:
    """The warm-up scenario's machine and one cma_alloc() on it: `alloc_contig_range` and the
    isolation and migration code under it, apart from the scenario (a cold compile's largest
    entry point after the churn loop)."""
    from cmasim.mm.cma import cma_alloc

    m = _warmup_machine(policy)
    cma_alloc(m, m.area("reserved"), 16, 0)


@contextmanager
def compile_listener(on_compile: Callable[[str], None]):
    """Call `on_compile("module.function")` each time numba starts compiling a function in this
    process, and `on_compile("PART, part k/n on N processes")` as each part of a cold compile
    on worker processes finishes (`compile_core`)."""
    if not jit.JIT:
        yield
        return
    from numba.core import event

    class _Listener(event.Listener):
        def on_start(self, ev):
            disp = (ev.data or {}).get("dispatcher")
            fn = getattr(disp, "py_func", None)
            if fn is not None:
                on_compile(f"{fn.__module__.removeprefix('cmasim.')}.{fn.__name__}")

        def on_end(self, ev):
            pass

    listener = _Listener()
    event.register("numba:compile", listener)
    _part_listeners.append(on_compile)
    try:
        yield
    finally:
        event.unregister("numba:compile", listener)
        _part_listeners.remove(on_compile)
