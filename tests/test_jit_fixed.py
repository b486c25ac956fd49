"""`kjit_fixed`: one compiled signature, chosen at first use, whatever the call sites pass.

Runs numba in a child process (the suite itself is interpreted) on a two-function module
written to a temporary folder, with its own numba cache folder.
"""

import json
import os
import subprocess
from pathlib import Path
import sys

from conftest import ROOT

MODULE = '''
import numpy as np
from cmasim.mm.jit import kjit, kjit_fixed

@kjit_fixed
def leaf(S, C, a, b):
    if b:
        C[0] += a
    return a + 1

@kjit
def caller(S, C):
    x = S[0]                      # an int32
    leaf(S, C, x, True)           # int32 and bool arguments
    leaf(S, C, 3, False)          # literal constants
    return leaf(S, C, x, x > 0)
'''

CHECK = '''
import json, numpy as np, fixedmod as m
out = {"after_import": len(m.leaf.signatures)}
S = np.full(4, 2, np.int32); C = np.zeros(4, np.int64)
out["caller"] = int(m.caller(S, C)); out["c0"] = int(C[0])
out["python_bool"] = int(m.leaf(S, C, 5, True)); out["c0_after"] = int(C[0])
out["signatures"] = [str(s) for s in m.leaf.signatures]
print(json.dumps(out))
'''


def test_kjit_fixed_compiles_one_signature_at_first_use(tmp_path):
    (tmp_path / "fixedmod.py").write_text(MODULE)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}", NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               CMASIM_JIT="1")
    env.pop("NUMBA_DISABLE_JIT", None)
    for run in range(2):  # a cold cache, then a warm one
        out = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        r = json.loads(out.stdout.strip().splitlines()[-1])
        assert r["after_import"] == 0, "compiled at import"
        assert (r["caller"], r["c0"]) == (3, 4)
        assert (r["python_bool"], r["c0_after"]) == (6, 9)
        assert r["signatures"] == ["(Array(int32, 1, 'C', False, aligned=True), Array(int64, 1, 'C', False, "
                                   "aligned=True), int64, int64)"], run


BLAS = '''
import json, sys, numpy as np
from cmasim.mm import jit
from cmasim.trace import replay_core as RC
before = "numba.np.arraymath" in sys.modules
RC.kv_find(np.full(2048, -1, np.int64), 5)  # the process's first compiled call (or cache load)
import numba.np.arraymath as am
print(json.dumps({"jit": jit.JIT, "before": before, "scipy_linalg": "scipy.linalg" in sys.modules,
                  "have_blas": am._HAVE_BLAS, "probe_restored": am.ensure_blas is not sys.modules["numba.np.linalg"].ensure_blas
                  and sys.modules["numba.np.linalg"].ensure_blas.__name__ == "ensure_blas"}))
'''


def test_first_compiled_call_skips_the_blas_probe(tmp_path):
    """`jit._skip_blas_probe`: numba's first target-context load does not import scipy.linalg
    (its BLAS probe), BLAS counts as available, and numba's ensure_blas() is the real one after."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_CACHE_DIR=str(tmp_path / "cache"), CMASIM_JIT="1")
    env.pop("NUMBA_DISABLE_JIT", None)
    out = subprocess.run([sys.executable, "-c", BLAS], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r == {"jit": True, "before": False, "scipy_linalg": False, "have_blas": True, "probe_restored": True}


LAZY = '''
import json, sys, numpy as np
from cmasim.trace import replay_core as RC
f = RC.kv_find
out = {"lazy_at_import": type(f._cache).__name__ == "_LazyFunctionCache" and f._cache._real is None}
keys = np.full(2048, -1, np.int64)  # a key-value table of 1,024 slots: key, value, key, ...
home = out["home"] = int(RC._home.py_func(5, 1023))  # the key's first probe (plain Python)
keys[2 * home] = 5
out["found"] = int(f(keys, 5))
out["hits"] = sum(f.stats.cache_hits.values())
out["registries_after_first_call"] = "numba.np.arraymath" in sys.modules
out["found2"] = int(f(keys.astype(sys.argv[1]), 5))  # a signature no earlier run compiled: compiled here
out["registries_after_second"] = "numba.np.arraymath" in sys.modules
out["hits2"] = sum(f.stats.cache_hits.values())
print(json.dumps(out))
'''


def test_caches_set_up_at_first_use_and_loads_skip_the_context(tmp_path):
    """`jit._LazyFunctionCache`: a core dispatcher's numba cache is built at its first use, not at
    import; a load from the cache does not refresh numba's target context (no typing or lowering
    registry imported), and a compile later in the same process still works (numba's compiler
    refreshes the context itself). Cold cache first (compiles, saves), then warm twice (loads); each
    run then compiles a signature no run has compiled, after that load."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_CACHE_DIR=str(tmp_path / "cache"), CMASIM_JIT="1")
    env.pop("NUMBA_DISABLE_JIT", None)
    runs = []
    for dtype in ("int32", "int16", "int8"):  # the second call's key type: new in every run
        out = subprocess.run([sys.executable, "-c", LAZY, dtype], env=env, capture_output=True, text=True,
                             cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cold, warm, warm2 = runs
    home = cold["home"]
    for r in runs:
        assert r["lazy_at_import"] and r["found"] == r["found2"] == home
        assert r["registries_after_second"]  # a compile: numba's compiler refreshed the context
        assert r["hits2"] == r["hits"]  # ... and the second signature was compiled, not loaded
    assert cold["hits"] == 0 and cold["registries_after_first_call"]  # compiled
    assert warm["hits"] == warm2["hits"] == 1 and not warm["registries_after_first_call"]  # loaded, no refresh
    assert not warm2["registries_after_first_call"]


INLINE_MODULE = '''
from cmasim.mm.jit import kjit, kjit_inline

@kjit_inline
def leaf(C, x):
    y = x * 3
    if y > 10:
        C[0] += y
        return y - 1
    return y + 1

@kjit_inline
def mid(C, x):
    a = leaf(C, x)
    return a + leaf(C, a)

@kjit
def top(C, n):
    s = 0
    for i in range(n):
        s += mid(C, i) + leaf(C, i) + mid(C, s % 7)
    return s
'''

INLINE_CHECK = '''
import json, sys, numpy as np
from numba.core.inline_closurecall import InlineWorker
runs = []
untyped = InlineWorker.run_untyped_passes
def counted(self, func, enable_ssa=False):
    runs.append(func.__name__)
    return untyped(self, func, enable_ssa)
InlineWorker.run_untyped_passes = counted   # before cmasim.mm.jit keeps it
import inlmod as m
C = np.zeros(2, np.int64)
print(json.dumps({"top": int(m.top(C, 20)), "c0": int(C[0]), "runs": sorted(runs)}))
'''


def test_inlined_function_ir_is_built_once(tmp_path):
    """`jit._reuse_inlinee_ir`: a kjit_inline function inlined at five sites (two of them inside
    another inlined function, itself inlined twice) has numba's untyped passes run once, and
    the compiled result equals the interpreted one."""
    (tmp_path / "inlmod.py").write_text(INLINE_MODULE)
    out = {}
    for jit in ("1", "0"):
        env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}", NUMBA_CACHE_DIR=str(tmp_path / "cache"),
                   CMASIM_JIT=jit)
        env.pop("NUMBA_DISABLE_JIT", None)
        r = subprocess.run([sys.executable, "-c", INLINE_CHECK], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        out[jit] = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["1"]["runs"] == ["leaf", "mid"]  # numba alone: mid twice, leaf five times
    assert out["0"]["runs"] == []
    assert (out["1"]["top"], out["1"]["c0"]) == (out["0"]["top"], out["0"]["c0"])


def test_a_wiped_cache_is_not_called_compiled(tmp_path, monkeypatch):
    """A core source changed and changed back: the import wipes the cache twice, and the
    "compiled" stamp of the first digest must not make `core_cached()` true over an empty cache."""
    from cmasim import warmup
    from cmasim.mm import jit

    (tmp_path / "mm").mkdir()
    (tmp_path / "mm" / "x.py").write_text("v = 1\n")
    cache = tmp_path / "mm" / "__pycache__"
    cache.mkdir()
    monkeypatch.setattr(jit, "_PKG", tmp_path)
    monkeypatch.setattr(jit, "_CORE_FILES", ("mm/x.py",))
    monkeypatch.setattr(jit, "CORE_DIGEST", jit.CORE_DIGEST)
    monkeypatch.setattr(jit, "JIT", True)
    monkeypatch.setattr(warmup, "_stamp", lambda: tmp_path / "__pycache__" / "cmasim-core.compiled")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr("numba.core.config.CACHE_DIR", "")  # numba read it at import
    assert jit._cache_dirs() == {cache}
    jit._wipe_stale_cache()  # digest of v = 1
    (cache / "x.f-1.py311.nbi").write_bytes(b"i")
    warmup.mark_cached()  # compile_core() ran
    assert warmup.core_cached()
    (tmp_path / "mm" / "x.py").write_text("v = 2\n")
    jit._wipe_stale_cache()
    (tmp_path / "mm" / "x.py").write_text("v = 1\n")
    jit._wipe_stale_cache()  # the first digest again, over a wiped cache
    assert not [f for f in cache.iterdir() if f.suffix in (".nbi", ".nbc")]
    assert not warmup.core_cached()


def test_a_changed_source_wipes_the_cache_numba_uses_under_numba_cache_dir(tmp_path, monkeypatch):
    """With NUMBA_CACHE_DIR set numba keeps the cache there (one folder per source folder, named
    after its path), not in __pycache__: a changed core source must wipe that folder, or the
    functions of unchanged files would load with another file's old constants."""
    from numba.core.caching import FunctionCache

    from cmasim import warmup
    from cmasim.mm import jit

    (tmp_path / "mm").mkdir()
    src = tmp_path / "mm" / "x.py"
    src.write_text("v = 1\n")
    monkeypatch.setattr(jit, "_PKG", tmp_path)
    monkeypatch.setattr(jit, "_CORE_FILES", ("mm/x.py",))
    monkeypatch.setattr(jit, "CORE_DIGEST", jit.CORE_DIGEST)
    monkeypatch.setattr(jit, "JIT", True)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "nc"))
    monkeypatch.setattr("numba.core.config.CACHE_DIR", str(tmp_path / "nc"))

    def probe():
        pass

    where = Path(FunctionCache._impl_class._locator_classes[0](probe, str(src)).get_cache_path())
    assert jit._cache_dirs() == {where}
    jit._wipe_stale_cache()  # digest of v = 1
    (where / "x.f-1.py311.nbi").write_bytes(b"i")
    warmup.mark_cached()
    assert warmup.core_cached()
    jit._wipe_stale_cache()  # unchanged: kept
    assert (where / "x.f-1.py311.nbi").exists() and warmup.core_cached()
    src.write_text("v = 2\n")
    jit._wipe_stale_cache()
    assert not (where / "x.f-1.py311.nbi").exists()
    assert not warmup.core_cached()
    assert not (tmp_path / "mm" / "__pycache__" / "x.f-1.py311.nbi").exists()
