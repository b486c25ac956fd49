"""The numba-compiled core and the interpreted reference produce bit-identical state.

Each mode runs in its own process because CMASIM_JIT is read once, at import time.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPT = r"""
import hashlib, inspect, os
from cmasim.mm.jit import JIT
from cmasim.machine import Machine, MachineConfig
from cmasim.policy import get_policy
from cmasim.workload.churn import churn, churn_params

want_jit = os.environ["CMASIM_JIT"] == "1"
assert JIT == want_jit, (JIT, want_jit)
if want_jit:
    from numba.core.registry import CPUDispatcher
    assert isinstance(churn, CPUDispatcher), type(churn)
else:
    assert inspect.isfunction(churn), type(churn)
fn = getattr(churn, "py_func", churn)
nargs = len(inspect.signature(fn).parameters)
for policy in ("linux-6.18", "linux-6.1"):
    cfg = MachineConfig(zones=[("DMA32", 4096), ("Normal", 8192)], nr_cpus=2, cma_areas=[("cma", 4096, 2048, 0)])
    m = Machine(cfg, get_policy(policy), seed=7)
    W = churn_params(m)
    args = (m.S, m.C, W, 20000) if nargs == 4 else (m.S, m.C, W, 20000, 1 << 62)
    assert churn(*args) == 20000
    m.check()
    print(policy, hashlib.sha256(m.S.tobytes() + m.C.tobytes() + W.tobytes()).hexdigest(), flush=True)
if want_jit:
    assert churn.signatures, "churn was never compiled"
    print("compiled", len(churn.signatures))
"""


@pytest.mark.compiled
def test_compiled_and_interpreted_cores_agree():
    procs = {}
    for jit in ("1", "0"):
        env = dict(os.environ, CMASIM_JIT=jit, PYTHONPATH=str(ROOT))
        env.pop("NUMBA_DISABLE_JIT", None)
        procs[jit] = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = {}
    for jit, p in procs.items():
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr
        out[jit] = stdout.splitlines()
    assert out["1"][-1].startswith("compiled")
    hashes = {jit: [line for line in lines if line.startswith("linux-")] for jit, lines in out.items()}
    assert len(hashes["1"]) == 2
    assert hashes["1"] == hashes["0"]
    # the two policies really ran differently
    assert hashes["0"][0].split()[1] != hashes["0"][1].split()[1]
