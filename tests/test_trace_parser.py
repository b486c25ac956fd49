"""The ftrace text parser: every event format, each kernel flavour's migratetype numbering,
each kind of bad line, compressed inputs, the columnar cache, the vectorized fast path against
the reference per-line path, and the ftrace writer round trip (records and a whole simulated run)."""

from __future__ import annotations

import collections
import gzip
import itertools
import json
import lzma
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmasim import gfp
from cmasim.mm import mmzone as mz
from cmasim.trace import parser as P
from cmasim.trace.columnar import CachedTrace, read_cache

DATA = Path(__file__).resolve().parent.parent / "data"
TRACES = DATA / "traces" / "linux-6.18-x86_64"

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


def _slice(name: str, n: int, tmp_path: Path, skip: int = 0) -> Path:
    src = TRACES / name / "trace.txt.xz"
    out = tmp_path / f"{name}-{skip}-{n}.txt"
    with P.open_text(src) as f, open(out, "w") as fo:
        fo.writelines(itertools.islice(f, skip, skip + n))
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



def test_columnar_cache_read_checks_each_chunk(tmp_path):
    """read_cache reads a stored member straight into its array: the chunks are numpy's own
    reading of the members, and one flipped bit in a chunk's data is a BadZipFile, as zipfile's
    reader makes it."""
    import zipfile

    f = _slice("pybuild", 2000, tmp_path)
    cache = tmp_path / "trace.npz"
    list(CachedTrace(f, cache, "mainline-nocma", chunk=700).chunks())
    with zipfile.ZipFile(cache) as zf:
        want = [np.lib.format.read_array(zf.open(f"c{i:06d}.npy")) for i in range(3)]
        off = zf.getinfo("c000001.npy").header_offset + 2000
    got = list(read_cache(cache))
    assert len(got) == 3 and all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(got, want))
    data = bytearray(cache.read_bytes())
    data[off] ^= 1
    cache.write_bytes(bytes(data))
    with pytest.raises(zipfile.BadZipFile):
        list(read_cache(cache))

def test_columnar_cache_stopped_early_leaves_no_file(tmp_path):
    """A replay that stops after its first chunk (--max-records) closes the writer early: the
    cache is not written, and no half-written `.partial` file is left beside it either."""
    f = _slice("pybuild", 2000, tmp_path)
    cache = tmp_path / "out" / "trace.npz"
    chunks = CachedTrace(f, cache, "mainline-nocma", chunk=700).chunks()
    assert len(next(chunks)) == 700
    chunks.close()
    assert sorted(p.name for p in cache.parent.iterdir()) == []
    assert not CachedTrace(f, cache, "mainline-nocma").from_cache


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


def test_ftrace_writer_round_trip_migrate_isolation_compaction():
    """format_records' mm_migrate_pages, test_pages_isolated and mm_compaction_begin/end lines
    parse back to the written values."""
    from cmasim.trace.ftrace import COMPACT_STATUS, MIGRATE_MODES, MIGRATE_REASONS, format_records

    recs = np.array([
        # kind, time, cpu, pfn, f0..f5 (the core's TR_* layout)
        [mz.TR_MM_MIGRATE_PAGES, 1_000_000, 0, 0, 512, 3, mz.MIGRATE_SYNC, mz.MR_CONTIG_RANGE, 0, 0],
        [mz.TR_MM_MIGRATE_PAGES, 1_001_000, 1, 0, 7, 0, mz.MIGRATE_ASYNC, mz.MR_COMPACTION, 0, 0],
        [mz.TR_MM_MIGRATE_PAGES, 1_002_000, 1, 0, 1, 1, mz.MIGRATE_SYNC_LIGHT, mz.MR_LONGTERM_PIN, 0, 0],
        [mz.TR_TEST_PAGES_ISOLATED, 1_003_000, 0, 0x80000, 0x80400, 0x80400, 0, 0, 0, 0],
        [mz.TR_TEST_PAGES_ISOLATED, 1_004_000, 0, 0x80000, 0x80400, 0x80123, 0, 0, 0, 0],
        [mz.TR_COMPACTION_BEGIN, 1_005_000, 1, 0x100000, 0x100200, 0x1BFE00, 0x1C0000, 0, 0, 0],
        [mz.TR_COMPACTION_END, 1_006_000, 1, 0x100000, 0x100400, 0x1BFC00, 0x1C0000, 1, 3, 0],
        [mz.TR_COMPACTION_END, 1_007_000, 0, 0, 0x200, 0x7E00, 0x8000, 0, 4, 0],
    ], dtype=np.int64)
    lines = list(format_records(recs))
    for fast in (True, False):
        arr, p = P.parse_lines(lines, "mainline", fast=fast)
        assert not p.stats.bad and len(arr) == len(recs)
        names = p.strings.names
        assert (arr[:, P.C_TIME] == recs[:, 1]).all() and (arr[:, P.C_CPU] == recs[:, 2]).all()
        assert list(arr[:, P.C_KIND]) == [P.K_MIGRATE_PAGES] * 3 + [P.K_TEST_PAGES_ISOLATED] * 2 + [
            P.K_COMPACTION_BEGIN] + [P.K_COMPACTION_END] * 2
        for r, rec in zip(arr[:3], recs[:3]):
            assert r[P.C_PFN] == -1 and list(r[5:7]) == list(rec[4:6]) and list(r[7:11]) == [0, 0, 0, 0]
            assert names[r[11]] == MIGRATE_MODES[rec[6]] and names[r[12]] == MIGRATE_REASONS[rec[7]]
        for r, rec in zip(arr[3:5], recs[3:5]):
            assert list(r[4:8]) == [rec[3], rec[4], rec[5], int(rec[5] >= rec[4])]
        for r, rec in zip(arr[5:], recs[5:]):
            assert list(r[4:9]) == [rec[3], rec[4], rec[5], rec[6], int(rec[7] != 0)]
            if r[P.C_KIND] == P.K_COMPACTION_END:
                assert names[r[9]] == COMPACT_STATUS[rec[8]]


# --- a whole simulated run, traced, parses back ------------------------------------------------------------
# Churn near the watermarks with THP-order requests (direct compaction); a device calling
# cma_alloc/cma_release on a CMA area that movable pages borrow (migration, isolation) while
# short-term pinners make some ranges busy (busy retries).
ROUND_TRIP = """description = "round trip of the ftrace writer"
seed = 3

[machine]
memory = "128MiB"
cpus = 2

[[cma]]
name = "reserved"
size = "32MiB"

[workload]
duration_s = 0.25

[workload.churn]
events = 20000
target_usage = 0.85
order0 = 0.80
order1_3 = 0.12
high_order = 9
movable = 0.80
unmovable = 0.15
event_interval_ns = 5000

[[workload.device]]
name = "gpu"
area = "reserved"
size_mib = [2, 12]
interval_ms = 40
hold_ms = 20
align_order = 8
start_ms = 20

[[workload.pinner]]
threads = 32
hold_us = 500
gap_us = 0
"""


def test_simulated_run_trace_parses_back(tmp_path):
    """`run_scenario(..., trace=True)` writes every event kind the simulator has (the core's
    records and the cma_* lines); the parser recognises each, with no bad line, and the field
    values agree with the run's metrics."""
    from cmasim.policy import get_policy
    from cmasim.run import run_scenario
    from cmasim.scenario import load_scenario_text

    out = tmp_path / "run"
    met = run_scenario(load_scenario_text(ROUND_TRIP, "round-trip.toml"), get_policy("linux-6.18"), out_dir=out,
                       trace=True)
    assert met == json.loads((out / "metrics.json").read_text()) | {"wall_s": met["wall_s"]}
    text = (out / "trace.txt").read_text()
    body = [line for line in text.splitlines() if not line.startswith("#")]
    header = text.splitlines()[:len(text.splitlines()) - len(body)]
    assert header and all(line.startswith("#") for line in header)  # the tracefs header comes first
    written = collections.Counter(line.split(": ", 2)[1] for line in body)
    arr, p = P.parse_file(out / "trace.txt", "mainline")
    st_ = p.stats
    assert st_.bad == {} and st_.unknown_events == {} and st_.header_lines == len(header)
    assert st_.lines - st_.header_lines == st_.events == len(arr) == met["trace"]["records"] == sum(written.values())
    assert st_.by_event == dict(written)
    # every kind the writer knows appears, and is recognised as that kind
    assert set(written) == {"mm_page_alloc", "mm_page_free", "mm_page_alloc_zone_locked", "mm_page_pcpu_drain",
                            "mm_page_alloc_extfrag", "mm_migrate_pages", "test_pages_isolated",
                            "mm_compaction_begin", "mm_compaction_end", "cma_alloc_start", "cma_alloc_finish",
                            "cma_alloc_busy_retry", "cma_release"}
    kinds = collections.Counter(P.KIND_NAMES[k] for k in arr[:, P.C_KIND].tolist())
    assert kinds == written
    # the reference path reads the same
    arr_ref, p_ref = P.parse_file(out / "trace.txt", "mainline", fast=False)
    assert np.array_equal(arr, arr_ref) and p_ref.stats.bad == {}

    names = p.strings.names
    sim_ns = met["sim_time_s"] * 1e9
    assert (np.diff(arr[:, P.C_TIME]) >= 0).all() and 0 <= arr[0, P.C_TIME] and arr[-1, P.C_TIME] <= sim_ns
    assert ((arr[:, P.C_CPU] >= 0) & (arr[:, P.C_CPU] < 2)).all() and (arr[:, P.C_PID] == 1).all()

    def sel(kind):
        return arr[arr[:, P.C_KIND] == kind]

    c, vm = met["counters"], met["vmstat"]
    assert written["mm_page_alloc"] == c["alloc_calls"] and written["mm_page_free"] == c["free_calls"]
    assert written["mm_page_alloc_extfrag"] == c["extfrag"]
    alloc = sel(P.K_PAGE_ALLOC)
    # A failed allocation prints pfn=0x0 as the kernel does (page=NULL); the simulator can also
    # hand out pfn 0, which then reads as failed too: the printed page tells the two apart.
    alloc_lines = [ln for ln in text.splitlines() if ": mm_page_alloc: " in ln]
    assert sum("page=0000000000000000 pfn=0x0 " in ln for ln in alloc_lines) == c["alloc_fail"]
    assert (alloc[:, P.C_PFN] == -1).sum() == sum(" pfn=0x0 " in ln for ln in alloc_lines)
    assert set(alloc[:, 6].tolist()) <= {mz.MIGRATE_UNMOVABLE, mz.MIGRATE_MOVABLE, mz.MIGRATE_RECLAIMABLE}
    managed = sum(z["managed"] for z in met["zones"].values())
    for k in (P.K_PAGE_FREE, P.K_ZONE_LOCKED, P.K_PCPU_DRAIN, P.K_EXTFRAG):
        pfn = sel(k)[:, P.C_PFN]
        assert ((pfn >= 0) & (pfn < managed)).all(), P.KIND_NAMES[k]
    assert set(sel(P.K_ZONE_LOCKED)[:, 7].tolist()) <= {0, 1}

    # cma_* lines against the area's counters
    area = met["cma"]["reserved"]
    base, count = area["base_pfn"], area["count"]
    start, fin = sel(P.K_CMA_ALLOC_START), sel(P.K_CMA_ALLOC_FINISH)
    busy, rel = sel(P.K_CMA_BUSY_RETRY), sel(P.K_CMA_RELEASE)
    assert len(start) == len(fin) == area["requests"] > 0
    assert len(busy) == area["busy_retries"] > 0
    assert {names[i] for i in np.concatenate([start[:, 5], fin[:, 5], busy[:, 5], rel[:, 5]])} == {"reserved"}
    # v6.18 layout: request_count, align, available_count, total_count
    assert (start[:, 7] == 8).all() and (start[:, 9] == count).all() and (start[:, 8] <= count).all()
    assert (fin[:, 6] == start[:, 6]).all() and (fin[:, 7] == 8).all() and (fin[:, 9] == 1).all()
    ok = fin[:, 8] == 0
    assert ok.sum() == area["success"] and (~ok).sum() == sum(area["fail"].values())
    assert fin[ok, 6].sum() == area["sysfs"]["alloc_pages_success"]
    assert ((fin[ok, P.C_PFN] >= base) & (fin[ok, P.C_PFN] + fin[ok, 6] <= base + count)).all()
    assert ((busy[:, P.C_PFN] >= base) & (busy[:, P.C_PFN] < base + count)).all()
    assert len(rel) == ok.sum() and rel[:, 6].sum() == area["sysfs"]["release_pages_success"]
    assert sorted(rel[:, P.C_PFN].tolist()) == sorted(fin[ok, P.C_PFN].tolist())

    # migration for cma_alloc, isolation checks, compaction
    mig = sel(P.K_MIGRATE_PAGES)
    assert {names[i] for i in mig[:, 11]} <= {"MIGRATE_ASYNC", "MIGRATE_SYNC_LIGHT", "MIGRATE_SYNC"}
    contig = np.array([names[i] == "contig_range" for i in mig[:, 12]], dtype=bool)
    assert mig[contig, 5].sum() == area["pages_migrated"] > 0
    tpi = sel(P.K_TEST_PAGES_ISOLATED)
    assert ((tpi[:, P.C_PFN] >= base) & (tpi[:, 5] <= base + count) & (tpi[:, P.C_PFN] < tpi[:, 5])).all()
    assert (tpi[:, 7] == (tpi[:, 6] >= tpi[:, 5])).all() and tpi[:, 7].sum() >= area["success"]
    cb, ce = sel(P.K_COMPACTION_BEGIN), sel(P.K_COMPACTION_END)
    assert len(cb) == len(ce) >= vm["compact_stall"] > 0
    for r in (cb, ce):
        zs, zend = r[:, P.C_PFN], r[:, 7]
        assert ((zs < zend) & (zs <= r[:, 5]) & (r[:, 5] <= zend) & (zs <= r[:, 6]) & (r[:, 6] <= zend)).all()
        assert set(r[:, 8].tolist()) <= {0, 1}
    assert {names[i] for i in ce[:, 9]} <= {"skipped", "continue", "complete", "success"}


# --- the fast path gives what the reference gives ------------------------------------------------------------
def _outcome(fn):
    """(records, statistics, strings) of a parse, or the exception it raised, as text."""
    try:
        arr, p = fn()
    except Exception as e:  # noqa: BLE001 (compared, not hidden)
        return f"{type(e).__name__}: {e}"
    d = p.stats.to_dict()
    d.pop("lines_per_s")
    return arr, d, p.strings.names


def assert_same(fast, ref):
    if isinstance(fast, str) or isinstance(ref, str):
        assert fast == ref
        return
    assert fast[0].shape == ref[0].shape
    diff = np.flatnonzero((fast[0] != ref[0]).any(axis=1))
    assert len(diff) == 0, f"first differing record: fast {fast[0][diff[0]]} reference {ref[0][diff[0]]}"
    assert fast[1] == ref[1]
    assert fast[2] == ref[2]


@pytest.fixture
def fast_lines(monkeypatch):
    """Counts the lines the vectorized path decoded itself."""
    n = [0]
    orig = P.TraceParser._fast

    def counted(self, *a):
        idx, recs = orig(self, *a)
        n[0] += len(idx)
        return idx, recs

    monkeypatch.setattr(P.TraceParser, "_fast", counted)
    return n


@pytest.mark.parametrize("name,skip,n", [("thp-mix", 0, 40_000), ("pybuild", 120_000, 40_000)])
def test_fast_path_matches_reference_on_real_traces(tmp_path, fast_lines, name, skip, n):
    f = _slice(name, n, tmp_path, skip)
    fast = _outcome(lambda: P.parse_file(f, "mainline-nocma"))
    assert fast_lines[0] >= 0.99 * n  # (nearly) every line took the fast path
    ref = _outcome(lambda: P.parse_file(f, "mainline-nocma", fast=False))
    assert_same(fast, ref)
    assert fast[1]["events"] == n and fast[1]["bad"] == {}
    # and from the lines in memory
    lines = f.read_text().splitlines(keepends=True)
    assert_same(_outcome(lambda: P.parse_lines(lines, "mainline-nocma")), ref)


PREFIXES = [
    PFX, PFX_NOFLAGS,
    "          python3-5835    (   5835) [001] d..2.   334.674496: ",  # record-tgid (regex)
    "   Web Content-5835    [001] d..2.   334.674496: ",  # comm with a space (regex)
    "          python3-5835  [001]  334.674496: ",  # trace-cmd report
    "          python3-5835  [001] d..2  334.674496: ",
    "python3-5835 [001] 334.674496123: ",  # nanoseconds
    "kworker/u8:2-12 [000] ..... 1.5: ",  # one decimal
    "a-b-12 [7] X 99: ",  # no decimals (counter clock); comm with '-'
    "-12 [0] 1.000001: ", "12 [0] 1.000001: ",  # empty comm; no '-' at all
    "<idle>-0     [000] d.h1. 12345678.000001: ",
    "          python3-5835    [001] d..2.   334.674496: kmem:",  # perf-style system prefix
    "          python3-5835    [001] d..2.   334.674496.5: ",  # two dots (garbled)
    "          python3-5835    [001] d..2.   334.1234567890: ",  # ten decimals (cut to 9)
    "          python3-123456789 [001] d..2.   334.674496: ",  # a long pid
    "          python3-5835    [1234567890] d..2.   334.674496: ",
    "          pythön3-5835    [001] d..2.   334.674496: ",  # non-ASCII comm
    "\tpython3-5835\t[001]\td..2.\t334.674496:\t",  # tabs
]
EXTRA = [
    "mm_page_alloc: page=0 pfn=0x0 order=0 migratetype=0 gfp_flags=",
    "mm_page_alloc: page=0 pfn=0xFFfF order=10 migratetype=4 gfp_flags=0x1234|GFP_KERNEL",
    "mm_page_alloc: page=0 pfn=0xfffffffffffffff order=0 migratetype=1 gfp_flags=none",  # 15 hex digits
    "mm_page_alloc: page=0 pfn=0xffffffffffffffff order=0 migratetype=1 gfp_flags=0",  # past int64: garbled
    "mm_page_alloc: page=0 pfn=0x10 order=0 migratetype=1 gfp_flags=__GFP_BOGUS",  # bad_gfp
    "mm_page_alloc: page=0 pfn=0x10 order=0 migratetype=1 gfp_flags=0xzz",  # garbled
    "mm_page_alloc: page=0 pfn=0x10 order=1234567890123456 migratetype=1 gfp_flags=GFP_NOWAIT",
    "mm_page_alloc: page=0 pfn=0x10 order=12345678901234567 migratetype=1 gfp_flags=GFP_NOWAIT",
    "mm_page_alloc: page=0 pfn=0x10 order=0 migratetype=01 gfp_flags=GFP_KERNEL|__GFP_NOLOCKDEP",
    "mm_page_free: page=0 pfn=0x1_0 order=0", "mm_page_free: page=0 pfn=0x10 order=+1",
    "mm_page_free: page=0 pfn=0x0x10 order=0", "mm_page_free: page=0 pfn=0x10 order=-1",
    "mm_page_free: page=0 pfn=0x10 order=", "mm_page_free: page=0 pfn=0x order=1",
    "mm_page_free: page=0 pfn=0x10 order=1 extra=2", "mm_page_free: pfn=0x10 order=1",
    "mm_page_free:page=0 pfn=0x10 order=1",  # glued
    "mm_page_free_batched: page=0 pfn=0x10 order=0    ",  # trailing spaces
    "mm_page_pcpu_drain: page=0 pfn=0x10 order=0 migratetype=6",  # bad_migratetype in every flavour
    "mm_page_pcpu_drain: page=0 pfn=0x10 order=0 migratetype=5",  # bad under mainline-nocma
    "mm_page_alloc_zone_locked: page=0 pfn=0x10 order=3 migratetype=2 percpu_refill=0",
    "mm_page_alloc_zone_locked: page=0 pfn=0x10 order=3 migratetype=2 percpu_refill=x",
    ("mm_page_alloc_extfrag: page=0 pfn=0x200 alloc_order=0 fallback_order=9 pageblock_order=9 "
     "alloc_migratetype=1 fallback_migratetype=9 fragmenting=0 change_ownership=0"),
    ("mm_page_alloc_extfrag: page= pfn=200 alloc_order=0 fallback_order=9 pageblock_order=9 "
     "alloc_migratetype=1 fallback_migratetype=0 fragmenting=1 change_ownership=0"),
    "sched_switch: prev_comm=x prev_pid=1", "mm_compaction_wakeup_kcompactd: nid=0 order=9 classzone_idx=Normal",
]
OTHER = ["# tracer: nop", "#", "", "   ", "CPU:1 [LOST 3 EVENTS]", "version = 6", "cpus=2", "CPU 0 is empty",
         "garbage here", "          python3-5835    [001] d..2.   334.674496: mm_page_free: page=0 pfn=0x1",
         "\r", "x" * 300]
MUTATIONS = list("0123456789abcdefABCDEFxX:-.=_ |[]()") + ["\t", "\r", "é", "\x00", "\x1c", "  ", "0x", "\xa0",
                                                             "\x85", "９", "\ud800"]


def _mutate(rng, line: str) -> str:
    s = list(line)
    for _ in range(int(rng.integers(1, 4))):
        op, i = int(rng.integers(0, 5)), int(rng.integers(0, len(s) + 1))
        if op == 0 and s:
            s[min(i, len(s) - 1)] = str(rng.choice(MUTATIONS))
        elif op == 1 and s:
            del s[min(i, len(s) - 1)]
        elif op == 2:
            s.insert(i, str(rng.choice(MUTATIONS)))
        elif op == 3:
            s.insert(i, "".join(map(str, rng.integers(0, 10, int(rng.integers(1, 22))))))
        else:
            s.insert(i, " ")
    return "".join(s)


def synthetic_lines(seed: int, n: int = 3000) -> list[str]:
    """Every event format in every prefix layout, values at the edges of the fast path's ranges,
    every kind of bad line, and random mutations of them; times mostly rising."""
    rng = np.random.default_rng(seed)
    events = list(LINES.values()) + EXTRA
    out = [ln + "\n" for ln in OTHER[:4]]
    t = 1.0
    for _ in range(n):
        if rng.random() < 0.04:
            out.append(str(rng.choice(OTHER)) + "\n")
            continue
        pfx = str(rng.choice(PREFIXES))
        t += float(rng.random()) * (1 if rng.random() < 0.9 else -3)
        if "334.674496: " in pfx and rng.random() < 0.8:
            pfx = pfx.replace("334.674496", f"{max(t, 0):.6f}")
        line = pfx + str(rng.choice(events))
        if rng.random() < 0.4:
            line = _mutate(rng, line)
        out.append(line.replace("\n", "") + "\n")
    return out


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("flavour", list(P.FLAVOURS))
def test_fast_path_matches_reference_on_synthetic_lines(fast_lines, seed, flavour):
    lines = synthetic_lines(seed)
    lines.append(PFX + LINES["mm_page_free"][:30])  # the last line cut short
    ref = _outcome(lambda: P.parse_lines(lines, flavour, fast=False))
    fast = _outcome(lambda: P.parse_lines(lines, flavour))
    assert_same(fast, ref)
    # the set covers every kind of bad line and every event kind; both paths had work to do
    assert set(ref[1]["bad"]) == set(P.BAD_KINDS)
    assert set(ref[1]["by_event"]) >= set(P.KIND_NAMES.values()) - {"compaction:*"}
    assert 0.1 * len(ref[0]) < fast_lines[0] < 0.9 * len(ref[0])


def _damaged(blob: bytes, at: float) -> bytes:
    b = bytearray(blob)
    b[int(len(b) * at)] ^= 0xFF
    return bytes(b)


@pytest.mark.parametrize("variant", ["plain", "gz", "xz", "xz_cut", "gz_cut", "xz_multi", "gz_multi_padded",
                                     "xz_trailing_garbage", "gz_trailing_garbage", "xz_damaged", "gz_damaged",
                                     "xz_second_stream_damaged", "bad_utf8", "cut_mid_line", "not_a_trace",
                                     "binary", "empty"])
def test_fast_path_matches_reference_on_files(tmp_path, variant):
    lines = synthetic_lines(7, 2000)
    data = "".join(lines).encode("utf-8", "surrogatepass")
    if variant == "bad_utf8":
        b = bytearray(data)
        for i in np.random.default_rng(3).integers(0, len(b), 40):
            b[i] = 0xC3 if i % 2 else 0xFF
        data = bytes(b)
    elif variant == "cut_mid_line":
        data = data[: len(data) * 2 // 3 + 7]
    elif variant == "not_a_trace":
        data = b"".join(b"just some words %d\n" % i for i in range(300))
    elif variant == "binary":
        data = b"\x00\x01garbage\n" + data
    elif variant == "empty":
        data = b""
    blob = {
        "gz": lambda: gzip.compress(data), "xz": lambda: lzma.compress(data),
        "xz_cut": lambda: lzma.compress(data)[:len(lzma.compress(data)) * 2 // 3],
        "gz_cut": lambda: gzip.compress(data)[:len(gzip.compress(data)) * 2 // 3],
        "xz_multi": lambda: lzma.compress(data[:5000]) + lzma.compress(data[5000:]),
        "gz_multi_padded": lambda: gzip.compress(data[:5000]) + gzip.compress(data[5000:]) + b"\0" * 16,
        "xz_trailing_garbage": lambda: lzma.compress(data) + b"garbage!",
        "gz_trailing_garbage": lambda: gzip.compress(data) + b"garbage!",
        "xz_damaged": lambda: _damaged(lzma.compress(data), 0.7),
        "gz_damaged": lambda: _damaged(gzip.compress(data), 0.7),
        "xz_second_stream_damaged": lambda: lzma.compress(data[:5000]) + _damaged(lzma.compress(data[5000:]), 0.5),
    }.get(variant, lambda: data)()
    f = tmp_path / f"trace-{variant}"
    f.write_bytes(blob)
    for flavour in ("mainline", "android"):
        ref = _outcome(lambda fl=flavour: P.parse_file(f, fl, fast=False))
        assert_same(_outcome(lambda fl=flavour: P.parse_file(f, fl)), ref)
    if variant.endswith(("_cut", "_damaged")):
        assert ref[1]["bad"]["truncated"] == 1


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(LINES.values()) + EXTRA), st.sampled_from(PREFIXES),
       st.lists(st.tuples(st.integers(0, 400), st.sampled_from(MUTATIONS + ["", "1", "0", "9" * 17])), max_size=3),
       st.sampled_from(list(P.FLAVOURS)))
def test_fast_path_matches_reference_on_mutated_lines(event, prefix, edits, flavour):
    line = prefix + event
    for pos, text in edits:
        pos = min(pos, len(line))
        line = line[:pos] + text + line[pos + 1:]
    lines = [PFX + LINES["mm_page_alloc"] + "\n", line.replace("\n", "") + "\n", PFX + LINES["mm_page_free"] + "\n"]
    assert_same(_outcome(lambda: P.parse_lines(lines, flavour)), _outcome(lambda: P.parse_lines(lines, flavour,
                                                                                                 fast=False)))


def test_fast_path_streams_in_constant_memory():
    """Lines are read a batch at a time: the first chunk comes out of an endless input."""
    def endless():
        for i in itertools.count():
            yield f"          python3-5835    [001] d..2.   {i // 1000}.{i % 1000:06d}: mm_page_free: page=0 " \
                  f"pfn=0x{i:x} order=0\n"

    p = P.TraceParser()
    first = next(p.iter_chunks(endless(), chunk=5000))
    assert first.shape == (5000, P.NCOL) and list(first[:3, P.C_PFN]) == [0, 1, 2]


@pytest.mark.parametrize("lines", [
    [], ["\n"], ["hello\n", "world"], ["hello\n"] * 250,
    [PFX + LINES["mm_page_free"] + "\n", PFX + LINES["mm_page_free"][:20]],  # cut short at the end
    [PFX + LINES["mm_page_free"], PFX + LINES["mm_page_free"] + "\n"],  # cut short first: the rest is not read
    [PFX + LINES["mm_page_free"] + "\n" + PFX + LINES["mm_page_alloc"] + "\n", PFX + LINES["mm_page_free"] + "\n"],
    [PFX + LINES["mm_page_free"] + "\r\n", PFX + "\udcff" + LINES["mm_page_free"] + "\n"],
])
def test_fast_path_matches_reference_on_odd_line_lists(lines):
    assert_same(_outcome(lambda: P.parse_lines(lines)), _outcome(lambda: P.parse_lines(lines, fast=False)))


@pytest.mark.parametrize("prefix", [PFX, PFX_NOFLAGS, "          python3-5835  [001]  334.674496123: ",
                                    "          python3-5835    [001] d..2.   334.674496: kmem:"])
def test_fast_path_takes_the_kmem_formats(fast_lines, prefix):
    keys = ["mm_page_alloc", "mm_page_free", "mm_page_free_batched", "mm_page_alloc_zone_locked",
            "mm_page_pcpu_drain", "mm_page_alloc_extfrag"]
    lines = [prefix + LINES[k] + "\n" for k in keys]
    arr, p = P.parse_lines(lines)
    assert fast_lines[0] == len(lines) and not p.stats.bad
    assert_same(_outcome(lambda: (arr, p)), _outcome(lambda: P.parse_lines(lines, fast=False)))


def test_replay_with_a_damaged_cache_is_one_error_line(tmp_path, capsys):
    """`cmasim replay --cache` over a cache whose meta is valid but a chunk's data is damaged:
    one error line naming the cache and what to do, exit 2, no traceback and no output folder."""
    import zipfile

    from cmasim.cli import main

    f = _slice("pybuild", 2000, tmp_path)
    cache = tmp_path / "trace.npz"
    assert main(["replay", str(f), "--cache", str(cache), "--out", str(tmp_path / "o1")]) == 0
    data = bytearray(cache.read_bytes())
    with zipfile.ZipFile(cache) as zf:
        data[zf.getinfo("c000000.npy").header_offset + 2000] ^= 1
    cache.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["replay", str(f), "--cache", str(cache), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "columnar cache damaged" in err and "trace.npz" in err and "Traceback" not in err
    assert not (tmp_path / "o2").exists()
