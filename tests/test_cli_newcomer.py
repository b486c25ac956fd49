"""What a new user meets first: one-line errors, output folders that never mix two runs, traces that
say what they lost, --version and help. Each test fails on the tree before the newcomer fixes."""

from __future__ import annotations

import gzip
import json
import lzma
import os
from pathlib import Path

import pytest
from conftest import DATA

import cmasim.run
from cmasim.cli import build_parser, main
from cmasim.outdir import TMP_PREFIX
from cmasim.trace.parser import parse_file

TINY = """description = "tiny churn with a device for tests"
seed = 3
[machine]
memory = "64MiB"
cpus = 2
[[cma]]
name = "tiny"
size = "8MiB"
[workload.churn]
events = 3000
target_usage = 0.5
[[workload.device]]
area = "tiny"
size_mib = [1, 2]
interval_ms = 0.5
start_ms = 0.5
"""


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    return p


def one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# --- errors, never tracebacks -----------------------------------------------------------------------
def test_machine_too_large_for_this_computer(tmp_path, capsys, monkeypatch):
    import cmasim.machine as machine

    monkeypatch.setattr(machine, "available_memory", lambda: 16 << 30)  # any test machine: 16 GiB free
    rc = main(["run", "--set", "machine.memory=4TiB", "--out", str(tmp_path / "o"), "--quiet"])
    line = one_error_line(capsys)
    # 2^30 pages of 28 bytes: NEXT, PREV, page word, owner, handle, live slot, unmapped count
    assert rc == 2 and "machine.memory" in line and "28.0 GiB of simulator state (28 bytes" in line
    assert "16.0 GiB available" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("body", ["", "[machine]\nmemory = \"64MiB\"\n"])
def test_scenario_without_churn_or_duration(tmp_path, capsys, body):
    p = tmp_path / "s.toml"
    p.write_text(body)
    assert main(["run", "--scenario", str(p), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    line = one_error_line(capsys)
    assert str(p) in line and "[workload.churn]" in line and "duration_s" in line


def test_replay_of_missing_file_folder_and_sched_only_trace(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "nope.txt")]) == 2
    assert "no such file" in one_error_line(capsys)
    folder = DATA / "traces" / "linux-6.18-x86_64" / "thp-mix"
    assert main(["replay", str(folder)]) == 2
    line = one_error_line(capsys)
    assert "is a folder" in line and "trace.txt.xz" in line
    sched = tmp_path / "sched.txt"
    sched.write_text("# tracer: nop\n          <idle>-0       [000] d..2.     1.000000: sched_switch: prev_comm=a\n")
    assert main(["replay", str(sched), "--out", str(tmp_path / "r")]) == 2
    assert "0 allocator events" in one_error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_unwritable_out_fails_before_the_simulation(tmp_path, capsys, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("simulated although the output folder cannot be written")

    monkeypatch.setattr(cmasim.run, "run_scenario", boom)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", "--out", str(blocker / "sub"), "--quiet"]) == 2
    assert "cannot write there" in one_error_line(capsys)
    assert main(["run", "--out", str(blocker), "--quiet"]) == 2
    assert "not a folder" in one_error_line(capsys)
    assert main(["compare", "--scenario", "default", "--policy", "linux-6.18", "--policy", "linux-6.1",
                 "--out", str(blocker / "sub"), "--quiet"]) == 2
    assert "cannot write there" in one_error_line(capsys)


def test_bad_trace_event_name(tiny, tmp_path, capsys):
    assert main(["run", "--scenario", str(tiny), "--out", str(tmp_path / "o"), "--trace",
                 "--trace-events", "mm_page_alloc,mm_page_allocc", "--quiet"]) == 2
    assert "mm_page_allocc" in one_error_line(capsys)


# --- output folders ---------------------------------------------------------------------------------
def test_non_empty_out_needs_force_which_replaces_it_whole(tiny, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", "--scenario", str(tiny), "--out", str(out), "--trace", "--quiet"]) == 0
    assert (out / "trace.txt").exists()
    capsys.readouterr()
    assert main(["run", "--scenario", str(tiny), "--out", str(out), "--quiet"]) == 2
    assert "--force" in one_error_line(capsys)
    assert main(["run", "--scenario", str(tiny), "--out", str(out), "--quiet", "--force", "--seed", "9"]) == 0
    assert json.loads((out / "metrics.json").read_text())["seed"] == 9
    assert not (out / "trace.txt").exists(), "a stale trace.txt was left beside new metrics"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_ctrl_c_leaves_the_old_folder_and_exits_130(tiny, tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    assert main(["run", "--scenario", str(tiny), "--out", str(out), "--quiet"]) == 0
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    real = cmasim.run.run_scenario

    def interrupted(sc, policy, seed, out_dir, **kw):
        real(sc, policy, seed, out_dir, **kw)  # a partial result is written into the staging folder ...
        raise KeyboardInterrupt  # ... then the user presses Ctrl-C

    monkeypatch.setattr(cmasim.run, "run_scenario", interrupted)
    assert main(["run", "--scenario", str(tiny), "--out", str(out), "--quiet", "--force", "--seed", "5"]) == 130
    assert one_error_line(capsys) == f"interrupted, nothing written to {out}"
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]


# --- traces -----------------------------------------------------------------------------------------
def test_lost_records_are_marked_where_lost_and_counted(tmp_path):
    """A full buffer loses records; the file says where (CPU:N [LOST M EVENTS]) and how many."""
    from cmasim.gfp import GFP_HIGHUSER_MOVABLE
    from cmasim.machine import Machine, MachineConfig
    from cmasim.policy import get_policy
    from cmasim.trace.ftrace import TraceSink

    m = Machine(MachineConfig(zones=[("DMA32", 8192)], nr_cpus=2, trace_capacity=16), get_policy("linux-6.18"))
    path = tmp_path / "trace.txt"
    sink = TraceSink(path)
    for _ in range(3):  # three rounds: fill past capacity, then drain
        for _ in range(20):
            m.alloc(0, GFP_HIGHUSER_MOVABLE, cpu=1)
        sink.flush(m)
    lost = TraceSink.lost(m)
    assert lost > 0
    sink.close(m)
    lines = path.read_text().splitlines()
    markers = [i for i, line in enumerate(lines) if "[LOST" in line]
    assert len(markers) == 3 and sum(int(lines[i].split()[2]) for i in markers) == lost
    assert all(lines[i] == f"CPU:1 [LOST {lines[i].split()[2]} EVENTS]" for i in markers)
    assert markers[0] < markers[1] - 1, "each loss is marked where it happened, records in between"
    written = sink.written
    assert f"# entries-in-buffer/entries-written: {written}/{written + lost}   #P:2" in lines
    _, parser = parse_file(path)
    assert parser.stats.lost_events == lost  # our own parser reads the markers back


def test_run_summary_says_how_many_records_were_lost(tiny, tmp_path, capsys, monkeypatch):
    import cmasim.trace.ftrace as ft

    monkeypatch.setattr(ft.TraceSink, "lost", staticmethod(lambda machine: 1234))
    assert main(["run", "--scenario", str(tiny), "--out", str(tmp_path / "o"), "--trace", "--quiet"]) == 0
    assert "1,234 lost" in capsys.readouterr().err


@pytest.mark.parametrize("name,opener", [("t.txt.xz", lzma.open), ("t.txt.gz", gzip.open)])
def test_trace_events_filter_and_compressed_output(tiny, tmp_path, name, opener):
    out = tmp_path / "o"
    assert main(["run", "--scenario", str(tiny), "--out", str(out), "--trace", name, "--quiet",
                 "--trace-events", "mm_page_alloc,cma_alloc_finish"]) == 0
    with opener(out / name, "rt") as f:
        lines = [line for line in f.read().splitlines() if not line.startswith("#")]
    events = {line.split(": ")[1] for line in lines}
    assert events == {"mm_page_alloc", "cma_alloc_finish"}
    met = json.loads((out / "metrics.json").read_text())
    assert met["trace"]["file"] == name and met["trace"]["records"] == len(lines)
    assert not (out / "trace.txt").exists() and not list(out.glob(".*body"))


def test_truncated_compressed_trace_warns(tmp_path, capsys):
    src = DATA / "traces" / "linux-6.18-x86_64" / "thp-mix" / "trace.txt.xz"
    with lzma.open(src, "rt") as f:
        head = "".join(next(f) for _ in range(3000))
    cut = tmp_path / "cut.txt.xz"
    data = lzma.compress(head.encode())
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert main(["replay", str(cut)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "warning:" in err and "mid-stream" in err


def test_snapshot_that_does_not_match_the_trace_warns(tmp_path, capsys):
    snap = DATA / "traces" / "linux-6.18-x86_64" / "thp-mix"
    t = tmp_path / "t.txt"
    t.write_text("".join(
        f"          x-1       [00{cpu}] .....     1.00000{i}: mm_page_alloc: page=0000000000000001 pfn=0x{pfn:x} "
        "order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE\n"
        for i, (cpu, pfn) in enumerate([(0, 0x1000), (7, 0x1001), (1, 0x7fffffff0)])))
    assert main(["replay", str(t), "--snapshot", str(snap)]) == 0
    err = capsys.readouterr().err
    assert "snapshot does not match the trace" in err and "CPU 7" in err and "outside every zone" in err


def test_matching_snapshot_gives_no_mismatch_warning(capsys):
    d = DATA / "traces" / "linux-6.18-x86_64" / "thp-mix"
    assert main(["replay", str(d / "trace.txt.xz"), "--snapshot", str(d), "--max-records", "2000"]) == 0
    assert "does not match" not in capsys.readouterr().err


# --- version and help -------------------------------------------------------------------------------
def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("cmasim ")


def test_every_option_has_help():
    p = build_parser()
    sub = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = [f"{name} {opt.option_strings}" for name, sp in sub.choices.items() for opt in sp._actions
               if opt.option_strings and opt.help in (None, "")]
    assert not missing, missing


def test_run_prints_next_steps_and_thousands_separators(tiny, tmp_path, capsys):
    assert main(["run", "--scenario", str(tiny), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "next:" in out and "cmasim compare" in out and "cmasim replay data/traces" in out
    met = json.loads((tmp_path / "o" / "metrics.json").read_text())
    big = [v for v in met["vmstat"].values() if v >= 1000]
    assert big and all(f"{v:,}" in out for v in big)
    assert f"{met['pcp']['refills']:,}" in out


def test_readme_commands_use_only_repository_paths():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "../shared" not in readme and "data/traces/linux-6.18-x86_64/thp-mix" in readme
    assert os.path.isfile(DATA / "traces" / "linux-6.18-x86_64" / "thp-mix" / "trace.txt.xz")


@pytest.mark.parametrize("opt,val", [("--timeline", "-5"), ("--timeline", "0"), ("--check-every", "abc")])
def test_interval_options_must_be_positive(opt, val, tmp_path, capsys):
    """A sampling interval of 0 or less would sample every nanosecond: refused before anything runs."""
    with pytest.raises(SystemExit) as e:
        main(["run", "--scenario", "default", opt, val, "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and opt in capsys.readouterr().err and not (tmp_path / "o").exists()
