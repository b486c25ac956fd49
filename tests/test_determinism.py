"""Determinism: the same scenario, policy and seed give bit-identical state and metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import POLICIES, run_churn
from test_cli import TINY

from cmasim.policy import get_policy
from cmasim.run import build_machine, run_scenario
from cmasim.scenario import load_scenario_text
from cmasim.workload.churn import churn_params


def churned(policy: str, seed: int, events: int = 3000):
    sc = load_scenario_text(TINY, "tiny.toml")
    m = build_machine(sc, get_policy(policy), seed)
    spec = sc.workload.churn
    W = churn_params(m, target_usage=spec.target_usage, p_order0=spec.order0, p_order13=spec.order1_3,
                     high_order=spec.high_order, p_movable=spec.movable, p_unmovable=spec.unmovable,
                     dt_ns=spec.event_interval_ns)
    assert run_churn(m, W, events) == events
    m.check()
    return m, W


@pytest.mark.parametrize("policy", POLICIES)
def test_same_seed_same_state(policy):
    a, wa = churned(policy, 5)
    b, wb = churned(policy, 5)
    assert np.array_equal(a.S, b.S) and np.array_equal(a.C, b.C) and np.array_equal(wa, wb)


@pytest.mark.parametrize("policy", POLICIES)
def test_different_seed_different_state(policy):
    a, _ = churned(policy, 5)
    b, _ = churned(policy, 6)
    assert not np.array_equal(a.S, b.S)


def strip(met: dict) -> dict:
    met = dict(met)
    met.pop("wall_s")
    return met


def test_run_scenario_metrics_are_reproducible(tmp_path):
    sc = load_scenario_text(TINY, "tiny.toml")
    runs = [run_scenario(sc, get_policy("linux-6.18"), seed, tmp_path / f"r{i}")
            for i, seed in enumerate((11, 11, 12))]
    assert strip(runs[0]) == strip(runs[1])
    assert strip(runs[0])["counters"] != strip(runs[2])["counters"]
    for name in ("buddyinfo", "pagetypeinfo", "zoneinfo", "vmstat"):
        assert (tmp_path / "r0" / "proc" / name).read_text() == (tmp_path / "r1" / "proc" / name).read_text()
    on_disk = json.loads((tmp_path / "r0" / "metrics.json").read_text())
    assert strip(on_disk) == json.loads(json.dumps(strip(runs[0])))


def test_seed_defaults_to_the_scenario_seed():
    sc = load_scenario_text(TINY, "tiny.toml")
    met = run_scenario(sc, get_policy("linux-6.1"))
    assert met["seed"] == 3
    assert strip(met) == strip(run_scenario(sc, get_policy("linux-6.1"), 3))
