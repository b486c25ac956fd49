"""A cold compile of the allocator core on several processes sharing numba's on-disk cache.

`compile_core()` (cmasim.warmup) compiled the core in one process: about 110 s of CPU on the
2-core development machine, more than half of it the `kjit_fixed` functions and the non-fixed
ones they call (the buddy allocator, per-CPU lists, slow path, reclaim, compaction), the rest
the entry points a scenario (`churn`, `anon_faults`, `alloc_contig_range`, ...) or a replay
(`run_events`, the snapshot and per-CPU list loops) reaches (docs/performance.md, "Cold
compile on two processes"). Numba compiles a function once per process and, with
`cache=True`, loads a function another process saved instead of compiling it — a callee
too, while it types a caller — so the work splits like a build:

- a job per `kjit_fixed` function (its one signature is known without running anything:
  `jit.fixed_signature`; `cmasim_fix()` compiles it), and one per part of the warm-up
  (`cmasim.warmup.PARTS`: the scenario, the replay, the snapshot machine, `infer_pcp_lists`,
  one `cma_alloc()`, an anonymous fill);
- a job waits for the fixed functions its compile links in, found by reading the names its
  code uses, through the inlined and non-fixed functions it calls (numba compiles those inside
  the job); a warm-up part waits for what its compiled roots reach (`_PART_ROOTS`), the
  scenario for everything;
- N worker processes take the ready job with the heaviest chain of work waiting behind it
  (`_WEIGHT`, rough compile times: a scheduling hint only).

A callee the scan missed, or one two jobs need at once (a non-fixed helper of two fixed
functions), is compiled by both processes: more CPU, the same code. Two processes saving
numba cache entries of the same function at once could give two signatures the same data
file (numba's `IndexDataCacheFile.save` reads the index, picks the first free number, writes
index and data, unlocked), so `locked_cache_saves()` makes every save hold an exclusive
`fcntl.flock` on a lock file in the cache directory. Readers need no lock: numba replaces
files atomically.

When a worker fails, the pool stops and `compile_core()` runs the warm-up in its own process,
which compiles what is left and shows the real error. This module never prints.
"""

from __future__ import annotations

import importlib
import os
import selectors
import subprocess
import sys
import time
import types as pytypes
from collections.abc import Callable

from cmasim.mm import jit

# The entry-point jobs (cmasim.warmup.PARTS; names a worker understands besides "module:function").
ENTRY_JOBS = ("scenario", "replay", "snapshot", "pcp", "contig", "anon")
_CHURN = "cmasim.workload.churn:churn_events"
# Scheduling hints: a job's compile time relative to a small fixed function's, rounded from
# one cold compile on the 2-core development machine (docs/performance.md, "Cold compile on
# two processes"). They only order the ready jobs; a wrong hint costs time, not correctness.
_WEIGHT = {_CHURN: 15, "cmasim.mm.alloc_pages:__alloc_pages_slowpath": 6, "cmasim.mm.alloc_pages:alloc_pages": 2,
           "scenario": 4, "replay": 12, "snapshot": 5, "pcp": 5, "contig": 13, "anon": 5}
_LOCK_NAME = ".cmasim-save.lock"


class CompileJobsError(ValueError):
    """A bad CMASIM_COMPILE_JOBS setting (the CLI reports it as one line)."""


def default_jobs() -> int:
    """Worker processes for a cold compile: the CPUs this process may run on, at most 4
    (each worker holds numba and LLVM, ~0.4 GB); `CMASIM_COMPILE_JOBS` overrides."""
    env = os.environ.get("CMASIM_COMPILE_JOBS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise CompileJobsError(f"CMASIM_COMPILE_JOBS={env!r}: expected a whole number of processes") from None
        if n < 1:
            raise CompileJobsError(f"CMASIM_COMPILE_JOBS={env!r}: expected at least 1")
        return n
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _core_modules() -> list[pytypes.ModuleType]:
    mods = []
    for rel in jit._CORE_FILES:
        name = "cmasim." + rel.removesuffix(".py").replace("/", ".")
        if name != "cmasim.mm.jit":
            mods.append(importlib.import_module(name))
    return mods


def fixed_functions() -> dict[str, object]:
    """Every `kjit_fixed` dispatcher of the core, by "module:function"."""
    out = {}
    for mod in _core_modules():
        for name, obj in vars(mod).items():
            fn = getattr(obj, "py_func", None)
            if getattr(obj, "cmasim_fix", None) is not None and fn is not None and fn.__module__ == mod.__name__:
                out[f"{mod.__name__}:{name}"] = obj
    return out


def _referenced(fn) -> set:
    """The compiled functions `fn`'s code names: globals, and attributes of modules it names
    (`mz.X`), in nested code objects too."""
    names: set[str] = set()
    stack = [fn.__code__]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(c for c in code.co_consts if isinstance(c, pytypes.CodeType))
    g = fn.__globals__
    found = set()
    for n in names:
        obj = g.get(n)
        if isinstance(obj, pytypes.ModuleType):
            for m in names:
                sub = getattr(obj, m, None)
                if getattr(sub, "py_func", None) is not None:
                    found.add(sub)
        elif getattr(obj, "py_func", None) is not None:
            found.add(obj)
    return found


def fixed_deps(fixed: dict[str, object]) -> dict[str, set[str]]:
    """For each fixed function, the other fixed functions its compile links in: the fixed
    functions reached through the inlined and non-fixed functions it calls, stopping at each
    fixed one (a separate job)."""
    key_of = {id(d): k for k, d in fixed.items()}
    return {key: _reached(_referenced(disp.py_func), key_of) - {key} for key, disp in fixed.items()}


# The compiled functions each warm-up part calls from Python (building its machine included:
# `free_pages_core_range`); the part waits for the fixed functions they reach. The scenario
# reaches everything and waits for every fixed function and for "contig" and "anon".
_PART_ROOTS = {
    "pcp": (),  # infer_pcp_lists: replay_core's own loops, no allocator code
    "snapshot": ("cmasim.mm.page_alloc:free_pages_core_range", "cmasim.trace.replay_core:pretrace_search"),
    "replay": ("cmasim.mm.page_alloc:free_pages_core_range", "cmasim.engine_core:run_events",
               "cmasim.mm.debug:check_state"),
    "contig": ("cmasim.mm.page_alloc:free_pages_core_range", "cmasim.mm.alloc_contig:alloc_contig_range",
               "cmasim.mm.cma_release:free_contig_range"),
    "anon": ("cmasim.mm.page_alloc:free_pages_core_range", "cmasim.workload.fill:anon_faults",
             "cmasim.mm.debug:check_state"),
}


def _reached(roots, key_of: dict[int, str]) -> set[str]:
    """The fixed functions (keys of `key_of`, by dispatcher id) that compiling the dispatchers
    `roots` links in: through inlined and non-fixed callees, stopping at each fixed one."""
    seen, out, stack = set(), set(), list(roots)
    while stack:
        d = stack.pop()
        if id(d) in seen:
            continue
        seen.add(id(d))
        if id(d) in key_of:
            out.add(key_of[id(d)])
        else:
            stack.extend(_referenced(d.py_func))
    return out


def plan() -> dict[str, set[str]]:
    """Every job and the jobs it waits for."""
    fixed = fixed_functions()
    deps = fixed_deps(fixed)
    key_of = {id(d): k for k, d in fixed.items()}
    for part, roots in _PART_ROOTS.items():
        disps = []
        for r in roots:
            mod, name = r.split(":")
            disps.append(getattr(importlib.import_module(mod), name))
        deps[part] = _reached(disps, key_of) | {k for k in map(key_of.get, map(id, disps)) if k}
    deps["scenario"] = set(fixed) | {"contig", "anon"}
    return deps


def _heights(deps: dict[str, set[str]]) -> dict[str, int]:
    """Each job's priority: its weight plus the largest priority among the jobs waiting on it
    (the longest chain of work it holds up)."""
    users: dict[str, set[str]] = {k: set() for k in deps}
    for k, ds in deps.items():
        for d in ds:
            users.setdefault(d, set()).add(k)
    memo: dict[str, int] = {}

    def h(k: str) -> int:
        if k not in memo:
            memo[k] = _WEIGHT.get(k, 1) + max((h(u) for u in users.get(k, ())), default=0)
        return memo[k]

    return {k: h(k) for k in deps}


def run_pool(jobs: int, on_done: Callable[[str, int, int], None] | None = None,
             log: list | None = None, deps: dict[str, set[str]] | None = None) -> bool:
    """Run every job of `deps` (default `plan()`: {job: the jobs it waits for}) on `jobs`
    worker processes; True when all finished. `on_done(job, done, total)` is called as each
    finishes; `log` (if given) receives (job, worker, start s, end s) for each, from the
    pool's start."""
    deps = plan() if deps is None else deps
    height = _heights(deps)
    waiting = {k: set(v) for k, v in deps.items()}
    done: set[str] = set()
    cmd = [sys.executable, "-c", "from cmasim.compile_pool import worker; worker()"]
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", "")
    root = str(jit._PKG.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env["PYTHONPATH"] else "")
    procs = []
    try:
        for _ in range(jobs):
            procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1))
    except OSError:  # no processes to be had: compile_core() compiles in-process
        for p in procs:
            p.kill()
            p.wait()
        return False
    sel = selectors.DefaultSelector()
    busy: dict[int, str | None] = {}
    for i, p in enumerate(procs):
        sel.register(p.stdout, selectors.EVENT_READ, i)
        busy[i] = None
    ok = True
    t0 = time.perf_counter()
    started: dict[int, float] = {}

    def give(i: int) -> bool:
        """Hand worker i the ready job with the highest priority, if any; False if it is gone."""
        ready = [k for k, w in waiting.items() if not w]
        if ready:
            k = max(ready, key=lambda r: (height[r], r))
            del waiting[k]
            busy[i] = k
            started[i] = time.perf_counter() - t0
            try:
                procs[i].stdin.write(k + "\n")
                procs[i].stdin.flush()
            except OSError:  # the worker died
                return False
        return True

    try:
        ok = all([give(i) for i in busy])
        while ok and (waiting or any(v is not None for v in busy.values())):
            for key, _ in sel.select():
                i = key.data
                line = procs[i].stdout.readline()
                job = busy[i]
                if not line.startswith("done ") or line.split(None, 1)[1].strip() != job:
                    ok = False  # the worker failed or died: compile_core() finishes in-process
                    break
                busy[i] = None
                done.add(job)
                if log is not None:
                    log.append((job, i, started[i], time.perf_counter() - t0))
                for w in waiting.values():
                    w.discard(job)
                if on_done is not None:
                    on_done(job, len(done), len(deps))
                for j in busy:  # the finished job may have made work for every idle worker
                    if busy[j] is None and not give(j):
                        ok = False
            else:
                if waiting and all(v is None for v in busy.values()):
                    ok = False  # nothing ready and nothing running: a cycle the scan invented
    finally:
        for p in procs:
            try:
                p.stdin.close()
            except OSError:
                pass
        for p in procs:
            try:
                p.wait(timeout=None if ok else 5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        sel.close()
    return ok and not waiting


def run_job(job: str) -> None:
    """Compile (or load) one job's functions in this process."""
    from cmasim import warmup

    if job in ENTRY_JOBS:
        warmup.compile_entry(job)
        return
    mod, name = job.split(":")
    getattr(importlib.import_module(mod), name).cmasim_fix()


def worker() -> None:
    """A compile worker: one job name per line on stdin, "done JOB" on stdout when compiled;
    exits at end of input, or at the first failure (nothing more printed). Anything else a job
    writes to sys.stdout goes to stderr, so the only lines the pool reads are its answers."""
    locked_cache_saves()
    answers, sys.stdout = sys.stdout, sys.stderr
    for line in sys.stdin:
        job = line.strip()
        if not job:
            continue
        try:
            run_job(job)
        except Exception:  # noqa: BLE001 - the pool sees no "done" and compile_core() retries in-process
            sys.exit(1)
        answers.write(f"done {job}\n")
        answers.flush()


def locked_cache_saves() -> bool:
    """Make numba's cache saves exclusive between processes (module docstring): every
    `IndexDataCacheFile.save` holds `fcntl.flock` on a lock file in its cache directory.
    False (nothing changed) where there is no flock or numba's cache class lacks the method:
    the pool is not used then."""
    try:
        import fcntl

        from numba.core.caching import IndexDataCacheFile
    except ImportError:
        return False
    save = getattr(IndexDataCacheFile, "save", None)
    if save is None:
        return False
    if getattr(save, "cmasim_locked", False):
        return True

    def locked_save(self, key, data):
        fd = os.open(os.path.join(self._cache_path, _LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return save(self, key, data)
        finally:
            os.close(fd)

    locked_save.cmasim_locked = True
    IndexDataCacheFile.save = locked_save
    return True
