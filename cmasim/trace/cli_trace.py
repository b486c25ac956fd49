"""`cmasim replay` and `cmasim snapshot`: the command-line side of cmasim.trace.

Wiring (in cmasim/cli.py's build_parser(), after the other sub-commands):

    from cmasim.trace.cli_trace import add_parsers
    add_parsers(sub)

and, in main(), let `cmasim.trace.parser.NotATraceError` and
`cmasim.trace.snapshot.SnapshotError` print as errors (exit code 2), like ScenarioError
(`TRACE_ERRORS` below lists them).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from cmasim.policy import get_policy
from cmasim.trace.columnar import CacheError
from cmasim.trace.parser import FLAVOURS, NotATraceError
from cmasim.trace.snapshot import SnapshotError, capture, load_snapshot

TRACE_ERRORS = (NotATraceError, SnapshotError, CacheError)


def cmd_snapshot(a) -> int:
    names = capture(a.out, kpageflags=a.kpageflags)
    snap = load_snapshot(a.out)
    print(f"snapshot: {', '.join(names)} -> {a.out}/ ({len(snap.zones)} zones, {snap.nr_cpus} CPUs, "
          f"flavour {snap.flavour})")
    for note in snap.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _check_trace_path(trace: str) -> None:
    p = Path(trace)
    if not p.exists():
        raise NotATraceError(f"{trace}: no such file")
    if p.is_dir():
        hint = next((f.name for f in sorted(p.iterdir()) if f.name.startswith("trace.txt")), None)
        raise NotATraceError(f"{trace}: is a folder, not a trace file"
                             + (f" (did you mean {p / hint}?)" if hint else ""))


def cmd_replay(a) -> int:
    from cmasim.outdir import check_target, staged_output

    _check_trace_path(a.trace)
    policy = get_policy(a.policy)
    if a.fidelity and not a.snapshot:
        print("error: --fidelity needs --snapshot DIR (the starting state; after.* files for the buddyinfo "
              "distance)", file=sys.stderr)
        return 2
    if a.sim_trace and not a.out:
        print("error: --sim-trace needs --out DIR", file=sys.stderr)
        return 2
    snap = load_snapshot(a.snapshot, flavour=a.flavour) if a.snapshot else None
    after = None
    if a.snapshot:
        try:
            after = load_snapshot(a.snapshot, prefix="after.", flavour=a.flavour)
            if not any((Path(a.snapshot) / f"after.{n}").exists() for n in ("buddyinfo", "zoneinfo")):
                after = None
        except SnapshotError:
            after = None
    if a.out is None:
        with tempfile.TemporaryDirectory(prefix="cmasim-replay-") as tmp:
            return _replay(a, policy, snap, after, Path(tmp), None)
    out = Path(a.out)
    check_target(out, a.force)
    old_cache = out / "trace.npz"
    with staged_output(out, a.force) as tmp:
        if a.cache is None and old_cache.is_file():  # --force: keep the parsed trace, it is checked before use
            shutil.copy2(old_cache, tmp / "trace.npz")
        return _replay(a, policy, snap, after, tmp, out)


def _replay(a, policy, snap, after, work: Path, out: Path | None) -> int:
    """Replay into `work` (the staged output folder, or a scratch folder when out is None)."""
    from cmasim.trace import fidelity
    from cmasim.trace.replay import replay, write_outputs

    cache = Path(a.cache) if a.cache else work / "trace.npz"
    sim_trace = open(work / "sim-trace.txt", "w") if a.sim_trace else None  # noqa: SIM115 (closed below)
    try:
        res = replay(a.trace, policy, snap, flavour=a.flavour, cache=cache, seed=a.seed, sim_trace=sim_trace,
                     max_records=a.max_records,
                     vmstat_phase_ns=None if a.vmstat_phase is None else round(a.vmstat_phase * 1e9))
    finally:
        if sim_trace is not None:
            sim_trace.close()
    d = res.to_dict()
    r = d["replayed"]
    if r["allocs"] + r["frees"] == 0:
        raise NotATraceError(f"{a.trace}: 0 allocator events (mm_page_alloc / mm_page_free) in "
                             f"{d['parse'].get('lines', 0):,} lines; nothing to replay")
    fid = fidelity.fidelity_table(res, after) if (a.fidelity or snap is not None) else None
    if out is not None:
        write_outputs(res, work, fid)
    for note in res.notes:
        if note.startswith("warning: "):
            print(note, file=sys.stderr)
    if "parse_truncated" in d["anomalies"]["count"]:
        first = d["anomalies"]["first_lines"].get("parse_truncated", [])
        print(f"warning: {a.trace} ends mid-line or mid-stream (a cut compressed file?) at line "
              f"{first[0] if first else '?'}; everything before it was replayed", file=sys.stderr)
    if a.json:
        if a.fidelity:
            print(json.dumps({k: {kk: vv for kk, vv in v.items() if not kk.endswith("buddyinfo")}
                              for k, v in fid.items()}, indent=2))
        else:
            print(json.dumps(d, indent=2))
        return 0
    p = d["parse"]
    parsed = (f"{p['lines']:,} lines, {p.get('events', 0):,} events" if "lines" in p
              else f"first {a.max_records:,} records" if a.max_records else "parse statistics unavailable")
    print(f"replay of {a.trace} under {policy.name} ({res.flavour} migratetypes)"
          f"{' from the columnar cache' if res.from_cache else ''}: {parsed}, {res.wall_s:.1f} s")
    print(f"  replayed: {r['allocs']:,} allocations, {r['frees']:,} frees "
          f"({r['pretrace_frees']:,} of pages allocated before the trace, {r['online_pages']:,} pages onlined); "
          f"{d['kernel']['frees_batched']:,} mm_page_free_batched counted, not replayed (each follows its "
          f"mm_page_free)")
    if d["anomalies"]["count"]:
        print("  counted:")
        for k, v in d["anomalies"]["count"].items():
            print(f"    {k}: {v:,} (first lines {d['anomalies']['first_lines'].get(k, [])})")
    for note in res.notes:
        if not note.startswith("warning: "):
            print(f"  note: {note}")
    if fid is not None and a.fidelity:
        print(fidelity.markdown_table(Path(a.trace).parent.name or a.trace, fid), end="")
    if out is not None:
        print(f"results: {out}/replay.json, {out}/proc/" + (f", {out}/sim-trace.txt" if a.sim_trace else "")
              + (f"; columnar cache {a.cache}" if a.cache else f"; columnar cache {out}/trace.npz"))
    return 0


def add_parsers(sub) -> None:
    """Add the `replay` and `snapshot` sub-commands to an argparse sub-parser set."""
    r = sub.add_parser("replay", help="replay a kernel ftrace trace through the simulator")
    r.add_argument("trace", help="ftrace text: tracefs trace/trace_pipe or trace-cmd report (plain, .gz, .xz)")
    r.add_argument("--snapshot", metavar="DIR",
                   help="starting state: DIR/[before.]{buddyinfo,pagetypeinfo,zoneinfo}; after.* for --fidelity")
    r.add_argument("--policy", default="linux-6.18", help="policy record to replay under (default linux-6.18)")
    r.add_argument("--flavour", choices=sorted(FLAVOURS),
                   help="migratetype numbering (default: from the snapshot's pagetypeinfo, else mainline)")
    r.add_argument("--out", help="output folder (replay.json, proc/, columnar cache trace.npz); replaced only "
                                 "with --force")
    r.add_argument("--force", action="store_true", help="replace a non-empty output folder whole")
    r.add_argument("--cache", help="columnar cache path (default OUT/trace.npz)")
    r.add_argument("--fidelity", action="store_true", help="compare the kernel's events with the simulation")
    r.add_argument("--json", action="store_true", help="print JSON (the fidelity statistics with --fidelity)")
    r.add_argument("--sim-trace", action="store_true", help="write the simulator's ftrace output to OUT/sim-trace.txt")
    r.add_argument("--seed", type=int, default=1, help="seed of the simulator's own random choices (default 1)")
    r.add_argument("--max-records", type=int, metavar="N", help="replay only the first N trace records")
    r.add_argument("--vmstat-phase", type=float, metavar="S",
                   help="trace-clock phase (0-1 s) of the kernel's vmstat worker, when the trace has no "
                        "background drain that shows it")
    r.set_defaults(fn=cmd_replay)
    s = sub.add_parser("snapshot", help="copy this machine's /proc/{buddyinfo,pagetypeinfo,zoneinfo,vmstat}")
    s.add_argument("--out", required=True, help="directory to write the files to")
    s.add_argument("--kpageflags", action="store_true", help="also copy /proc/kpageflags (8 bytes per page)")
    s.set_defaults(fn=cmd_snapshot)
