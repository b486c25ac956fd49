"""The `cmasim` command line. Only this module (and report code) prints."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cmasim.policy import UnknownPolicy, describe_all, get_policy
from cmasim.scenario import ScenarioError, builtin_scenarios, load_scenario, load_scenario_text
from cmasim.compare import add_parser as add_compare_parser
from cmasim.trace.cli_trace import TRACE_ERRORS, add_parsers as add_trace_parsers
from cmasim.sweep.cli import add_parsers as add_sweep_parsers

err = Console(stderr=True)
out = Console()


def _fail(msg: str) -> int:
    err.print(f"[bold red]error:[/] {msg}", highlight=False)
    return 2


def cmd_run(a) -> int:
    from cmasim.run import run_scenario

    sc = load_scenario(a.scenario, a.set)
    policy = get_policy(a.policy)
    seed = a.seed if a.seed is not None else sc.seed
    out_dir = Path(a.out) if a.out else Path("results") / f"{sc.name}-{policy.name}-seed{seed}"
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[sim]}"),
                  TimeRemainingColumn(), console=err, disable=a.quiet) as prog:
        task = prog.add_task(f"{sc.name} / {policy.name}", total=1, sim="")
        metrics = run_scenario(sc, policy, seed, out_dir, trace=a.trace,
                               progress=lambda d, t: prog.update(task, completed=d, total=t,
                                                                  sim=f"{d / 1e9:.3f} s simulated"),
                               check_every=a.check_every)
    t = Table(title=f"{sc.name} under {policy.name}, seed {seed}: {metrics['events']:,} events")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in metrics["vmstat"].items():
        t.add_row(k, f"{v:,}")
    for k in ("hit_rate", "zone_lock_per_1000_allocs", "refills", "drains"):
        t.add_row(f"pcp {k}", str(metrics["pcp"][k]))
    for k in ("extfrag", "claims", "steals", "alloc_fail", "cma_blocks_allocated"):
        t.add_row(k, f"{metrics['counters'][k]:,}")
    for name, c in metrics["cma"].items():
        t.add_row(f"cma {name} requests / ok", f"{c['requests']} / {c['success']}")
        t.add_row(f"cma {name} fail busy / no range / no memory",
                  f"{c['fail']['busy']} / {c['fail']['no_free_range']} / {c['fail']['nomem']}")
        t.add_row(f"cma {name} busy retries", str(c["busy_retries"]))
        t.add_row(f"cma {name} latency p50 / max", f"{c['latency']['p50_ms']} / {c['latency']['max_ms']} ms")
    if not a.quiet:
        out.print(t)
    if metrics["trace"]["lost"]:
        err.print(f"[yellow]warning:[/] {metrics['trace']['lost']} trace records were lost (buffer full)")
    # Plain print: a long path must stay on one line for scripts that read it.
    print(f"results: {out_dir}/metrics.json, {out_dir}/proc/" + (f", {out_dir}/trace.txt" if a.trace else ""))
    return 0


def cmd_policies(a) -> int:
    t = Table(title="policies")
    t.add_column("name")
    t.add_column("summary")
    for name, summary in describe_all():
        t.add_row(name, summary)
    out.print(t)
    return 0


def cmd_scenarios(a) -> int:
    t = Table(title="built-in scenarios")
    t.add_column("name")
    t.add_column("description")
    for name, text in builtin_scenarios().items():
        sc = load_scenario_text(text, f"{name} (built-in)")
        t.add_row(name, " ".join(sc.description.split()))
    out.print(t)
    return 0


def cmd_bench(a) -> int:
    from cmasim.bench import run_bench

    res = run_bench(gib=a.gib, runs=a.runs, events=a.events, measure_start=not a.no_start)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    t = Table(title=f"cmasim bench: {a.gib} GiB, {a.runs} runs of {a.events:,} churn events")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("events/s (median)", f"{res['events_per_s_median'] / 1e6:.2f} M")
    t.add_row("events/s (min–max)", f"{res['events_per_s_min'] / 1e6:.2f}–{res['events_per_s_max'] / 1e6:.2f} M")
    t.add_row("peak RSS", f"{res['peak_rss_mib']} MiB")
    t.add_row("state bytes / page (with workload)", str(res["state_bytes_per_page"]))
    t.add_row("allocator state bytes / page", str(res["allocator_state_bytes_per_page"]))
    if "cold_start_s" in res:
        t.add_row("cold start (compile)", f"{res['cold_start_s']} s")
        t.add_row("warm start (cached)", f"{res['warm_start_s']} s")
    out.print(t)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cmasim", description="Linux page allocator and CMA simulator")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run one scenario under one policy")
    r.add_argument("--scenario", default="default", help="built-in scenario name or a TOML file")
    r.add_argument("--policy", default="linux-6.18")
    r.add_argument("--seed", type=int)
    r.add_argument("--out", help="output directory (default results/<scenario>-<policy>-seed<N>)")
    r.add_argument("--trace", action="store_true", help="write an ftrace-format trace.txt")
    r.add_argument("--check-every", type=float, default=0, metavar="MS",
                   help="run the invariant checker every MS simulated milliseconds")
    r.add_argument("--quiet", action="store_true")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario parameter, e.g. workload.pinner.0.threads=8 (repeatable)")
    r.set_defaults(fn=cmd_run)
    sub.add_parser("policies", help="list built-in policies").set_defaults(fn=cmd_policies)
    sub.add_parser("scenarios", help="list built-in scenarios").set_defaults(fn=cmd_scenarios)
    b = sub.add_parser("bench", help="measure the compiled core")
    b.add_argument("--gib", type=int, default=1, choices=(1, 2, 4, 8, 16))
    b.add_argument("--runs", type=int, default=3)
    b.add_argument("--events", type=int, default=5_000_000)
    b.add_argument("--json", action="store_true")
    b.add_argument("--no-start", action="store_true", help="skip the cold/warm start measurement")
    b.set_defaults(fn=cmd_bench)
    add_trace_parsers(sub)
    add_compare_parser(sub)
    add_sweep_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        return a.fn(a)
    except (ScenarioError, UnknownPolicy) as e:
        return _fail(str(e.args[0]) if isinstance(e, UnknownPolicy) else str(e))
    except TRACE_ERRORS as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted")


if __name__ == "__main__":
    sys.exit(main())
