"""The model against the real Linux 6.1 cma_alloc() measurements in data/oracle (copied from
the project's shared material, see data/README.md).

The built-in scenario `oracle-lkml-pins` sets up the same situation (1 GiB, 128 MiB CMA at
pfn 228864, anonymous fill until 112 MiB is free, 12 cma_alloc calls of 32 and 64 MiB with
alignment order 8, 64 MiB of the fill re-touched before each). The oracle's decisions are
exact; its latencies are inflated by emulation, so only decisions are compared:
no pins -> no busy retries; short-term pins -> busy retries that move on to the next range
and still succeed; FOLL_LONGTERM pins -> pages migrated out of CMA first, no busy retries.
Runs compiled in a subprocess (the interpreted core takes ~20 s per phase).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import DATA, ROOT

ORACLE = DATA / "oracle" / "linux-6.1-cma-qemu" / "lkml_pins"
PHASES = {
    "nopin": ("nopin", []),
    "short": ("pins_short", []),
    "short_heavy": ("pins_short_heavy", ["workload.pinner.0.threads=8", "workload.pinner.0.hold_us=5000"]),
    "longterm": ("pins_longterm", ["workload.pinner.0.longterm=true"]),
}

SCRIPT = r"""
import json, sys
from cmasim.policy import get_policy
from cmasim.run import run_scenario
from cmasim.scenario import load_scenario
from cmasim.mm.jit import JIT
assert JIT
out = {}
for name, sets in json.loads(sys.argv[1]).items():
    if name == "nopin":
        sets = sets + ["workload.pinner=[]"]
    m = run_scenario(load_scenario("oracle-lkml-pins", sets), get_policy("linux-6.1"))
    a = m["cma"]["reserved"]
    out[name] = {"requests": a["requests"], "success": a["success"], "busy_retries": a["busy_retries"],
                 "pinners": m["workload"].get("pinners", []), "fill_pages": m["workload"]["fill_pages"],
                 "pin_migrated": m["counters"]["pin_migrated_out_of_cma"]}
print(json.dumps(out))
"""


def oracle_phase(stem: str) -> dict:
    text = (ORACLE / f"{stem}.txt").read_text()
    ok = sum(int(x) for x in re.findall(r"SUMMARY .* ok=(\d+)", text))
    attempts = sum(int(x) for x in re.findall(r"SUMMARY .* attempts=(\d+)", text))
    pins = re.search(r"PINS done=(\d+) failed=\d+ pages_in_cma=(\d+)", text)
    fill = int(re.search(r"FILL mib=\d+ pages=(\d+)", text).group(1))
    counts = (ORACLE / f"{stem}.trace.event_counts").read_text()
    m = re.search(r"(\d+) cma_alloc_busy_retry", counts)
    return {"attempts": attempts, "ok": ok, "busy_retries": int(m.group(1)) if m else 0,
            "pins": int(pins.group(1)), "pins_in_cma": int(pins.group(2)), "fill_pages": fill}


@pytest.mark.compiled
def test_model_makes_the_oracles_decisions():
    env = dict(os.environ, CMASIM_JIT="1", PYTHONPATH=str(ROOT))
    env.pop("NUMBA_DISABLE_JIT", None)
    arg = json.dumps({k: v[1] for k, v in PHASES.items()})
    r = subprocess.run([sys.executable, "-c", SCRIPT, arg], cwd=ROOT, env=env, text=True, capture_output=True,
                       timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    sim = json.loads(r.stdout.strip().splitlines()[-1])
    real = {k: oracle_phase(v[0]) for k, v in PHASES.items()}
    for k in PHASES:
        # Every request succeeds, in the kernel and in the model.
        assert real[k]["ok"] == real[k]["attempts"] == 12
        assert sim[k]["success"] == sim[k]["requests"] == 12, (k, sim[k])
        # The fill borrows CMA the same way: same number of pages within 1%.
        assert abs(sim[k]["fill_pages"] - real[k]["fill_pages"]) < 0.01 * real[k]["fill_pages"]
    assert real["nopin"]["busy_retries"] == 0 and sim["nopin"]["busy_retries"] == 0
    for k in ("short", "short_heavy"):
        assert real[k]["busy_retries"] > 0 and sim[k]["busy_retries"] > 0, (k, sim[k])
        assert sim[k]["pinners"][0]["pinned_in_cma"] > 0
    # Long-term pins: no busy retries, and no pinned page left in CMA (the kernel's pages_in_cma=0).
    assert real["longterm"]["busy_retries"] == 0 and real["longterm"]["pins_in_cma"] == 0
    assert sim["longterm"]["busy_retries"] == 0
    assert sim["longterm"]["pinners"][0]["pinned_in_cma"] == 0 and sim["longterm"]["pin_migrated"] > 0
