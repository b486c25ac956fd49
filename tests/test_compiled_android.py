"""The Android era records (issue 14) run bit-identically compiled and interpreted: their
switches (per-CPU skip, CMA-only __rmqueue_cma, order-0 miss without buddy, per-CPU list
orders) and the per-class counters are numba-compatible. Same method as test_compiled.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

POLICIES = ("android-2020", "android-5.4", "android-5.10", "android-6.6", "android-6.18-no-cma-pcp")

SCRIPT = r"""
import hashlib, inspect, sys
from cmasim.machine import Machine, MachineConfig
from cmasim.policy import get_policy
from cmasim.workload.churn import churn, churn_params

fn = getattr(churn, "py_func", churn)
nargs = len(inspect.signature(fn).parameters)
for policy in sys.argv[1:]:
    cfg = MachineConfig(zones=[("DMA32", 4096), ("Normal", 8192)], nr_cpus=2, cma_areas=[("cma", 4096, 2048, 0)])
    m = Machine(cfg, get_policy(policy), seed=7)
    W = churn_params(m, p_file=0.3, gfp_cma_owners=m.policy.gfp_cma_owners, p_thp_gfp_cma=0.5)
    args = (m.S, m.C, W, 20000) if nargs == 4 else (m.S, m.C, W, 20000, 1 << 62)
    assert churn(*args) == 20000
    m.check()
    print(policy, hashlib.sha256(m.S.tobytes() + m.C.tobytes() + W.tobytes()).hexdigest(), flush=True)
"""


@pytest.mark.compiled
def test_android_eras_compiled_and_interpreted_agree():
    procs = {}
    for jit in ("1", "0"):
        env = dict(os.environ, CMASIM_JIT=jit, PYTHONPATH=str(ROOT))
        env.pop("NUMBA_DISABLE_JIT", None)
        procs[jit] = subprocess.Popen([sys.executable, "-c", SCRIPT, *POLICIES], cwd=ROOT, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = {}
    for jit, p in procs.items():
        stdout, stderr = p.communicate(timeout=1200)
        assert p.returncode == 0, stderr
        out[jit] = stdout.splitlines()
    assert len(out["1"]) == len(POLICIES)
    assert out["1"] == out["0"]
    assert len({line.split()[1] for line in out["0"]}) == len(POLICIES)  # the eras really differ
