"""The ftrace text parser: every event format, each kernel flavour's migratetype numbering,
each kind of bad line, compressed inputs, the columnar cache and the ftrace writer round trip."""

from __future__ import annotations

import gzip
import itertools
import lzma
from pathlib import Path

import numpy as np
import pytest

from cmasim import gfp
from cmasim.mm import mmzone as mz
from cmasim.trace import parser as P
from cmasim.trace.columnar import CachedTrace, read_cache

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
TRACES = SHARED / "traces" / "linux-6.18-x86_64"

PFX = "          python3-5835    [001] d..2.   334.674496: "
PFX_NOFLAGS = "          python3-5835    [001]   334.674496: "

LINES = {
    "mm_page_alloc": "mm_page_alloc: page=000000000572d1e3 pfn=0x19795f order=0 migratetype=1 "
                     "gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP",
    "mm_page_free": "mm_page_free: page=00000000432858bd pfn=0x1c0000 order=10",
    "mm_page_free_batched": "mm_page_free_batched: page=000000001da16471 pfn=0x15f250 order=0",
    "mm_page_alloc_zone_locked": "mm_page_alloc_zone_locked: page=0000000011 pfn=0x1b8400 order=0 migratetype=1 "
                                 "percpu_refill=1",
    "mm_page_pcpu_drain": "mm_page_pcpu_drain: page=0000000022 pfn=0x15ae78 order=0 migratetype=0",
    "mm_page_alloc_extfrag": "mm_page_alloc_extfrag: page=0000000054841b71 pfn=0x1b8400 alloc_order=2 "
                             "fallback_order=10 pageblock_order=9 alloc_migratetype=2 fallback_migratetype=0 "
                             "fragmenting=0 change_ownership=1",
    "cma_alloc_start": "cma_alloc_start: name=reserved count=1024 align=8",
    "cma_alloc_start_new": "cma_alloc_start: name=reserved request_count=1024 available_count=4096 "
                           "total_count=8192 align=8",
    "cma_alloc_finish": "cma_alloc_finish: name=reserved pfn=0x80000 page=00000000aa count=1024 align=8 errorno=0",
    "cma_alloc_finish_old": "cma_alloc_finish: name=reserved pfn=0x80000 page=00000000aa count=1024 align=8",
    "cma_alloc_finish_fail": "cma_alloc_finish: name=reserved pfn=0xffffffffffffffff page=0000000000000000 "
                             "count=1024 align=8 errorno=-16",
    "cma_alloc_busy_retry": "cma_alloc_busy_retry: name=reserved pfn=0x80400 page=00000000bb count=1024 align=8",
    "cma_release": "cma_release: name=reserved pfn=0x80000 page=00000000aa count=1024",
    "mm_migrate_pages": "mm_migrate_pages: nr_succeeded=12 nr_failed=1 nr_thp_succeeded=0 nr_thp_failed=0 "
                        "nr_thp_split=0 nr_split=2 mode=MIGRATE_SYNC reason=contig_range",
    "mm_migrate_pages_old": "mm_migrate_pages: nr_succeeded=12 nr_failed=1 nr_thp_succeeded=0 nr_thp_failed=0 "
                            "nr_thp_split=0 mode=MIGRATE_ASYNC reason=compaction",
    "mm_compaction_begin": "mm_compaction_begin: zone_start=0x100000 migrate_pfn=0x100200 free_pfn=0x1bfe00 "
                           "zone_end=0x1c0000, mode=async",
    "mm_compaction_end": "mm_compaction_end: zone_start=0x100000 migrate_pfn=0x100400 free_pfn=0x1bfc00 "
                         "zone_end=0x1c0000, mode=sync status=complete",
    "mm_compaction_kcompactd_sleep": "mm_compaction_kcompactd_sleep: nid=0",
    "test_pages_isolated": "test_pages_isolated: start_pfn=0x80000 end_pfn=0x80400 fin_pfn=0x80400 ret=success",
}


def parse(lines, flavour="mainline"):
    return P.parse_lines([ln if ln.endswith("\n") else ln + "\n" for ln in lines], flavour)


def one(text, flavour="mainline", prefix=PFX):
    arr, p = parse([prefix + text], flavour)
    assert not p.stats.bad, p.stats.bad
    assert len(arr) == 1
    return arr[0], p


def test_kmem_events():
    r, _ = one(LINES["mm_page_alloc"])
    assert r[P.C_KIND] == P.K_PAGE_ALLOC and r[P.C_PFN] == 0x19795F and r[P.C_CPU] == 1 and r[P.C_PID] == 5835
    assert r[P.C_TIME] == 334_674_496_000
    assert (r[5], r[6]) == (0, 1) and r[7] == gfp.parse_gfp("GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP")
    r, _ = one(LINES["mm_page_free"])
    assert (r[0], r[P.C_PFN], r[5]) == (P.K_PAGE_FREE, 0x1C0000, 10)
    r, _ = one(LINES["mm_page_free_batched"])
    assert (r[0], r[P.C_PFN], r[5]) == (P.K_FREE_BATCHED, 0x15F250, 0)
    r, _ = one(LINES["mm_page_alloc_zone_locked"])
    assert (r[0], r[5], r[6], r[7]) == (P.K_ZONE_LOCKED, 0, 1, 1)
    r, _ = one(LINES["mm_page_pcpu_drain"])
    assert (r[0], r[5], r[6]) == (P.K_PCPU_DRAIN, 0, 0)
    r, _ = one(LINES["mm_page_alloc_extfrag"])
    assert r[0] == P.K_EXTFRAG and list(r[5:12]) == [2, 10, 9, 2, 0, 0, 1]
    # a failed allocation prints pfn=0x0
    r, _ = one(LINES["mm_page_alloc"].replace("pfn=0x19795f", "pfn=0x0"))
    assert r[P.C_PFN] == -1


def test_cma_migrate_compaction_isolation_events():
    r, p = one(LINES["cma_alloc_start"])
    assert r[0] == P.K_CMA_ALLOC_START and p.strings.names[r[5]] == "reserved" and list(r[6:10]) == [1024, 8, -1, -1]
    r, _ = one(LINES["cma_alloc_start_new"])
    assert list(r[6:10]) == [1024, 8, 4096, 8192]
    r, _ = one(LINES["cma_alloc_finish"])
    assert r[P.C_PFN] == 0x80000 and list(r[6:10]) == [1024, 8, 0, 1]
    r, _ = one(LINES["cma_alloc_finish_old"])
    assert list(r[8:10]) == [0, 0]  # no errorno field (6.1/6.2)
    r, _ = one(LINES["cma_alloc_finish_fail"])
    assert r[P.C_PFN] == -1 and r[8] == -16
    r, _ = one(LINES["cma_alloc_busy_retry"])
    assert r[0] == P.K_CMA_BUSY_RETRY and r[P.C_PFN] == 0x80400
    r, _ = one(LINES["cma_release"])
    assert r[0] == P.K_CMA_RELEASE and r[6] == 1024
    r, p = one(LINES["mm_migrate_pages"])
    assert list(r[5:11]) == [12, 1, 0, 0, 0, 2] and p.strings.names[r[11]] == "MIGRATE_SYNC"
    assert p.strings.names[r[12]] == "contig_range"
    r, p = one(LINES["mm_migrate_pages_old"])
    assert r[10] == P.ABSENT and p.strings.names[r[12]] == "compaction"
    r, _ = one(LINES["mm_compaction_begin"])
    assert r[0] == P.K_COMPACTION_BEGIN and r[P.C_PFN] == 0x100000 and list(r[5:9]) == [0x100200, 0x1BFE00, 0x1C0000, 0]
    r, p = one(LINES["mm_compaction_end"])
    assert r[8] == 1 and p.strings.names[r[9]] == "complete"
    r, p = one(LINES["mm_compaction_kcompactd_sleep"])
    assert r[0] == P.K_COMPACTION_OTHER and p.strings.names[r[5]] == "mm_compaction_kcompactd_sleep" and r[6] == 0
    r, _ = one(LINES["test_pages_isolated"])
    assert r[0] == P.K_TEST_PAGES_ISOLATED and list(r[4:8]) == [0x80000, 0x80400, 0x80400, 1]


@pytest.mark.parametrize("prefix", [
    PFX,
    PFX_NOFLAGS,  # irq-info option off
    "          python3-5835    (   5835) [001] d..2.   334.674496: ",  # record-tgid
    "   Web Content-5835    [001] d..2.   334.674496: ",  # comm with a space
    "          python3-5835  [001]  334.674496: ",  # trace-cmd report
    "          python3-5835  [001] d..2  334.674496: ",  # trace-cmd report, latency flags
])
def test_prefix_layouts(prefix):
    r, _ = one(LINES["mm_page_free"], prefix=prefix)
    assert (r[P.C_PID], r[P.C_CPU], r[P.C_TIME], r[P.C_PFN]) == (5835, 1, 334_674_496_000, 0x1C0000)


def test_trace_cmd_padding_and_header_and_nanoseconds():
    lines = ["version = 6", "cpus=2", "CPU 0 is empty",
             ("          python3-5835  [001]  334.674496123: mm_page_free:         page=0xffffea0006fb1200 "
              "pfn=0x1c0000 order=10")]
    arr, p = parse(lines)
    assert not p.stats.bad and p.stats.header_lines == 3
    assert arr[0, P.C_TIME] == 334_674_496_123


def test_tracefs_header_comments():
    lines = ["# tracer: nop", "#", "# entries-in-buffer/entries-written: 1/1   #P:2",
             "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION", PFX + LINES["mm_page_free"]]
    arr, p = parse(lines)
    assert len(arr) == 1 and p.stats.header_lines == 4 and not p.stats.bad


@pytest.mark.parametrize("flavour,printed,expect", [
    ("mainline", [0, 1, 2, 3, 4, 5], [0, 1, 2, mz.MIGRATE_HIGHATOMIC, mz.MIGRATE_CMA, mz.MIGRATE_ISOLATE]),
    ("mainline-nocma", [0, 1, 2, 3, 4], [0, 1, 2, mz.MIGRATE_HIGHATOMIC, mz.MIGRATE_ISOLATE]),
    ("android", [0, 1, 2, 3, 4, 5], [0, 1, 2, mz.MIGRATE_CMA, mz.MIGRATE_HIGHATOMIC, mz.MIGRATE_ISOLATE]),
])
def test_migratetype_flavours(flavour, printed, expect):
    lines = [PFX + f"mm_page_pcpu_drain: page=00 pfn=0x10 order=0 migratetype={n}" for n in printed]
    lines += [PFX + f"mm_page_alloc_extfrag: page=00 pfn=0x200 alloc_order=0 fallback_order=9 pageblock_order=9 "
                    f"alloc_migratetype={n} fallback_migratetype={n} fragmenting=0 change_ownership=0"
              for n in printed]
    arr, p = parse(lines, flavour)
    assert not p.stats.bad
    n = len(printed)
    assert list(arr[:n, 6]) == expect
    assert list(arr[n:, 8]) == expect and list(arr[n:, 9]) == expect


def test_bad_migratetype_per_flavour():
    arr, p = parse([PFX + "mm_page_pcpu_drain: page=00 pfn=0x10 order=0 migratetype=5"], "mainline-nocma")
    assert len(arr) == 0 and p.stats.bad == {"bad_migratetype": 1} and p.stats.bad_lines["bad_migratetype"] == [1]


def test_flavour_from_pagetypeinfo_names():
    assert P.flavour_from_type_names(["Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate"]) == \
        "mainline-nocma"
    assert P.flavour_from_type_names(["Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate"]) == \
        "mainline"
    assert P.flavour_from_type_names(["Unmovable", "Movable", "Reclaimable", "CMA", "HighAtomic", "Isolate"]) == \
        "android"


def test_gfp_names_beyond_the_core_table():
    r, _ = one(LINES["mm_page_alloc"].replace("__GFP_COMP", "__GFP_COMP|__GFP_NOLOCKDEP|__GFP_SKIP_KASAN"))
    assert r[7] & mz.GFP_COMP_ and r[7] & P.EXTRA_GFP["__GFP_NOLOCKDEP"]
    arr, p = parse([PFX + LINES["mm_page_alloc"].replace("__GFP_COMP", "__GFP_BOGUS")])
    assert len(arr) == 0 and p.stats.bad == {"bad_gfp": 1}


def test_each_kind_of_bad_line_is_counted_with_line_numbers():
    good = PFX + LINES["mm_page_free"]
    lines = [
        good,  # 1
        "          python3-5835    [001] d..2.   334.674496: mm_page_free: page=00 pfn=0xzz order=0",  # 2 garbled
        "%%%% noise %%%%",  # 3 garbled (after the first event)
        "          python3-5835    [001] d..2.   334.674496: sched_switch: prev_comm=a",  # 4 unknown
        "          python3-5835    [001] d..2.   334.000001: " + LINES["mm_page_free"],  # 5 out of order (kept)
        "CPU:1 [LOST 17 EVENTS]",  # 6
        good,  # 7
    ]
    arr, p = parse(lines)
    st = p.stats
    assert st.bad == {"garbled": 2, "unknown_event": 1, "out_of_order": 1, "lost_events": 1}
    assert st.bad_lines["garbled"] == [2, 3] and st.bad_lines["unknown_event"] == [4]
    assert st.bad_lines["out_of_order"] == [5] and st.lost_events == 17
    assert st.unknown_events == {"sched_switch": 1}
    assert len(arr) == 3  # lines 1, 5 and 7


def test_truncated_last_line_and_truncated_xz(tmp_path):
    good = PFX + LINES["mm_page_free"] + "\n"
    arr, p = P.parse_lines([good, good[:60]])  # the last line lacks its newline
    assert len(arr) == 1 and p.stats.bad == {"truncated": 1} and p.stats.bad_lines["truncated"] == [2]
    data = lzma.compress((good * 2000).encode())
    f = tmp_path / "cut.txt.xz"
    f.write_bytes(data[: len(data) // 2])
    arr, p = P.parse_file(f)
    assert p.stats.bad.get("truncated") == 1 and len(arr) > 0


def test_not_a_trace(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("".join(f"just some words {i}\n" for i in range(300)))
    with pytest.raises(P.NotATraceError, match="no ftrace event line"):
        P.parse_file(f)
    short = tmp_path / "short.txt"
    short.write_text("hello\nworld\n")
    with pytest.raises(P.NotATraceError):
        P.parse_file(short)
    b = tmp_path / "bin.dat"
    b.write_bytes(b"\x00\x01\x02garbage\x00" * 100)
    with pytest.raises(P.NotATraceError, match="binary"):
        P.parse_file(b)
    dat = tmp_path / "trace.dat"
    dat.write_bytes(b"\x17\x08\x44tracing6" + b"\x00" * 64)
    with pytest.raises(P.NotATraceError, match="trace-cmd report"):
        P.parse_file(dat)


@pytest.mark.parametrize("suffix,opener", [(".txt", open), (".txt.gz", gzip.open), (".txt.xz", lzma.open)])
def test_plain_gz_xz(tmp_path, suffix, opener):
    text = "".join(PFX + LINES[k] + "\n" for k in ("mm_page_alloc", "mm_page_free", "mm_page_pcpu_drain"))
    f = tmp_path / ("t" + suffix)
    with opener(f, "wt") as fo:
        fo.write(text)
    arr, p = P.parse_file(f)
    assert list(arr[:, 0]) == [P.K_PAGE_ALLOC, P.K_PAGE_FREE, P.K_PCPU_DRAIN] and not p.stats.bad


def _slice(name: str, n: int, tmp_path: Path) -> Path:
    src = TRACES / name / "trace.txt.xz"
    if not src.exists():
        pytest.skip("shared traces not available")
    out = tmp_path / f"{name}-{n}.txt"
    with P.open_text(src) as f, open(out, "w") as fo:
        fo.writelines(itertools.islice(f, n))
    return out


def test_real_trace_slice_parses_cleanly(tmp_path):
    f = _slice("thp-mix", 3000, tmp_path)
    arr, p = P.parse_file(f, "mainline-nocma")
    assert p.stats.bad == {} and p.stats.lines == 3000 and len(arr) == 3000
    text = f.read_text()
    assert int((arr[:, 0] == P.K_PAGE_ALLOC).sum()) == text.count(": mm_page_alloc: ")
    assert int((arr[:, 0] == P.K_PAGE_FREE).sum()) == text.count(": mm_page_free: ")
    assert (np.diff(arr[:, P.C_TIME]) >= 0).all()


def test_columnar_cache_roundtrip(tmp_path):
    f = _slice("pybuild", 2000, tmp_path)
    cache = tmp_path / "out" / "trace.npz"
    ct = CachedTrace(f, cache, "mainline-nocma", chunk=700)
    a1 = np.concatenate(list(ct.chunks()))
    assert not ct.from_cache and cache.exists() and ct.meta["stats"]["events"] == 2000
    ct2 = CachedTrace(f, cache, "mainline-nocma")
    a2 = np.concatenate(list(ct2.chunks()))
    assert ct2.from_cache and np.array_equal(a1, a2)
    assert len(list(read_cache(cache))) == 3
    # another flavour does not reuse the cache
    assert not CachedTrace(f, cache, "mainline").from_cache


def test_benchmark_reports_speed(tmp_path):
    f = _slice("thp-mix", 2000, tmp_path)
    b = P.benchmark(f, "mainline-nocma")
    assert b["lines"] == 2000 and b["records"] == 2000 and b["parse_lines_per_s"] > 0


def test_ftrace_writer_round_trip():
    """The simulator's ftrace output parses back to the same events."""
    from cmasim.machine import Machine, MachineConfig
    from cmasim.policy import get_policy
    from cmasim.trace.ftrace import format_records

    m = Machine(MachineConfig(zones=[("DMA32", 4096), ("Normal", 8192)], nr_cpus=2, trace_capacity=1 << 14),
                get_policy("linux-6.18"), seed=3)
    rng = np.random.default_rng(5)
    live = []
    t = 1_000_000
    for i in range(600):
        t += int(rng.integers(1, 50_000))
        m.C[mz.H_NOW] = t
        cpu = int(rng.integers(0, 2))
        if live and rng.random() < 0.45:
            m.free(live.pop(int(rng.integers(0, len(live)))), cpu=cpu)
        else:
            order = int(rng.choice([0, 0, 0, 1, 2, 3, 4, 9]))
            g = [gfp.GFP_KERNEL, gfp.GFP_HIGHUSER_MOVABLE | mz.GFP_COMP_, gfp.GFP_NOFS | mz.GFP_RECLAIMABLE_][i % 3]
            p = m.alloc(order, g, cpu=cpu)
            if p >= 0:
                live.append(p)
    n = int(m.C[mz.H_TRACE_N])
    base = int(m.C[mz.H_TRACE_BASE])
    recs = m.C[base:base + n * mz.TR_SIZE].reshape(n, mz.TR_SIZE).copy()
    recs = recs[recs[:, 0] <= mz.TR_MM_PAGE_ALLOC_EXTFRAG]
    assert n > 600 and set(recs[:, 0]) >= {1, 2, 3}
    arr, p = P.parse_lines(list(format_records(recs)), "mainline")
    assert not p.stats.bad and len(arr) == len(recs)
    assert (arr[:, P.C_KIND] == recs[:, 0]).all()
    assert (arr[:, P.C_TIME] == recs[:, 1] // 1000 * 1000).all()  # the text has microseconds
    assert (arr[:, P.C_CPU] == recs[:, 2]).all() and (arr[:, P.C_PFN] == recs[:, 3]).all()
    for kind, cols_sim, cols_parsed in (
            (mz.TR_MM_PAGE_ALLOC, [4, 5, 6], [5, 6, 7]),  # order, migratetype, gfp
            (mz.TR_MM_PAGE_FREE, [4], [5]),
            (mz.TR_MM_PAGE_ALLOC_ZONE_LOCKED, [4, 5, 6], [5, 6, 7]),
            (mz.TR_MM_PAGE_PCPU_DRAIN, [4, 5], [5, 6]),
            (mz.TR_MM_PAGE_ALLOC_EXTFRAG, [4, 5, 6, 7, 8], [5, 6, 8, 9, 11])):
        sel = recs[:, 0] == kind
        assert (arr[sel][:, cols_parsed] == recs[sel][:, cols_sim]).all(), kind
