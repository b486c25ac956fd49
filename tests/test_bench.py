"""`cmasim bench --reference`: the native reference and cmasim run alternately and the ratio is printed.

Runs on a 1/16 GiB machine with a few thousand events, interpreted (the conftest default), so it
is quick; the figures themselves are not asserted (no timed tests), only that both sides ran in
the promised order and the ratio is what the rates give.
"""

import shutil
import subprocess
import sys

import pytest

from cmasim.mm import mmzone as mz
from conftest import ROOT

REFERENCE = ROOT / "bench" / "native" / "run-native.sh"


def _have_native() -> str | None:
    if not REFERENCE.is_file():
        return f"the native reference {REFERENCE} is not in this tree"
    if shutil.which("gcc") is None:
        return "the native reference needs gcc, which is not installed"
    return None


@pytest.mark.skipif(_have_native() is not None, reason=str(_have_native()))
def test_reference_bench_alternates_and_prints_the_ratio(tmp_path):
    from cmasim.bench import run_reference_bench

    res = run_reference_bench(str(REFERENCE), gib=1 / 16, runs=3, events=3000, warmup=2000)
    assert len(res["native_ops_per_s"]) == 4 and len(res["cmasim_events_per_s"]) == 3
    assert all(x > 0 for x in res["native_ops_per_s"] + res["cmasim_events_per_s"])
    n, s = res["native_ops_per_s"], res["cmasim_events_per_s"]
    for i, r in enumerate(res["ratios"]):
        assert r == pytest.approx(s[i] / ((n[i] + n[i + 1]) / 2), rel=1e-3)
    assert res["ratio_min"] <= res["ratio_median"] <= res["ratio_max"]


def test_reference_bench_cli_refuses_a_missing_script(tmp_path):
    out = subprocess.run([sys.executable, "-c", "import sys; from cmasim.cli import main; sys.exit(main())",
                          "bench", "--reference", str(tmp_path / "nope.sh"), "--no-start"],
                         capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "CMASIM_JIT": "0",
                                                                      "PATH": "/usr/bin:/bin"})
    assert out.returncode != 0
    assert "no native reference script" in out.stderr + out.stdout


@pytest.mark.skipif(_have_native() is not None, reason=str(_have_native()))
def test_native_scale_core_with_its_defaults_is_the_reference_core(tmp_path):
    """bench/native/c/scale.c (the CPU-count variant behind bench/cpu_axis.py) with its defaults
    (2 CPUs, high 378, batch 63, no auto-tuning, no THP lists) runs buddy.c's algorithm: the same
    hash of allocated pfns after the same warm-up and ops as buddy.c through its own driver. With 64
    CPUs and the v6.18 auto-tuning it is another run (different pfns) that moves pages between the
    buddy and per-CPU lists."""
    import json

    native = ROOT / "bench" / "native"
    lib = tmp_path / "c" / "libbuddy.so"
    lib.parent.mkdir()
    for f in ("bench.py", "core.py"):
        shutil.copy(native / f, tmp_path / f)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(native / "c" / "buddy.c")], check=True)
    ref = subprocess.run([sys.executable, "bench.py", "numpy", "0.0625", "20000", "50000"], cwd=tmp_path,
                         env={"BUDDY_C": "1", "BUDDY_MODE": "py", "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True)
    want = json.loads(ref.stdout.strip().splitlines()[-1])["stats"]

    def scale(*defs):
        exe = tmp_path / ("scale" + "".join(d.replace("=", "") for d in defs))
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(native / "c" / "scale.c"), *defs], check=True)
        out = subprocess.run([str(exe), "0.0625", "20000", "50000"], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    got = scale()
    assert got["ncpu"] == 2 and got["hash"] == want["hash"]
    many = scale("-DNCPU=64", "-DPCP_AUTOTUNE=1", "-DPCP_THP=1", "-DHIGH_MIN=252", "-DHIGH_MAX=512")
    assert many["ncpu"] == 64 and many["hash"] != want["hash"]
    assert many["drain_pages_per_op"] > 0 and many["refill_pages_per_op"] > 0
    bad = subprocess.run([str(tmp_path / "scale"), "0", "1", "1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "GIB and OPS must be above 0" in bad.stderr


def test_bench_reports_the_pages_an_event_moves_between_buddy_and_pcp_lists():
    """`run_bench` gives, beside the rate, the work behind it: pages moved between the buddy
    and the per-CPU lists per timed event (vmstat's refill + drain pages over the timed events
    only, not the warm-up). One seed: every run moves the same pages."""
    from cmasim.bench import NEVER, make_machine, pcp_pages_moved, run_bench
    from cmasim.workload.churn import churn, churn_params

    res = run_bench(1 / 16, runs=2, events=4000, warmup=2000, measure_start=False, cpus=8)
    m = make_machine(1 / 16, cpus=8)
    assert pcp_pages_moved(m) == 0
    W = churn_params(m)
    churn(m.S, m.C, W, 2000, NEVER)
    before = pcp_pages_moved(m)
    vm = int(m.C[mz.H_VM])
    assert before == m.C[vm + mz.VM_PCP_REFILL_PAGES] + m.C[vm + mz.VM_PCP_DRAIN_PAGES] > 0
    churn(m.S, m.C, W, 4000, NEVER)
    moved = pcp_pages_moved(m) - before
    assert moved > 0 and res["pcp_pages_moved_per_event"] == round(moved / 4000, 3)
