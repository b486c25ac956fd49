"""`cmasim explain`: every busy alloc_contig_range() range of a run is attributed to a page, its owner,
its pin and the rule that would have avoided it; the records agree with the run's own counters."""

from __future__ import annotations

import json

import pytest

from cmasim.cli import main
from cmasim.explain import read_jsonl, summarize

PINNED = """description = "long short-term pins on CMA pages while a device allocates"
seed = 5
[machine]
memory = "64MiB"
cpus = 2
[[cma]]
name = "tiny"
size = "16MiB"
[workload]
duration_s = 0.03
[workload.fill]
free = "4MiB"
[[workload.device]]
area = "tiny"
size_mib = [16]  # the whole area: a single pinned page decides
interval_ms = 2
start_ms = 1
align_order = 8
[[workload.pinner]]
threads = 8
hold_us = 20000
cma_only = true
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("explain")
    sc = d / "pinned.toml"
    sc.write_text(PINNED)
    assert main(["run", "--scenario", str(sc), "--out", str(d / "run"), "--quiet"]) == 0
    return d / "run"


def test_every_busy_range_is_attributed(run):
    m = json.loads((run / "metrics.json").read_text())
    area = m["cma"]["tiny"]
    recs = read_jsonl(run)
    assert area["busy_retries"] > 0 and len(recs) == area["busy_retries"]
    causes = area["busy_causes"]
    sm = summarize(recs)
    assert sm["by_cause"].get("migration gave up", 0) == causes["migration_gave_up"]
    assert sm["by_cause"].get("skipped at the isolation scan", 0) == causes["skipped_at_isolation_scan"]
    for r in recs:
        assert r["pfn"] <= r["first_busy_pfn"] < r["pfn"] + r["count"]
        assert r["page"]["pageblock"] in ("CMA", "Isolate") and r["avoided_by"]
    pinned = [r for r in recs if r["page"].get("pinned")]
    assert pinned, "20 ms holds are still held when their range gives up"
    for r in pinned:  # who holds it and until when, from the pending unpin timer
        assert r["page"]["pinner"] == 0 and r["page"]["pinned_until_ms"] >= r["t_ms"]
        assert r["page"]["owner"] == "anon" and "pin-pending-migration" in r["avoided_by"]


def test_explain_command(run, capsys):
    assert main(["explain", str(run), "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "busy alloc_contig_range() ranges" in out and "avoided by:" in out and "by cause:" in out
    assert main(["explain", str(run), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["busy_ranges"] == len(data["ranges"])
    assert main(["explain", str(run.parent)]) == 2
    assert "no explain.jsonl" in capsys.readouterr().err


def test_report_shows_the_attribution(run):
    from cmasim.report import build_report

    page = build_report(run)
    assert "Why ranges were busy" in page and "would have been avoided by" in page


def test_broken_explain_file_is_one_line_error(run, tmp_path, capsys):
    """A cut or corrupt explain.jsonl: explain and report name the file and line, exit 2."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    lines = (bad / "explain.jsonl").read_text().splitlines()
    (bad / "explain.jsonl").write_text("\n".join(lines[:1] + [lines[1][:20]]) + "\n")
    assert main(["explain", str(bad)]) == 2
    assert "explain.jsonl:2: not a JSON record" in capsys.readouterr().err
    assert main(["report", str(bad)]) == 2
    assert "explain.jsonl:2" in capsys.readouterr().err and not (bad / "report.html").exists()
