"""Compile-or-interpret switch for the kernel model's hot path.

The allocator core is written once in the numba subset. With numba available and
neither ``CMASIM_JIT=0`` nor ``NUMBA_DISABLE_JIT=1`` in the environment, `kjit`
compiles a function with ``numba.njit(cache=True)``; otherwise the same source runs
as plain Python, which is the debuggable reference (design.md, decision 1).

`kjit_fixed` compiles a function for one signature only — S an int32 array, C/W/scratch/pfns
int64 arrays, every other argument int64 — so that call sites passing int32 values (read
from S), booleans or literal constants convert their arguments instead of compiling another
specialisation of the function and of its whole call tree (the cold compile's main cost,
docs/performance.md). Such a function is compiled (or loaded) at its first use.

`borrow(a)` (entry points only) is a view of array `a` whose reference-count pointer is
null. Every compiled call that passes an array increments and decrements that count
atomically (numba's NRT), and the allocator's call tree does that for S and C on every
call: two fifths of a churn event's time in the profile (docs/performance.md). With the
borrowed views those become a null check. Safe because the view never outlives the call
that borrowed it: the caller holds the real arrays for the whole call.

Numba's cache key does not cover constants imported from other modules, nor other
files of the core (performance-notes.md, pitfall 2), so `_wipe_stale_cache` hashes
every source file of the compiled core and removes numba's cache files when that
hash changes — in the folders numba actually uses (`_cache_dirs`: `NUMBA_CACHE_DIR`, the
in-tree `__pycache__`, or the user-wide cache of a read-only install).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

JIT = os.environ.get("CMASIM_JIT", "1") != "0" and os.environ.get("NUMBA_DISABLE_JIT", "0") != "1"
# Whether `prefetch` hints are issued at all: compiled only (a compile-time constant to numba).
# Interpreted, `prefetch` does nothing, and computing the addresses a hint needs only costs time.
PREFETCH_HINTS = JIT

_PKG = Path(__file__).resolve().parent.parent
# Every file whose functions are compiled, or whose constants they read.
_CORE_FILES = ("mm/mmzone.py", "mm/prandom.py", "mm/zone_stat.py", "mm/freelist.py", "mm/page_alloc.py", "mm/watermark.py", "mm/wakeup.py", "mm/oom_kill.py", "mm/pcp.py", "mm/rmqueue.py", "mm/alloc_pages.py", "mm/alloc_contig.py", "mm/cma_release.py", "mm/folio.py", "mm/timers.py", "mm/migrate.py", "mm/gup.py", "mm/page_isolation.py", "mm/vmscan.py", "mm/compaction.py", "mm/debug.py", "workload/churn.py", "workload/pinner.py", "workload/fill.py", "clock.py", "engine_core.py", "trace/replay_core.py", "mm/jit.py")


def _core_digest() -> str:
    """A hash of every core source file and the jit options: the identity of the compiled cache."""
    h = hashlib.sha256()
    for rel in _CORE_FILES:
        p = _PKG / rel
        if p.exists():
            h.update(p.read_bytes())
    h.update(b"error_model=numpy;inline-helpers;fixed-int64-signatures-lazy")  # jit options are part of the cache identity
    return h.hexdigest()[:16]


CORE_DIGEST = ""  # set when compiling; cmasim.warmup compares it with its "compiled" stamp


def _cache_dirs() -> set[Path]:
    """The folders numba keeps the core's cache in: for each core source folder, the first of
    numba's cache locators that works there, as numba itself picks them (`NUMBA_CACHE_DIR`'s
    mirror of the folder when set, else the in-tree `__pycache__`, else the user-wide cache
    of a read-only install). Only the in-tree folders if numba's locators are not there."""
    dirs = {(_PKG / rel).parent / "__pycache__" for rel in _CORE_FILES}
    try:
        from numba.core.caching import FunctionCache

        classes = FunctionCache._impl_class._locator_classes
    except (ImportError, AttributeError):  # another numba layout: the in-tree folders only
        return dirs

    def probe():  # a locator wants a function; only its line number is read
        pass

    out = set()
    one_per_folder = {(_PKG / rel).parent: _PKG / rel for rel in _CORE_FILES}
    for src_path in one_per_folder.values():
        src = str(src_path)
        for cls in classes:
            try:
                loc = cls.from_function(probe, src)
            except OSError:
                loc = None
            if loc is not None:
                out.add(Path(loc.get_cache_path()))
                break
    return out or dirs


def _wipe_stale_cache() -> None:
    """Remove numba's cache files of the core when any core source changed (module docstring),
    wherever numba keeps them (`_cache_dirs`); the hash of the sources the cache was built
    from is kept beside each folder's files (`cmasim-core.hash`)."""
    global CORE_DIGEST
    digest = CORE_DIGEST = _core_digest()
    wiped = False
    for cache_dir in sorted(_cache_dirs()):
        stamp = cache_dir / "cmasim-core.hash"
        try:
            if stamp.exists() and stamp.read_text() == digest:
                continue
            wiped = True
            if cache_dir.is_dir():
                for f in cache_dir.iterdir():
                    if f.suffix in (".nbi", ".nbc"):
                        f.unlink(missing_ok=True)
            cache_dir.mkdir(parents=True, exist_ok=True)
            stamp.write_text(digest)
        except OSError:
            # A read-only folder: numba falls back to another locator (its own cache folder).
            pass
    # The "compiled" stamp cmasim.warmup leaves says compile_core() ran for some digest; after
    # a wipe nothing is compiled, whatever digest it names (a source changed and changed back
    # would otherwise match it again with an empty cache).
    if wiped:
        for where in {Path(os.environ["NUMBA_CACHE_DIR"]) if os.environ.get("NUMBA_CACHE_DIR") else None,
                      _PKG / "__pycache__"} - {None}:
            try:
                (where / "cmasim-core.compiled").unlink(missing_ok=True)
            except OSError:
                pass


if JIT:
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - numba is a hard dependency, but stay usable
        JIT = False

def _skip_blas_probe() -> None:
    """Keep scipy.linalg off the first compiled call of a process.

    numba initialises its target context at the first compile or cache load, importing
    numba.np.arraymath, which probes for BLAS at import by importing scipy.linalg.cython_blas
    (arraymath._HAVE_BLAS): 0.3–0.7 s of CPU, half the cost of `cmasim replay`'s first cache
    load (docs/performance.md, "Replay: fixed start"). The core uses no BLAS (no np.dot, no
    np.linalg), so that first import runs with the probe answering "available" without
    importing anything; every later call of numba's ensure_blas() (typing np.dot or np.linalg
    in compiled code) is the real one and imports scipy.linalg then."""
    import sys

    from numba.core import cpu

    load = cpu.CPUContext.load_additional_registries

    def load_additional_registries(self):
        cpu.CPUContext.load_additional_registries = load  # once: the probe runs at import only
        if "numba.np.arraymath" not in sys.modules:
            from numba.np import linalg

            ensure = linalg.ensure_blas
            linalg.ensure_blas = lambda: None
            try:
                from numba.np import arraymath  # noqa: F401
            finally:
                linalg.ensure_blas = ensure
        return load(self)

    cpu.CPUContext.load_additional_registries = load_additional_registries


class _LazyFunctionCache:
    """numba's FunctionCache of one dispatcher, built at its first use (a load, a save).

    Building it finds the cache directory (creating and deleting a probe file there to check
    that it is writable), stats the source file and reads its name: about a millisecond for
    each of the core's ~280 dispatchers, at import, while a replay loads some twenty of them
    (docs/performance.md, "Replay: lazy cache set-up"). Every attribute is the real cache's.

    And a load does not refresh numba's target context (`load_overload`): numba's own load
    first imports and installs every typing and lowering registry (numba.np.arraymath,
    npyimpl, the typed containers, ...; 0.2-0.3 s of CPU at a process's first load), which
    only compiling needs — and numba's compiler refreshes the context itself before it
    compiles anything. Linking the cached code needs numba's runtime (NRT) symbols only."""

    __slots__ = ("_py_func", "_real")

    def __init__(self, py_func):
        self._py_func = py_func
        self._real = None

    def _cache(self):
        real = self._real
        if real is None:
            from numba.core.caching import FunctionCache

            real = self._real = FunctionCache(self._py_func)
        return real

    def __getattr__(self, name):
        return getattr(self._cache(), name)

    def load_overload(self, sig, target_context):
        """numba's Cache.load_overload with the runtime initialised instead of the whole
        context refreshed (class docstring)."""
        from numba.core.runtime import rtsys

        real = self._cache()
        load = getattr(real, "_load_overload", None)
        if load is None:  # another numba layout: its own load, context refresh included
            return real.load_overload(sig, target_context)
        rtsys.initialize(target_context)
        with real._guard_against_spurious_io_errors():
            return load(sig, target_context)
        # None when the guard swallowed an I/O error, as numba's own


def _lazy_cache_setup() -> None:
    """numba.njit(cache=True) of a cmasim function sets its cache up at its first compile or
    load instead of at decoration (`_LazyFunctionCache`); numba's Dispatcher.enable_caching is
    the only place that builds it (a numba internal, like the two compile hooks of `kjit_fixed`
    and `_skip_blas_probe`). Other packages' functions keep numba's own."""
    from numba.core import dispatcher

    enable = dispatcher.Dispatcher.enable_caching

    def enable_caching(self):
        if getattr(self.py_func, "__module__", "").startswith("cmasim."):
            self._cache = _LazyFunctionCache(self.py_func)
        else:
            enable(self)

    dispatcher.Dispatcher.enable_caching = enable_caching


def _reuse_inlinee_ir() -> None:
    """Run numba's untyped passes over each `kjit_inline` function once per process, not once
    per call site.

    numba inlines an ``inline="always"`` function (`InlineWorker.inline_function`, called by
    the untyped pass InlineInlinables) by running the whole untyped pipeline over the callee —
    bytecode analysis, IR generation and its own inlining of the helpers it calls — at every
    call site, then copying that IR into the caller (`InlineWorker.inline_ir`, which copies
    the callee's IR before changing anything). The core has some 800 such sites over a few
    dozen functions, and each site repeated the callee's pipeline with its nested inlines: a
    third of a cold compile's Python time (docs/performance.md, "Cold compile"). Here the
    callee's IR is kept per (function, the caller's compiler flags) and every site copies
    it, as numba's own inlining of `@overload(inline="always")` does with its kept IR. The
    side effect numba's `run_untyped_passes` has on the caller's flags (enable_ssa = False)
    is kept. The IR, and so the compiled code, is the same; only the inlined variables'
    names differ (numba renames them apart at each site).

    The copy itself (`inline_ir`'s `copy_ir`) deep-copies the callee's blocks one by one, each
    with a fresh memo, so every block drags along its own copy of the callee's whole scope
    (every variable): blocks times variables, most of the inliner's time once the pipeline
    runs once. During the inlining of a `kjit_inline` function the copies share one memo:
    the blocks of a copy share one copied scope, as the callee's blocks share theirs."""
    import copy

    from numba.core import inline_closurecall
    from numba.core.inline_closurecall import InlineWorker

    untyped = InlineWorker.run_untyped_passes
    kept = {}

    class _SharedMemoCopy:
        """The `copy` module as numba's inliner sees it: deepcopy() takes `memo` when set."""
        memo = None

        def deepcopy(self, x, memo=None):
            return copy.deepcopy(x, self.memo if memo is None else memo)

        def __getattr__(self, name):
            return getattr(copy, name)

    shim = inline_closurecall.copy = _SharedMemoCopy()

    def inline_function(self, caller_ir, block, i, function, arg_typs=None):
        self.flags.enable_ssa = False  # as run_untyped_passes(): the callee's IR is not SSA
        key = (function, self.typingctx, self.targetctx, self.flags.copy(),
               tuple(sorted(self.locals.items())) if self.locals else ())
        callee_ir = kept.get(key)
        if callee_ir is None:
            callee_ir = kept[key] = untyped(self, function)
        outer, shim.memo = shim.memo, {}
        try:
            return self.inline_ir(caller_ir, block, i, callee_ir, function.__code__.co_freevars, arg_typs=arg_typs)
        finally:
            shim.memo = outer

    InlineWorker.inline_function = inline_function


def _patch_inliner_at_first_compile() -> None:
    """`_reuse_inlinee_ir()` when numba first compiles something in this process: importing
    numba's inliner costs ~0.1 s, which a process that only loads the cache (a replay's fixed
    start) should not pay."""
    from numba.core import event

    class _FirstCompile(event.Listener):
        done = False

        def on_start(self, ev):
            if not self.done:
                self.done = True
                try:
                    _reuse_inlinee_ir()
                except (ImportError, AttributeError):  # another numba layout: inline as numba does
                    pass

        def on_end(self, ev):
            pass

    event.register("numba:compile", _FirstCompile())


if JIT:
    _wipe_stale_cache()
    import numba

    try:
        _skip_blas_probe()
    except (ImportError, AttributeError):  # another numba layout: keep its own probe
        pass
    try:
        _lazy_cache_setup()
    except (ImportError, AttributeError):  # another numba layout: numba's own set-up
        pass

    _patch_inliner_at_first_compile()

    def kjit(fn):
        """Compile `fn` with numba (cached, nogil); see module docstring. Reference counting
        is asked for explicitly (`_nrt=True`): numba otherwise inherits the flag from the
        caller that first compiles a function, and `kjit_fixed` callers have it off."""
        return numba.njit(cache=True, nogil=True, error_model="numpy", _nrt=True)(fn)

    def kjit_inline(fn):
        """Like `kjit`, inlined at numba IR level into every caller: for the few-line helpers
        of the hot path (list links, page words), where a call costs more than the body; and
        for intermediate functions with one or a few compiled callers and a large call tree.
        Numba compiles every function it does not inline as a library of its own, which links
        in its callees' code and runs LLVM's optimiser and code generation over all of it again
        (docs/performance.md, "Cold compile: where the remaining time goes"): an inlined
        function costs its callers' typing of its body, not another generation of its tree."""
        return numba.njit(cache=True, nogil=True, error_model="numpy", inline="always", _nrt=True)(fn)

    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def borrow(typingctx, arr):
        """A view of array `arr` without numba's reference count (module docstring, `borrow`)."""
        def codegen(context, builder, signature, args):
            ary = cgutils.create_struct_proxy(signature.args[0])(context, builder, value=args[0])
            ary.meminfo = cgutils.get_null_value(ary.meminfo.type)
            ary.parent = cgutils.get_null_value(ary.parent.type)
            return ary._getvalue()
        return arr(arr), codegen

    @intrinsic
    def prefetch(typingctx, arr, i):
        """A hint that element i of array `arr` will be used soon (LLVM's llvm.prefetch: read,
        high locality, data cache). Changes no value; an index outside the array is harmless
        (a prefetch never faults), so there is no bounds check."""
        def codegen(context, builder, signature, args):
            from llvmlite import ir

            ary = context.make_array(signature.args[0])(context, builder, args[0])
            idx = context.cast(builder, args[1], signature.args[1], types.intp)
            ptr = builder.gep(ary.data, [idx])
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
            return context.get_dummy_value()
        return types.void(arr, i), codegen

    def kjit_fixed(fn):
        """Like `kjit`, compiled for the single signature `fixed_signature(fn)` (module docstring).

        Compiled (or loaded from the cache) at its first use, not at import: numba compiles a
        function given a signature as soon as it is decorated, which on a cold cache would
        compile most of the core while `cmasim` merely imports (before the CLI can say so).
        So the dispatcher is an ordinary lazy one whose two compile hooks — a call from
        compiled code (`get_call_template`) and a call from Python (`_compile_for_args`) —
        first compile the fixed signature and switch compilation off; numba then converts
        every later call's arguments to that signature.

        Compiled without numba's reference counting (`_nrt=False`, a numba option): a fixed
        function takes the state arrays and integers, allocates no array and keeps none, so
        the increments and decrements of its array arguments (calls into NRT_incref /
        NRT_decref, null checks on borrowed views) are pure cost: an eighth of a churn
        event's time (docs/performance.md). Allocating in one is a compile error ("NRT
        required but not enabled"); a callee that returns a new array to one would leak it."""
        disp = numba.njit(cache=True, nogil=True, error_model="numpy", _nrt=False)(fn)
        sig = fixed_signature(fn)
        typed_call, python_call = disp.get_call_template, disp._compile_for_args

        def fix():
            if not disp.signatures:
                disp.compile(sig)
                disp.disable_compile()

        def get_call_template(args, kws):
            fix()
            return typed_call(args, kws)

        def compile_for_args(*args, **kws):
            if disp.signatures:  # compiled already: a call no conversion could match
                return python_call(*args, **kws)
            fix()
            return disp  # numba's dispatcher calls this with the arguments: now they convert

        disp.get_call_template = get_call_template
        disp._compile_for_args = compile_for_args
        disp.cmasim_fix = fix  # compile now, without a call (cmasim.compile_pool)
        return disp

else:

    def kjit(fn):
        """Interpreted mode: return `fn` unchanged."""
        return fn

    kjit_inline = kjit_fixed = kjit

    def borrow(arr):
        """Interpreted mode: the array itself."""
        return arr

    def prefetch(arr, i):
        """Interpreted mode: nothing to do."""


_ARRAY_ARGS = {"S": "int32", "C": "int64", "W": "int64", "scratch": "int64", "pfns": "int64"}


def fixed_signature(fn) -> tuple:
    """The argument types of a `kjit_fixed` function, from its parameter names: the state
    arrays by name (_ARRAY_ARGS), int64 for everything else."""
    import inspect

    from numba import types

    out = []
    for name in inspect.signature(fn).parameters:
        dt = _ARRAY_ARGS.get(name)
        out.append(types.Array(getattr(types, dt), 1, "C") if dt else types.int64)
    return tuple(out)
