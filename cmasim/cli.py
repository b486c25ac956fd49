"""The `cmasim` command line. Only this module (and report code) prints."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
from pathlib import Path

# The imports below (numpy, numba, the core's dispatchers) allocate a few hundred thousand
# objects that are never garbage; the collector scanning them, then again on every later full
# collection, was 0.2-0.3 s of CPU of a short `cmasim replay` (docs/performance.md, "Replay:
# fixed start"). So no collection while they load, and gc.freeze() moves them out of reach.
# And `import numba` imports PyYAML (to read an optional .numba_config.yaml in the working
# directory) and scipy (only to check its version): ~0.1 s of CPU that no command needs at
# start-up (scipy is imported where statistics are computed). Both are unimportable while the
# imports below load, and importable again afterwards. (NUMBA_* environment variables still
# configure numba; a .numba_config.yaml file is then not read.)
_gc_was_enabled = gc.isenabled()
gc.disable()
_blocked = [name for name in ("yaml", "scipy") if name not in sys.modules]
for _name in _blocked:
    sys.modules[_name] = None  # type: ignore[assignment]  # `import name` raises ImportError
try:
    from cmasim.policy import UnknownPolicy, describe_all, get_policy
    from cmasim.trace.cli_trace import TRACE_ERRORS, add_parsers as add_trace_parsers
    from cmasim.trace.ftrace import ALL_EVENTS, TraceEventError, parse_events
    from cmasim.machine import MachineTooLarge
    from cmasim.fmt import num as _num
    from cmasim.outdir import Interrupted, OutputError, staged_output
    from cmasim.compile_pool import CompileJobsError
finally:
    for _name in _blocked:
        if sys.modules.get(_name, 0) is None:
            del sys.modules[_name]
    gc.freeze()
    if _gc_was_enabled:
        gc.enable()


class _Console:
    """rich's Console, created at first use: rich (and pydantic, through cmasim.scenario) are
    imported only by the commands that need them, so `cmasim replay` starts faster
    (docs/performance.md, "Replay: fixed start")."""

    def __init__(self, **kw):
        self._kw = kw
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kw)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.console, name)


err = _Console(stderr=True)
out = _Console()


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _report_errors() -> tuple:
    """cmasim.report.errors.ReportError when the report code is loaded (nothing else raises it)."""
    m = sys.modules.get("cmasim.report.errors")
    return (m.ReportError,) if m is not None else ()


def _scenario_errors() -> tuple:
    """cmasim.scenario.ScenarioError when that module is loaded (nothing else can raise it)."""
    sc = sys.modules.get("cmasim.scenario")
    return (sc.ScenarioError,) if sc is not None else ()


def _fail(msg: str) -> int:
    """One error line (never wrapped, never read as markup) and exit status 2."""
    err.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
    return 2


def _positive_ms(text: str) -> float:
    """argparse type of the simulated-time intervals (--timeline, --check-every): a number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 ms")
    return v


@contextlib.contextmanager
def compile_notice(quiet: bool = False, show=None):
    """Say so before the core is compiled (not cached yet); `show(text)` gets the function being
    compiled (numba's compile events), for a progress line."""
    from cmasim.warmup import COLD_COMPILE_S, compile_listener, core_cached

    if core_cached():
        yield
        return
    err.print(f"compiling the allocator core once (about {COLD_COMPILE_S // 60} min on 2 cores); later runs load it "
              "from the cache. `make install` (or `cmasim compile`) does this ahead of time.", highlight=False,
              soft_wrap=True)
    if quiet or show is None:
        yield
        return
    count = [0]

    def on_compile(name: str) -> None:
        count[0] += 1
        show(f"compiling {name} ({count[0]} so far)")

    with compile_listener(on_compile):
        yield


NEXT_STEPS = (
    ("compare policies on the same seeds", "cmasim compare --scenario default --policy linux-6.18 "
                                           "--policy linux-6.18+pin-pending-migration --seeds 3"),
    ("short-term pins against a GPU's CMA buffers", "cmasim run --scenario gpu-cma-short-pins --trace"),
    ("replay a real 6.18 kernel trace", "cmasim replay data/traces/linux-6.18-x86_64/thp-mix/trace.txt.xz "
                                        "--snapshot data/traces/linux-6.18-x86_64/thp-mix --fidelity"),
)


def pins_fail_table(pf: dict):
    """workload.pins_fail: one row per phase and request size (cmasim.workload.pins_fail)."""
    from rich.table import Table

    t = Table(title="pins_fail: per phase and request size")
    for col in ("phase", "MiB", "ok / fail", "busy (gave up / left behind)", "first / later range ms",
                "CMA pins held start / max", "fill in CMA"):
        t.add_column(col, justify="right" if col != "phase" else "left")
    for ph in pf["phases"]:
        for size, c in ph["sizes"].items():
            later = c["later_range_ms_med"]
            t.add_row(ph["name"], size, f"{c['ok']} / {c['fail']}",
                      f"{c['busy_retries']} ({c['busy_gave_up']} / {c['busy_left_behind']})",
                      f"{_num(c['first_range_ms_med'] or 0)} / {'-' if later is None else _num(later)}",
                      f"{_num(c['held_cma_start_med'] or 0)} / {c['held_cma_max']}",
                      _num(c["fill_pages_in_cma_med"] or 0))
    return t


def cmd_run(a) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from cmasim.run import run_scenario
    from cmasim.scenario import load_scenario
    from cmasim.warmup import compile_core, core_cached

    sc = load_scenario(a.scenario, a.set)
    policy = get_policy(a.policy)
    seed = a.seed if a.seed is not None else sc.seed
    out_dir = Path(a.out) if a.out else Path("results") / f"{sc.name}-{policy.name}-seed{seed}"
    trace = False
    if a.trace is not None:
        trace = a.trace
        if Path(trace).name != trace or trace in ("", ".", ".."):
            return _fail(f"--trace {trace}: give a file name (it is written inside the --out folder)")
    parse_events(a.trace_events)  # a bad event name fails before anything runs
    with staged_output(out_dir, a.force) as tmp, \
            Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[sim]}"),
                     TimeRemainingColumn(), console=err.console, disable=a.quiet, transient=True) as prog, \
            compile_notice(a.quiet, lambda text: prog.update(task, sim=text)):
        task = prog.add_task(f"{sc.name} / {policy.name}", total=1, sim="")
        if not core_cached():  # compile every entry point once, so the "compiled" stamp tells the truth
            compile_core([policy])
        metrics = run_scenario(sc, policy, seed, tmp, trace=trace, trace_events=a.trace_events,
                               progress=lambda d, t: prog.update(task, completed=d, total=t,
                                                                  sim=f"{d / 1e9:.3f} s simulated"),
                               check_every=a.check_every, timeline_ms=a.timeline or 0)
        if a.report:
            from cmasim.report import write_report

            write_report(tmp, tmp / "report.html")
    t = Table(title=f"{sc.name} under {policy.name}, seed {seed}: {metrics['events']:,} events")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in metrics["vmstat"].items():
        t.add_row(k, _num(v))
    for k in ("hit_rate", "zone_lock_per_1000_allocs", "refills", "drains"):
        t.add_row(f"pcp {k}", _num(metrics["pcp"][k]))
    for k in ("extfrag", "claims", "steals", "alloc_fail", "cma_blocks_allocated"):
        t.add_row(k, _num(metrics["counters"][k]))
    for name, c in metrics["cma"].items():
        t.add_row(f"cma {name} requests / ok", f"{_num(c['requests'])} / {_num(c['success'])}")
        t.add_row(f"cma {name} fail busy / no range / no memory",
                  f"{_num(c['fail']['busy'])} / {_num(c['fail']['no_free_range'])} / {_num(c['fail']['nomem'])}")
        t.add_row(f"cma {name} busy retries", _num(c["busy_retries"]))
        t.add_row(f"cma {name} latency p50 / max",
                  f"{_num(c['latency']['p50_ms'])} / {_num(c['latency']['max_ms'])} ms")
    if not a.quiet:
        out.print(t)
        pf = metrics["workload"].get("pins_fail")
        if pf:
            out.print(pins_fail_table(pf))
    tr = metrics["trace"]
    if trace:
        note = f"{tr['records']:,} trace records written"
        if tr["lost"]:
            err.print(f"[yellow]warning:[/] {note}, {tr['lost']:,} lost (the core's buffer filled between two "
                      f"drains; each place is marked `CPU:N [LOST M EVENTS]` in the file); --trace-events "
                      f"narrows what is recorded", highlight=False)
        elif not a.quiet:
            err.print(f"{note}, none lost", highlight=False)
    # Plain print: a long path must stay on one line for scripts that read it.
    print(f"results: {out_dir}/metrics.json, {out_dir}/proc/" + (f", {out_dir}/{tr['file']}" if trace else "")
          + (f", {out_dir}/report.html" if a.report else ""))
    if not a.quiet:
        print("next:")
        for what, cmd in NEXT_STEPS:
            print(f"  {cmd}\n      ({what})")
    return 0


def cmd_report(a) -> int:
    from cmasim.report import write_report

    out = write_report(a.folder, a.o)
    print(f"report: {out}")
    return 0


def cmd_explain(a) -> int:
    from cmasim.explain import ExplainError, read_jsonl, summarize

    try:
        recs = read_jsonl(Path(a.folder))
    except (FileNotFoundError, ExplainError) as e:
        return _fail(str(e))
    if a.json:
        print(json.dumps({"summary": summarize(recs), "ranges": recs}, indent=2))
        return 0
    print(f"{len(recs):,} busy alloc_contig_range() ranges in {a.folder}")
    for r in recs[:a.limit]:
        p = r.get("page") or {}
        fb = r.get("first_busy_pfn")
        what = "no busy page found"
        if p:
            what = (f"first busy pfn 0x{fb:x}: {p.get('owner', p.get('state', '?'))}, order {p.get('order')}, "
                    f"{p.get('pageblock')} pageblock, ")
            if p.get("pinned"):
                kind = "FOLL_LONGTERM" if p["longterm"] else "short-term"
                who = f"pinner {p['pinner']}" if p.get("pinner") is not None else "a pin"
                what += f"pinned ({kind}) by {who}" + (
                    f" until {_num(p['pinned_until_ms'])} ms" if p.get("pinned_until_ms") else "")
            else:
                what += "not pinned when the range gave up"
        print(f"{_num(r['t_ms']):>10} ms  {r['area']} 0x{r['pfn']:x} +{r['count']:,} pages: {r['cause']}; {what}")
        print(f"{'':>14}avoided by: {r.get('avoided_by', '—')}")
    if len(recs) > a.limit:
        print(f"({len(recs) - a.limit:,} more; --limit N or --json for all)")
    sm = summarize(recs)
    for title, key in (("by cause", "by_cause"), ("by the first busy page", "by_page")):
        print(f"{title}: " + "; ".join(f"{k}: {v:,}" for k, v in sm[key].items()))
    return 0


def cmd_compile(a) -> int:
    """Compile the core ahead of time (make install runs this)."""
    import time

    from cmasim.mm.jit import JIT
    from cmasim.warmup import compile_core, core_cached

    if not JIT:
        print("interpreted mode (CMASIM_JIT=0): nothing to compile")
        return 0
    if core_cached() and not a.force:
        print("the allocator core is already compiled and cached")
        return 0
    t0 = time.perf_counter()
    with err.status("compiling", spinner="dots") as status, \
            compile_notice(a.quiet, lambda text: status.update(text)):
        compile_core(jobs=a.jobs)
    print(f"compiled the allocator core in {time.perf_counter() - t0:.0f} s; runs now load it from the cache")
    return 0


def cmd_policies(a) -> int:
    from rich.table import Table

    t = Table(title="policies")
    t.add_column("name")
    t.add_column("summary")
    for name, summary in describe_all():
        t.add_row(name, summary)
    out.print(t)
    return 0


def cmd_scenarios(a) -> int:
    from rich.table import Table

    from cmasim.scenario import builtin_scenarios, load_scenario_text

    t = Table(title="built-in scenarios")
    t.add_column("name")
    t.add_column("description")
    for name, text in builtin_scenarios().items():
        sc = load_scenario_text(text, f"{name} (built-in)")
        t.add_row(name, " ".join(sc.description.split()))
    out.print(t)
    return 0


def cmd_bench(a) -> int:
    from rich.table import Table

    from cmasim.bench import run_bench, run_reference_bench

    if a.reference:
        if not os.path.isfile(a.reference):
            return _fail(f"no native reference script at {a.reference} (the repository's is bench/native/run-native.sh)")
        res = run_reference_bench(a.reference, gib=a.gib, runs=a.runs, events=a.events)
        if a.json:
            print(json.dumps(res, indent=2))
            return 0
        t = Table(title=f"cmasim bench against {a.reference}: {a.gib:g} GiB, alternating runs "
                        f"(native, cmasim, ..., native), {a.events:,} cmasim events a run")
        t.add_column("figure")
        t.add_column("value", justify="right")
        t.add_row("native ops/s, runs in order", ", ".join(f"{x / 1e6:.2f} M" for x in res["native_ops_per_s"]))
        t.add_row("cmasim events/s, runs in order", ", ".join(f"{x / 1e6:.2f} M" for x in res["cmasim_events_per_s"]))
        t.add_row("native ops/s (median)", f"{res['native_median'] / 1e6:.2f} M")
        t.add_row("cmasim events/s (median)", f"{res['cmasim_median'] / 1e6:.2f} M")
        t.add_row("ratio cmasim/native (median)", f"{res['ratio_median']:.3f}")
        t.add_row("ratio (min–max)", f"{res['ratio_min']:.3f}–{res['ratio_max']:.3f}")
        out.print(t)
        return 0
    res = run_bench(gib=a.gib, runs=a.runs, events=a.events, measure_start=not a.no_start, cpus=a.cpus)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    t = Table(title=f"cmasim bench: {a.gib:g} GiB, {a.runs} runs of {a.events:,} churn events")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("events/s (median)", f"{res['events_per_s_median'] / 1e6:.2f} M")
    t.add_row("events/s (min–max)", f"{res['events_per_s_min'] / 1e6:.2f}–{res['events_per_s_max'] / 1e6:.2f} M")
    t.add_row("pcp pages moved / event (buddy ↔ per-CPU lists)", f"{res['pcp_pages_moved_per_event']:g}")
    t.add_row("peak RSS", f"{res['peak_rss_mib']} MiB")
    t.add_row("state bytes / page (with workload)", str(res["state_bytes_per_page"]))
    t.add_row("allocator state bytes / page", str(res["allocator_state_bytes_per_page"]))
    if "cold_start_s" in res:
        t.add_row("cold start (cmasim compile, empty cache)", f"{res['cold_start_s']} s")
        t.add_row("warm start (same, cached)", f"{res['warm_start_s']} s")
    out.print(t)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cmasim")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "unknown (not installed)"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `command` "replay" or "snapshot", the parsers of
    `cmasim compare` and the sweep commands are left out (their modules are not imported: a
    short replay starts faster, docs/performance.md "Replay: fixed start")."""
    p = argparse.ArgumentParser(prog="cmasim", description="Linux page allocator and CMA simulator")
    p.add_argument("--version", action="version", version=f"cmasim {_version()}")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one scenario under one policy")
    r.add_argument("--scenario", default="default", help="built-in scenario name (see `cmasim scenarios`) or a "
                                                          "TOML file (default: default)")
    r.add_argument("--policy", default="linux-6.18",
                   help="kernel policy record, optionally with '+' fixes, e.g. linux-6.18+pin-pending-migration "
                        "(see `cmasim policies`; default: linux-6.18)")
    r.add_argument("--seed", type=int, help="random seed of the workload (default: the scenario's seed)")
    r.add_argument("--out", help="output folder, replaced only with --force "
                                 "(default results/<scenario>-<policy>-seed<N>)")
    r.add_argument("--force", action="store_true", help="replace a non-empty output folder whole")
    r.add_argument("--trace", nargs="?", const="trace.txt", metavar="FILE",
                   help="write an ftrace-format trace into the output folder (default name trace.txt; "
                        "a name ending in .xz or .gz is compressed)")
    r.add_argument("--trace-events", metavar="LIST",
                   help="comma-separated events to trace (default all): " + ", ".join(ALL_EVENTS))
    r.add_argument("--check-every", type=_positive_ms, default=0, metavar="MS",
                   help="run the invariant checker every MS simulated milliseconds")
    r.add_argument("--quiet", action="store_true", help="no progress bar, table or hints: only the results line")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario parameter, e.g. workload.pinner.0.threads=8 (repeatable)")
    r.add_argument("--timeline", type=_positive_ms, metavar="MS",
                   help="sample free memory by order and CMA use every MS simulated ms into timeline.npz, "
                        "and up to 8 evenly spaced pageblock maps into pageblocks_timeline.npz")
    r.add_argument("--report", action="store_true", help="write report.html (cmasim report) into the folder")
    r.set_defaults(fn=cmd_run)
    rp = sub.add_parser("report", help="one self-contained HTML page of a run, compare, replay or sweep folder")
    rp.add_argument("folder", help="an output folder of cmasim run, compare, replay or sweep")
    rp.add_argument("-o", metavar="FILE", help="where to write the page (default FOLDER/report.html)")
    rp.set_defaults(fn=cmd_report)
    ex = sub.add_parser("explain", help="why each cma_alloc() range of a run was busy (first busy page, owner, pin)")
    ex.add_argument("folder", help="an output folder of cmasim run")
    ex.add_argument("--limit", type=int, default=40, metavar="N", help="rows to print (default 40)")
    ex.add_argument("--json", action="store_true", help="print every record and the summary as JSON")
    ex.set_defaults(fn=cmd_explain)
    sub.add_parser("policies", help="list built-in policies").set_defaults(fn=cmd_policies)
    sub.add_parser("scenarios", help="list built-in scenarios").set_defaults(fn=cmd_scenarios)
    b = sub.add_parser("bench", help="measure the compiled core")
    b.add_argument("--gib", type=float, default=1, help="simulated memory in GiB, e.g. 1, 16 or 0.0625 (default 1)")
    b.add_argument("--runs", type=int, default=3, help="measured runs, each on a fresh machine (default 3)")
    b.add_argument("--events", type=int, default=5_000_000, help="churn events per run (default 5,000,000)")
    b.add_argument("--cpus", type=int, default=2, help="simulated CPUs (default 2; the churn picks one at random "
                                                        "per event)")
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.add_argument("--no-start", action="store_true", help="skip the cold/warm start measurement")
    b.add_argument("--reference", metavar="SCRIPT",
                   help="also run this native reference (e.g. bench/native/run-native.sh) alternately with "
                        "cmasim and print both rates and their ratio (min–max)")
    b.set_defaults(fn=cmd_bench)
    from cmasim.compare import _positive_int  # the same check as compare's --seeds and --jobs

    c = sub.add_parser("compile", help="compile the allocator core into numba's cache ahead of time")
    c.add_argument("--force", action="store_true", help="compile (or load) even if the cache looks current")
    c.add_argument("--quiet", action="store_true", help="no progress line")
    c.add_argument("--jobs", "-j", type=_positive_int, default=None, metavar="N",
                   help="worker processes for a cold compile (default: the CPUs available, at most 4; "
                        "1 compiles in this process; env CMASIM_COMPILE_JOBS)")
    c.set_defaults(fn=cmd_compile)
    add_trace_parsers(sub)
    if command not in _TRACE_COMMANDS:
        from cmasim.compare import add_parser as add_compare_parser
        from cmasim.sweep.cli import add_parsers as add_sweep_parsers

        add_compare_parser(sub)
        add_sweep_parsers(sub)
    return p


_TRACE_COMMANDS = ("replay", "snapshot")


def _command(argv: list[str]) -> str | None:
    """The sub-command named on the command line (its first word that is not an option)."""
    return next((w for w in argv if not w.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    a = build_parser(_command(sys.argv[1:] if argv is None else argv)).parse_args(argv)
    try:
        return a.fn(a)
    except _scenario_errors() + (UnknownPolicy,) as e:
        return _fail(str(e.args[0]) if isinstance(e, UnknownPolicy) else str(e))
    except (TRACE_ERRORS + (OutputError, MachineTooLarge, TraceEventError) + _report_errors()) as e:
        return _fail(str(e))
    except CompileJobsError as e:
        return _fail(str(e))
    except Interrupted as e:
        err.print(escape(str(e.args[0])), highlight=False, soft_wrap=True)
        return 130
    except KeyboardInterrupt:
        err.print("interrupted", highlight=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
