"""`cmasim bench --reference`: the native reference and cmasim run alternately and the ratio is printed.

Runs on a 1/16 GiB machine with a few thousand events, interpreted (the conftest default), so it
is quick; the figures themselves are not asserted (no timed tests), only that both sides ran in
the promised order and the ratio is what the rates give.
"""

import shutil
import subprocess
import sys

import pytest

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
