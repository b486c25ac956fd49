"""Replay of kernel traces: requests drive the simulator, everything unusable is counted, and the
fidelity statistics come out in the documented shape. Uses slices of the real traces in data/traces."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np

from cmasim.mm import mmzone as mz
from cmasim.policy import get_policy
from cmasim.trace import parser as P
from cmasim.trace.cli_trace import add_parsers
from cmasim.trace.fidelity import buddyinfo_distance, fidelity_table, poisson_interval, stat
from cmasim.trace.replay import replay
from cmasim.trace.snapshot import load_snapshot

DATA = Path(__file__).resolve().parent.parent / "data"
TRACES = DATA / "traces" / "linux-6.18-x86_64"
THP = TRACES / "thp-mix"


PFX = "          python3-5835    [001] ..... "


def slice_of(name: str, n: int, tmp_path: Path, skip: int = 0) -> Path:
    out = tmp_path / f"{name}-{skip}-{n}.txt"
    with P.open_text(TRACES / name / "trace.txt.xz") as f, open(out, "w") as fo:
        fo.writelines(itertools.islice(f, skip, skip + n))
    return out


def test_replay_slice_with_snapshot(tmp_path):
    f = slice_of("thp-mix", 4000, tmp_path)
    snap = load_snapshot(THP)
    res = replay(f, get_policy("linux-6.18"), snap, cache=tmp_path / "c.npz")
    k, s, r = res.kernel, res.sim, res.replayed
    assert k.allocs > 1000 and r["allocs"] == k.allocs == s.allocs
    # every mm_page_free is replayed: matched to a trace allocation or to a pre-trace page
    assert r["frees"] == k.frees == s.frees
    assert r["pretrace_frees"] == res.anomalies.count["pretrace_free"] > 0
    assert k.frees_batched > 0  # counted, not replayed
    assert res.sim_counters["free_skipped"] == 0
    fid = fidelity_table(res, load_snapshot(THP, prefix="after."))
    for key in ("pcp_refill_per_1000_allocs", "buddy_path_per_1000_allocs", "pcpu_drain_per_1000_frees",
                "extfrag_per_1e6_allocs", "extfrag_change_ownership_share", "buddyinfo_after"):
        assert {"kernel", "sim", "rel_err"} <= set(fid[key])
    assert fid["pcp_refill_per_1000_allocs"]["kernel_events"] == k.refill_blocks
    # a second replay starts from the columnar cache
    res2 = replay(f, get_policy("linux-6.18"), snap, cache=tmp_path / "c.npz")
    assert res2.from_cache and res2.sim.refill_blocks == s.refill_blocks


def test_compiled_pretrace_frees_equal_the_python_path(tmp_path, monkeypatch):
    """Pre-trace frees replayed inside the compiled translation pass (replay_core.translate_chunk
    with pretrace_take) give the report, the events' effect on the machine and the snapshot
    bookkeeping of the Python path (pretrace_free(), one call per free), hints and all; with
    memory onlining (order-10 frees, always Python) in the same slice."""
    from cmasim.trace import replay as R

    f = slice_of("thp-mix", 6000, tmp_path, skip=16000)
    snap = load_snapshot(THP)
    out = []
    for compiled in (False, True):
        monkeypatch.setattr(R, "COMPILED_PRETRACE", compiled)
        out.append(replay(f, get_policy("linux-6.18"), snap))
    a, b = out
    da, db = a.to_dict(), b.to_dict()
    for d in (da, db):
        d.pop("wall_s"), d.pop("parse")  # timings
    assert da == db
    assert a.replayed["pretrace_frees"] > 100 and a.replayed["online_blocks"] > 0
    assert np.array_equal(a.machine.S, b.machine.S) and np.array_equal(a.machine.C, b.machine.C)
    assert np.array_equal(a.state.pretrace, b.state.pretrace) and np.array_equal(a.state._left, b.state._left)
    assert np.array_equal(a.state._cursor, b.state._cursor)


def test_first_types_is_the_first_record_of_each_pageblock():
    """prescan's pageblock types (replay_core.first_types), kept with dict.setdefault, equal the
    numpy reference it replaced (np.unique's first index of each drain/zone_locked pageblock),
    in the same insertion order, on random chunks (negative pfns included)."""
    from cmasim.trace import replay_core as RC

    rng = np.random.default_rng(3)
    for trial in range(30):
        n = int(rng.integers(0, 3000))
        a = np.zeros((n, P.NCOL), dtype=np.int64)
        a[:, P.C_KIND] = rng.integers(0, 8, n)
        a[:, P.C_PFN] = rng.integers(-2000, 200000, n) * rng.choice([1, 7, 512], n)
        a[:, P.C_F0 + 1] = rng.integers(-1, 6, n)
        k = a[:, P.C_KIND]
        sel = (k == P.K_PCPU_DRAIN) | (k == P.K_ZONE_LOCKED)
        kpb, mts = a[sel, P.C_PFN] >> mz.PAGEBLOCK_ORDER, a[sel, P.C_F0 + 1]
        _, first = np.unique(kpb, return_index=True)
        want: dict[int, int] = {}
        for kp, mt in zip(kpb[np.sort(first)].tolist(), mts[np.sort(first)].tolist()):
            want.setdefault(kp, mt)
        out_pb, out_mt = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        m = RC.first_types(a, out_pb, out_mt)
        got: dict[int, int] = {}
        for kp, mt in zip(out_pb[:m].tolist(), out_mt[:m].tolist()):
            got.setdefault(kp, mt)
        assert list(got.items()) == list(want.items()), trial


def test_memory_onlining_is_replayed(tmp_path):
    """Order-10 frees of never-allocated pfns (thp-mix lines 19674-19705) online new memory."""
    f = slice_of("thp-mix", 40, tmp_path, skip=19670)
    snap = load_snapshot(THP)
    res = replay(f, get_policy("linux-6.18"), snap)
    assert res.replayed["online_blocks"] == 32 and res.replayed["online_pages"] == 32768
    st = res.state
    assert st.managed[2] == 786432 + 32768
    assert res.machine.zone_field(2, mz.Z_WMARK_MIN) == 8672  # as in the kernel's after.zoneinfo
    assert res.anomalies.lines["memory_onlined"][0] == 4  # line 19674 of the trace


def test_bad_input_is_counted_and_the_replay_goes_on(tmp_path):
    lines = [
        PFX + "1.000001: mm_page_alloc: page=00 pfn=0x1bec48 order=0 migratetype=0 gfp_flags=GFP_KERNEL",
        PFX + "1.000002: mm_page_alloc: page=00 pfn=0x1bec49 order=0 migratetype=0 gfp_flags=GFP_KERNEL",
        "garbage in the middle",
        PFX + "1.000003: sched_switch: prev_comm=x",
        PFX + "1.000000: mm_page_free: page=00 pfn=0x1bec48 order=0",  # out of order, still replayed
        PFX + "1.000004: mm_page_alloc: page=00 pfn=0x9999999 order=0 migratetype=0 gfp_flags=GFP_KERNEL",
        PFX + "1.000005: mm_page_free: page=00 pfn=0x9999998 order=0",  # outside every zone
        PFX + "1.000006: mm_page_free: page=00 pfn=0x1bec49 order=1",  # order differs from the alloc
        PFX + "1.000007: mm_page_alloc: page=00 pfn=0x0 order=0 migratetype=0 gfp_flags=GFP_KERNEL",  # failed
        PFX + "1.000008: mm_page_free: page=00 pfn=0x150000 order=0",  # allocated before the trace
        PFX + "1.000009: mm_page_free: page=00 pfn=0x1be",  # cut short
    ]
    f = tmp_path / "bad.txt"
    f.write_text("\n".join(lines))
    res = replay(f, get_policy("linux-6.18"), load_snapshot(THP))
    c, first = res.anomalies.count, res.anomalies.lines
    assert c["parse_garbled"] == 1 and first["parse_garbled"] == [3]
    assert c["parse_unknown_event"] == 1 and c["parse_out_of_order"] == 1 and c["parse_truncated"] == 1
    assert c["pfn_outside_zones"] == 2 and first["pfn_outside_zones"] == [6, 7]
    assert c["free_order_mismatch"] == 1 and c["alloc_failed_in_kernel"] == 1
    assert c["pretrace_free"] == 1 and first["pretrace_free"] == [10]
    assert res.replayed["allocs"] == 3 and res.sim.allocs == 3


def test_replay_without_snapshot(tmp_path):
    f = slice_of("thp-mix", 1500, tmp_path)
    res = replay(f, get_policy("linux-6.18"), None, flavour="mainline-nocma")
    assert res.replayed["allocs"] == res.kernel.allocs
    assert res.anomalies.count.get("pretrace_free_no_snapshot", 0) + res.replayed["frees"] == res.kernel.frees


def test_cli_replay_fidelity_json(tmp_path, capsys):
    f = slice_of("thp-mix", 2500, tmp_path)
    snapdir = tmp_path / "snap"
    snapdir.mkdir()
    for n in ("buddyinfo", "pagetypeinfo", "zoneinfo"):
        for w in ("before", "after"):
            (snapdir / f"{w}.{n}").write_text((THP / f"{w}.{n}").read_text())
    p = argparse.ArgumentParser()
    add_parsers(p.add_subparsers(dest="cmd"))
    out = tmp_path / "out"
    a = p.parse_args(["replay", str(f), "--snapshot", str(snapdir), "--fidelity", "--json", "--out", str(out),
                      "--sim-trace"])
    assert a.fn(a) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["pcp_refill_per_1000_allocs"]) >= {"kernel", "sim", "rel_err"}
    assert (out / "replay.json").exists() and (out / "proc" / "buddyinfo").exists() and (out / "trace.npz").exists()
    # the simulator's own trace parses back with the same parser
    arr, pp = P.parse_file(out / "sim-trace.txt")
    assert not pp.stats.bad and int((arr[:, 0] == P.K_PAGE_ALLOC).sum()) == data[
        "pcp_refill_per_1000_allocs"]["sim_events"] * 0 + json.loads((out / "replay.json").read_text())["sim"]["allocs"]


def test_fidelity_arithmetic():
    lo, hi = poisson_interval(0)
    assert lo == 0 and abs(hi - 3.689) < 0.01
    lo, hi = poisson_interval(2)
    assert abs(lo - 0.2422) < 0.01 and abs(hi - 7.2247) < 0.01
    s = stat(500, 1000, 560, 1000, 1e3)
    assert s["kernel"] == 500 and s["sim"] == 560 and s["rel_err"] == 0.12 and not s["ok"]
    s = stat(2, 75878, 3, 75878, 1e6)
    assert s["ok"] and "kernel_95" in s
    d = buddyinfo_distance({"Normal": [4, 0, 1]}, {"Normal": [2, 1, 1]})
    assert d["kernel"] == 8 and d["sim"] == 8 and d["rel_err"] == 0.5


def test_replay_core_hash_table_matches_a_dict():
    """kmap and prescan's live set (replay_core's key-value tables): random inserts, overwrites
    and deletes (clustered pfns, as a trace's are) agree with a dict, through growth."""
    import random

    from cmasim.trace import replay_core as RC

    rng = random.Random(5)
    t = RC.kv_new(16)
    ref: dict[int, int] = {}
    n = 0
    for step in range(6000):
        if step % 500 == 0:
            t = RC.kv_grow(t, n, 500)
        pfn = rng.randrange(4096) * rng.choice((1, 512, 1024))
        s = RC.kv_find(t, pfn)
        assert (s >= 0) == (pfn in ref)
        if s >= 0:
            assert int(t[2 * s + 1]) == ref[pfn]
        if s >= 0 and rng.random() < 0.6:
            RC.kv_delete(t, s)
            del ref[pfn]
            n -= 1
        else:
            v = step * 16 + rng.randrange(11)
            n += RC.kv_insert(t, pfn, v)
            ref[pfn] = v
    assert n == len(ref) == int((t[0::2] != RC.EMPTY).sum())
    assert RC.kv_find(t, -1) == -1
    for pfn, v in ref.items():
        s = RC.kv_find(t, pfn)
        assert int(t[2 * s + 1]) == v
    doubled = RC.kv_doubled(t)  # pcp_flows' growth keeps every key and value
    assert len(doubled) == 2 * len(t)
    for pfn, v in ref.items():
        assert int(doubled[2 * RC.kv_find(doubled, pfn) + 1]) == v


def test_progress_reports_records_done(tmp_path):
    """replay(progress=...) is called after each chunk with the records translated so far."""
    f = slice_of("thp-mix", 40, tmp_path, skip=19670)
    seen = []
    replay(f, get_policy("linux-6.18"), load_snapshot(THP), progress=seen.append)
    assert seen and seen[-1] == 40 and seen == sorted(seen)


def test_kernel_counts_are_the_records(tmp_path):
    """KernelCounts, counted by prescan's compiled loop (replay_core.prescan_chunk), equal a plain
    count of the parsed records, field by field; a replay stopped early counts its records only."""
    f = slice_of("thp-mix", 6000, tmp_path)
    snap = load_snapshot(THP)
    recs = [r for r in P.TraceParser(snap.flavour).iter_chunks(f, 1 << 10)]
    for limit in (None, 1500):
        res = replay(f, get_policy("linux-6.18"), snap, max_records=limit)
        a = np.concatenate(recs)[:limit]
        k, o, fl = a[:, P.C_KIND], a[:, P.C_F0], a[:, P.C_PFN]
        alloc, free = k == P.K_PAGE_ALLOC, k == P.K_PAGE_FREE
        zl, ef = a[k == P.K_ZONE_LOCKED, P.C_F0 + 2], a[k == P.K_EXTFRAG, P.C_F0 + 6]
        want = {"allocs": int((alloc & (fl >= 0)).sum()), "allocs_failed": int((alloc & (fl < 0)).sum()),
                "alloc_pages": int((1 << o[alloc & (fl >= 0)]).sum()), "frees": int(free.sum()),
                "free_pages": int((1 << o[free]).sum()), "frees_batched": int((k == P.K_FREE_BATCHED).sum()),
                "refill_blocks": int((zl == 1).sum()), "buddy_blocks": int((zl == 0).sum()),
                "pcpu_drain": int((k == P.K_PCPU_DRAIN).sum()), "extfrag": len(ef),
                "extfrag_change_ownership": int((ef == 1).sum())}
        assert dataclasses.asdict(res.kernel) == want, limit
        assert want["allocs"] > 100 and want["frees"] > 100 and (limit or want["refill_blocks"] > 0)
