"""A tiny scenario and sweep spec for the sweep tests (interpreted core: each run well under a second)."""

from pathlib import Path

TINY_SCENARIO = """description = "sweep test: a tiny machine with a device and a pinner"
seed = 1
[machine]
memory = "32MiB"
cpus = 2
[[cma]]
name = "reserved"
size = "8MiB"
[workload]
duration_s = 0.002
[workload.churn]
events = 300
target_usage = 0.6
[[workload.device]]
area = "reserved"
size_mib = [2]
interval_ms = 1
hold_ms = 1
[[workload.pinner]]
threads = 1
hold_us = 50
gap_us = 20
"""

TINY_SPEC = """name = "tiny"
scenario = "tiny.toml"
policies = ["linux-6.18", "linux-6.18+pin-pending-migration"]
seeds = {seeds}
[axes.threads]
key = "workload.pinner.0.threads"
values = {threads}
[axes.size]
key = "workload.device.0.size_mib"
values = [1, 6]
format = "[{{}}]"
[summary]
axis = "threads"
by = ["size"]
"""


def write_tiny(d: Path, seeds: int = 1, threads: str = "[1, 8]", extra: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "tiny.toml").write_text(TINY_SCENARIO)
    spec = d / "spec.toml"
    spec.write_text(TINY_SPEC.format(seeds=seeds, threads=threads) + extra)
    return spec


def strip_volatile(row: dict) -> dict:
    from cmasim.sweep.runner import VOLATILE

    return {k: v for k, v in row.items() if k not in VOLATILE}
