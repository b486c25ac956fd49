"""The `cmasim` command line (cmasim.cli, cmasim.run): errors, listings, a small run and its outputs."""

from __future__ import annotations

import json
import lzma
import re

import jc
import pytest
from conftest import DATA

from cmasim.cli import main
from cmasim.gfp import parse_gfp

TINY = """description = "tiny churn for tests"
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
"""


def flat(text: str) -> str:
    """Rich wraps long messages at the terminal width: compare without any whitespace."""
    return "".join(text.split())


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    return p


# --- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body,key,problem", [
    ('[machine]\nmemroy = "1GiB"\n', "machine.memroy", "unknown key"),
    ('[machine]\ncpus = "two"\n', "machine.cpus", "Input should be a valid integer"),
    ('[machine]\nmemory = "3MiB"\n', "machine.memory", "is not a positive multiple of a pageblock"),
    ('[machine]\nmemory = "3136MiB"\n[[cma]]\nsize = "128MiB"\n', "cma[0]", "does not fit in zone Normal"),
    ('[machine]\nmemory = "64MiB"\n[[cma]]\nsize = "128MiB"\n', "cma[0]", ""),
    ('[machine\nmemory = "1GiB"\n', "", "not valid TOML"),
])
def test_bad_scenario_exits_2_with_a_clear_message(tmp_path, capsys, body, key, problem):
    p = tmp_path / "bad.toml"
    p.write_text(body)
    rc = main(["run", "--scenario", str(p), "--out", str(tmp_path / "out"), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "Traceback" not in err and "Traceback" not in out
    assert flat(err).startswith("error:")
    assert flat(f"{p}: {key}") in flat(err)
    assert flat(problem) in flat(err)
    assert not (tmp_path / "out").exists()


def test_missing_scenario_file(tmp_path, capsys):
    rc = main(["run", "--scenario", str(tmp_path / "missing.toml"), "--quiet"])
    _, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in err
    assert flat(f"{tmp_path / 'missing.toml'}: no such file") in flat(err)
    assert "default" in err  # lists the built-in scenarios


def test_unknown_policy(tiny, capsys):
    rc = main(["run", "--scenario", str(tiny), "--policy", "linux-9.9", "--quiet"])
    _, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in err
    assert flat("unknown policy 'linux-9.9'") in flat(err)
    listed = re.findall(r"[\w.+-]+", err.split("linux-9.9'", 1)[1])
    assert "linux-6.1" in listed and "linux-6.18" in listed  # the valid names are offered


def test_non_utf8_scenario_file(tmp_path, capsys):
    p = tmp_path / "binary.toml"
    p.write_bytes(b"\xff\xfe\x00[machine]\n")
    try:
        rc = main(["run", "--scenario", str(p), "--quiet"])
    except UnicodeDecodeError:
        rc = 1
    _, err = capsys.readouterr()
    assert rc == 2 and "binary.toml" in err


def test_unknown_subcommand_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["frobnicate"])
    assert ei.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# --- listings -----------------------------------------------------------------------------------------
def test_policies_lists_the_kernels(capsys):
    assert main(["policies"]) == 0
    out = capsys.readouterr().out
    assert "linux-6.18" in out and "linux-6.1 " in out.replace("│", " ")


def test_scenarios_lists_default(capsys):
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\bdefault\b", out)
    assert "Mixed" in out  # the start of its description


# --- a small run ------------------------------------------------------------------------------------------
HEX = r"[0-9a-f]"
PREFIX = r"^(?P<comm>.{16})-(?P<pid>[\d ]{7}) \[(?P<cpu>\d{3})\] (?P<flags>[\w.]{5}) (?P<ts>[ \d]{5,}\.\d{6}): "
FIELDS = {
    "mm_page_alloc": rf"page={HEX}{{16}} pfn=0x(?P<pfn>{HEX}+) order=(?P<order>\d+) migratetype=(?P<mt>\d+) "
                     rf"gfp_flags=(?P<gfp>[\w|]+)",
    "mm_page_free": rf"page={HEX}{{16}} pfn=0x(?P<pfn>{HEX}+) order=(?P<order>\d+)",
    "mm_page_alloc_zone_locked": rf"page={HEX}{{16}} pfn=0x(?P<pfn>{HEX}+) order=(?P<order>\d+) "
                                 rf"migratetype=(?P<mt>\d+) percpu_refill=[01]",
    "mm_page_pcpu_drain": rf"page={HEX}{{16}} pfn=0x(?P<pfn>{HEX}+) order=(?P<order>\d+) migratetype=(?P<mt>\d+)",
    "mm_page_alloc_extfrag": rf"page={HEX}{{16}} pfn=0x(?P<pfn>{HEX}+) alloc_order=\d+ fallback_order=(?P<fo>\d+) "
                             rf"pageblock_order=9 alloc_migratetype=\d+ fallback_migratetype=\d+ "
                             rf"fragmenting=(?P<frag>[01]) change_ownership=[01]",
}
LINE = {ev: re.compile(PREFIX + ev + ": " + f + "$") for ev, f in FIELDS.items()}


def test_trace_regexes_match_the_real_kernel_trace():
    """The per-event regexes accept every line of the real 6.18 traces (so they are not too strict)."""
    seen = dict.fromkeys(FIELDS, 0)
    for run in ("thp-mix", "pybuild"):
        with lzma.open(DATA / "traces" / "linux-6.18-x86_64" / run / "trace.txt.xz", "rt") as f:
            for line in f:
                ev = re.search(r": (mm_page_\w+): ", line)
                if ev and ev.group(1) in LINE:
                    m = LINE[ev.group(1)].match(line.rstrip("\n"))
                    assert m, line
                    if ev.group(1) == "mm_page_alloc":
                        assert int(m["mt"]) == (parse_gfp(m["gfp"]) >> 3) & 3  # gfp_migratetype()
                    seen[ev.group(1)] += 1
    assert all(n > 0 for n in seen.values()), seen


def test_run_writes_metrics_and_proc_files(tiny, tmp_path, capsys):
    out_dir = tmp_path / "res"
    assert main(["run", "--scenario", str(tiny), "--out", str(out_dir), "--quiet"]) == 0
    assert "metrics.json" in capsys.readouterr().out
    met = json.loads((out_dir / "metrics.json").read_text())
    assert (met["scenario"], met["policy"], met["seed"], met["events"]) == ("tiny", "linux-6.18", 3, 3000)
    assert set(met["pcp"]) >= {"alloc_hits", "refills", "drains"}
    assert met["pcp"]["alloc_hits"] > 0 and met["pcp"]["refills"] > 0
    assert met["counters"]["alloc_calls"] + met["counters"]["free_calls"] == 3000
    assert met["invariant_checks"] >= 1
    v = met["vmstat"]
    assert v["nr_free_cma"] <= 2048 and v["pgalloc_dma32"] >= met["counters"]["alloc_calls"]
    proc = out_dir / "proc"
    assert sorted(p.name for p in proc.iterdir()) == ["buddyinfo", "pagetypeinfo", "vmstat", "zoneinfo"]
    vm = {k: int(x) for k, x in (line.split() for line in (proc / "vmstat").read_text().splitlines())}
    assert vm == v
    bi = jc.parse("proc_buddyinfo", (proc / "buddyinfo").read_text())
    assert [r["zone"] for r in bi] == ["DMA32"]
    exact = sum(n << o for o, n in enumerate(bi[0]["free_chunks"]))
    pti = jc.parse("proc_pagetypeinfo", (proc / "pagetypeinfo").read_text())
    assert sum(n << o for r in pti["free_pages"] for o, n in enumerate(r["free"])) == exact
    zi = (proc / "zoneinfo").read_text()
    # /proc/vmstat and zoneinfo print the folded NR_FREE_PAGES: the per-CPU vmstat diffs (each
    # within stat_threshold) are not in it, the free lists (buddyinfo) are exact
    ncpu = len(re.findall(r"^    cpu: \d+$", zi, re.MULTILINE))
    threshold = int(re.search(r"vm stats threshold: (\d+)", zi).group(1))
    assert ncpu >= 1 and abs(exact - v["nr_free_pages"]) <= ncpu * threshold
    assert re.search(rf"^  pages free     {v['nr_free_pages']}$", zi, re.MULTILINE)
    assert re.search(r"^        cma      2048$", zi, re.MULTILINE)


@pytest.mark.parametrize("policy", ["linux-6.18", "linux-6.1"])
def test_run_with_trace(tiny, tmp_path, capsys, policy):
    out_dir = tmp_path / "tr"
    assert main(["run", "--scenario", str(tiny), "--policy", policy, "--seed", "7", "--out", str(out_dir),
                 "--trace", "--quiet"]) == 0
    met = json.loads((out_dir / "metrics.json").read_text())
    assert met["seed"] == 7 and met["policy"] == policy
    counts = dict.fromkeys(FIELDS, 0)
    drained_pages = alloc_pages = free_pages = 0
    last_ts = 0.0
    text = (out_dir / "trace.txt").read_text().splitlines()
    header = [line for line in text if line.startswith("#")]
    lines = [line for line in text if not line.startswith("#")]
    assert text[:len(header)] == header and header[0] == "# tracer: nop"  # tracefs layout: header first
    assert f"# entries-in-buffer/entries-written: {len(lines)}/{len(lines)}   #P:2" in header
    assert len(lines) == met["trace"]["records"] > 0 and met["trace"]["lost"] == 0
    for line in lines:
        ev = re.search(r": (mm_page_\w+): ", line).group(1)
        m = LINE[ev].match(line)
        assert m, line
        assert m["comm"].strip() == "cmasim" and int(m["cpu"]) in (0, 1)
        ts = float(m["ts"])
        assert ts >= last_ts
        last_ts = ts
        counts[ev] += 1
        if ev == "mm_page_alloc":
            assert int(m["mt"]) == (parse_gfp(m["gfp"]) >> 3) & 3
            alloc_pages += 1 << int(m["order"])  # no allocation fails in this run
        if ev == "mm_page_free":
            free_pages += 1 << int(m["order"])
        if ev == "mm_page_pcpu_drain":
            drained_pages += 1 << int(m["order"])
        if ev == "mm_page_alloc_extfrag":
            assert m["frag"] == ("1" if int(m["fo"]) < 9 else "0")
    c = met["counters"]
    assert counts["mm_page_alloc"] == c["alloc_calls"]
    assert counts["mm_page_free"] == c["free_calls"]
    assert counts["mm_page_alloc_extfrag"] == c["extfrag"]
    assert c["alloc_fail"] == 0
    assert alloc_pages == sum(v for k, v in met["vmstat"].items() if k.startswith("pgalloc_"))
    assert free_pages == met["vmstat"]["pgfree"]
    # pcp_drain_pages under-counts high-order blocks (see test_pcp), so only a bound here
    assert drained_pages >= c["pcp_drain_pages"] > 0
    assert counts["mm_page_alloc_zone_locked"] > 0
    assert abs(last_ts - met["sim_time_s"]) < 1e-3



def test_every_subcommand_has_printable_help(capsys):
    """argparse formats help strings with %: a stray % breaks `cmasim --help`."""
    import contextlib

    from cmasim.cli import build_parser

    p = build_parser()
    for cmd in ([], ["run"], ["compare"], ["replay"], ["snapshot"], ["bench"], ["policies"], ["scenarios"]):
        with contextlib.suppress(SystemExit):
            p.parse_args(cmd + ["--help"])
    assert "compare" in capsys.readouterr().out
