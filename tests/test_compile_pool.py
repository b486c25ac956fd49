"""The cold compile on worker processes (cmasim.compile_pool): the job plan read from the core's
code, the pool running a plan whose results a new process loads, a failing job, and numba cache
saves made exclusive between processes."""

import json
import os
import subprocess
import sys

import pytest

from cmasim import compile_pool
from conftest import ROOT


def _child(code: str, tmp_path, jit: str = "1", timeout: int = 600) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_CACHE_DIR=str(tmp_path / "cache"), CMASIM_JIT=jit)
    env.pop("CMASIM_COMPILE_JOBS", None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


PLAN = """
import json
from cmasim import compile_pool as cp
d = cp.plan()
print(json.dumps({k: sorted(v) for k, v in d.items()}))
"""


def test_plan_waits_for_the_fixed_functions_each_job_calls(tmp_path):
    deps = {k: set(v) for k, v in _child(PLAN, tmp_path).items()}
    fixed = {k for k in deps if ":" in k}
    assert len(fixed) >= 30 and set(compile_pool.ENTRY_JOBS) <= set(deps)
    fa, pa = "cmasim.mm.freelist:", "cmasim.mm.page_alloc:"
    assert deps[pa + "expand"] == {fa + "__add_to_free_list"}
    assert {"cmasim.mm.alloc_pages:__alloc_pages_slowpath", "cmasim.mm.rmqueue:get_page_from_freelist"} \
        <= deps["cmasim.mm.alloc_pages:alloc_pages"]
    # through non-fixed callees: compact_zone's fixed callees are reached via its helpers
    assert "cmasim.mm.rmqueue:free_pages" in deps["cmasim.mm.compaction:compact_zone"]
    assert deps["pcp"] == set()
    assert deps["scenario"] == fixed | {"contig", "anon"}
    assert "cmasim.workload.churn:churn_events" not in deps["replay"]
    # the plan can run: repeatedly taking the jobs with nothing left to wait for empties it
    left = {k: set(v) for k, v in deps.items()}
    while left:
        ready = [k for k, v in left.items() if not v]
        assert ready, f"a cycle among {sorted(left)}"
        for k in ready:
            del left[k]
        for v in left.values():
            v.difference_update(ready)
    prio = compile_pool._heights(deps)
    assert prio[fa + "__add_to_free_list"] > prio[pa + "expand"] > prio["scenario"]


POOL = """
import json, time
from cmasim import compile_pool as cp
fa, pa = "cmasim.mm.freelist:", "cmasim.mm.page_alloc:"
plan = {fa + "__add_to_free_list": set(), fa + "trace_record": set(), pa + "expand": {fa + "__add_to_free_list"}}
log = []
ok = cp.run_pool(2, log=log, deps=plan)
t = time.perf_counter()
bad = cp.run_pool(1, deps={fa + "no_such_function": set()})
print(json.dumps({"ok": ok, "log": log, "bad": bad, "bad_s": time.perf_counter() - t}))
"""

LOAD = """
import json
from cmasim.warmup import compile_listener
from cmasim.mm import page_alloc
seen = []
with compile_listener(seen.append):
    page_alloc.expand.cmasim_fix()
print(json.dumps({"compiled": seen, "sigs": len(page_alloc.expand.signatures)}))
"""


def test_pool_compiles_a_plan_in_workers_and_a_new_process_loads_it(tmp_path):
    out = _child(POOL, tmp_path)
    assert out["ok"] is True
    log = {job.split(":")[1]: (w, a, b) for job, w, a, b in out["log"]}
    assert set(log) == {"__add_to_free_list", "trace_record", "expand"}
    assert {w for w, _, _ in log.values()} == {0, 1}  # both workers had work
    assert log["expand"][1] >= log["__add_to_free_list"][2]  # started after what it waits for
    # a job that fails ends the pool at once, reported as not finished
    assert out["bad"] is False and out["bad_s"] < 60
    loaded = _child(LOAD, tmp_path)
    assert loaded == {"compiled": [], "sigs": 1}  # from the workers' cache: nothing compiled here


SAVER = """
import sys, time
from numba.core.caching import IndexDataCacheFile
from cmasim.compile_pool import locked_cache_saves
if sys.argv[2] == "locked":
    locked_cache_saves()
f = IndexDataCacheFile(sys.argv[1], "f", ("stamp", 1))
while time.time() < float(sys.argv[3]):
    pass
for i in range(60):
    f.save((sys.argv[4], i), (sys.argv[4], i))
"""


def test_concurrent_cache_saves_keep_every_entry(tmp_path):
    """Two processes saving different entries of one function's cache at once: with the lock,
    every key has a data file of its own holding its data (numba alone can give two keys the
    same file: it reads the index, takes the first free number, then writes)."""
    import time

    from numba.core.caching import IndexDataCacheFile

    cache = tmp_path / "c"
    cache.mkdir()
    start = time.time() + 2
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, str(cache), "locked", str(start), name],
                              env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=tmp_path)
             for name in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    f = IndexDataCacheFile(str(cache), "f", ("stamp", 1))
    index = f._load_index()
    assert len(index) == 120
    assert len(set(index.values())) == 120
    for key in index:
        assert f.load(key) == key


def test_compile_jobs_setting_is_checked(monkeypatch):
    monkeypatch.setenv("CMASIM_COMPILE_JOBS", "0")
    with pytest.raises(ValueError, match="CMASIM_COMPILE_JOBS='0'"):
        compile_pool.default_jobs()
    monkeypatch.setenv("CMASIM_COMPILE_JOBS", "two")
    with pytest.raises(ValueError, match="whole number"):
        compile_pool.default_jobs()
    monkeypatch.setenv("CMASIM_COMPILE_JOBS", "3")
    assert compile_pool.default_jobs() == 3
    monkeypatch.delenv("CMASIM_COMPILE_JOBS")
    assert 1 <= compile_pool.default_jobs() <= 4


def test_every_warmup_part_runs_and_a_wrong_name_is_an_error():
    from cmasim import warmup

    assert set(warmup.PARTS) == set(compile_pool.ENTRY_JOBS)
    for part in warmup.PARTS:
        warmup.compile_entry(part)  # interpreted here: the same calls a worker makes compiled
    with pytest.raises(ValueError, match="unknown warm-up part 'scenarios'"):
        warmup.compile_entry("scenarios")


def test_cli_compile_jobs_must_be_a_positive_number(capsys):
    from cmasim.cli import main

    for bad, why in (("0", "must be at least 1, got 0"), ("two", "'two' is not an integer")):
        with pytest.raises(SystemExit) as e:
            main(["compile", "--jobs", bad])
        assert e.value.code == 2
        assert why in capsys.readouterr().err
