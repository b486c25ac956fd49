"""Compiling the allocator core once: the warm-up run, the "is it cached" check, and progress.

The core (cmasim/mm, the workloads, the clock) is compiled by numba on first use and kept
in numba's on-disk cache next to the sources (cmasim.mm.jit). A cold compile takes about
two minutes of CPU on the 2-core development machine (docs/performance.md), a cached load about a second.
`compile_core()` runs a tiny scenario that touches every workload feature, plus a tiny trace replay, so that every
compiled entry point (`churn`, `fill_anon`, `alloc_contig_range`, the pinners, `run_events`,
...) is compiled or loaded once; `make install` calls it (`cmasim compile`), so a user's
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

# Cold compile: the first `cmasim run` (compile_core() and the default scenario) took 114-126 s of
# CPU and 122-147 s wall at load 3-4 on the 2-core development machine (docs/performance.md,
# "Cold compile: numba's inliner, and fewer call sites").
COLD_COMPILE_S = 150

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


def compile_core(policies: list | None = None) -> None:
    """Compile (or load) every compiled entry point a command can call, in this process."""
    from cmasim.policy import get_policy
    from cmasim.run import run_scenario
    from cmasim.scenario import load_scenario_text
    from cmasim.trace.replay import replay

    sc = load_scenario_text(WARMUP_SCENARIO, "warm-up", "warmup")
    for p in policies or [get_policy("linux-6.18")]:
        run_scenario(sc, p, 1)
    with tempfile.TemporaryDirectory(prefix="cmasim-warmup-") as d:
        t = Path(d) / "trace.txt"
        t.write_text(_WARMUP_TRACE)
        replay(t, policies[0] if policies else get_policy("linux-6.18"), cache=Path(d) / "trace.npz")
    _snapshot_machine(policies[0] if policies else get_policy("linux-6.18"))
    if jit.JIT:
        mark_cached()


def _snapshot_machine(policy) -> None:
    """A tiny machine built from a /proc snapshot, and a pre-trace page taken from it: the
    compiled loops of `cmasim.trace.snapshot` (free blocks, per-CPU pages, the pre-trace search)
    that a replay with --snapshot uses and the snapshot-less warm-up replay does not."""
    from cmasim.mm import mmzone as mz
    from cmasim.trace.snapshot import Snapshot, ZoneSnap, build_machine

    blocks = [0] * mz.MIGRATE_TYPES
    blocks[mz.MIGRATE_MOVABLE] = 8
    free = [[0] * mz.NR_PAGE_ORDERS for _ in range(mz.MIGRATE_TYPES)]
    free[mz.MIGRATE_MOVABLE][:3] = [2, 1, 1]
    pcp = [{"count": 2, "high": 8, "batch": 2, "high_min": 0, "high_max": 0}] * 2
    zs = ZoneSnap("Normal", 8 * 512, 8 * 512, 8 * 512, 0, 8, blocks, free,
                  {"min": 16, "low": 20, "high": 24, "promo": 28, "boost": 0}, [], pcp)
    snap = Snapshot([zs], 2, "mainline")
    st = build_machine(snap, policy)
    st.take_pretrace(0, 1, mz.MIGRATE_MOVABLE)
    # infer_pcp_lists()' compiled loops (replay with --snapshot): a round trip, a refill, a drain
    import numpy as np

    from cmasim.trace import parser as P
    from cmasim.trace.replay import infer_pcp_lists

    rows = np.full((5, P.NCOL), P.ABSENT, dtype=np.int64)
    for i, (kind, pfn, f) in enumerate([(P.K_PAGE_FREE, 1, (0,)), (P.K_PAGE_ALLOC, 1, (0, 1, 0)),
                                        (P.K_ZONE_LOCKED, 2, (0, 1, 1)), (P.K_ZONE_LOCKED, 3, (0, 1, 1)),
                                        (P.K_PCPU_DRAIN, 2, (0, 1))]):
        rows[i, [P.C_KIND, P.C_TIME, P.C_CPU, P.C_PID, P.C_PFN, P.C_LINE]] = kind, i, 0, 1, pfn, i + 1
        rows[i, P.C_F0:P.C_F0 + len(f)] = f
    infer_pcp_lists(iter([rows]), snap, policy, {}, {})


@contextmanager
def compile_listener(on_compile: Callable[[str], None]):
    """Call `on_compile("module.function")` each time numba starts compiling a function."""
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
    try:
        yield
    finally:
        event.unregister("numba:compile", listener)
