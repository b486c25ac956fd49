"""One simulation: scenario + policy + seed -> metrics and /proc-style output files.

`run_scenario` builds the machine, runs the scenario's timeline (cmasim.engine), checks
the invariants at the end, and (with `out_dir`) writes `metrics.json`, `proc/*`,
`sys/kernel/mm/cma/<area>/*` and, with tracing on, an ftrace-format `trace.txt`. It returns the metrics dict; it never prints —
progress is reported through the optional `progress(done, total)` callback.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from cmasim.machine import Machine, MachineConfig
from cmasim.mm import mmzone as mz
from cmasim.mm import vmstat
from cmasim.policy import Policy
from cmasim.scenario import Scenario, place_cma, zone_layout
from cmasim.trace.ftrace import TraceSink, parse_events
from cmasim.engine import TIMELINE_COLUMNS, Engine
from cmasim.explain import write_jsonl
from cmasim.pageblocks import pageblock_map
from cmasim.mm.cma import area_metrics
from cmasim.workload.churn import W_EVENTS
from cmasim.workload.pins_fail import PinsFail, fill_thp_gfp, pinner_rows

TRACE_CAPACITY = 1 << 20  # records (80 bytes each) between two drains of the core's buffer


def build_machine(sc: Scenario, policy: Policy, seed: int, trace_capacity: int = 0,
                  trace_mask: int = 0xFFFE) -> Machine:
    zones = zone_layout(sc.machine)
    m = sc.machine
    pinners = [{"hold_ns": int(p.hold_us * 1000), "gap_ns": int(p.gap_us * 1000), "longterm": p.longterm,
                "cma_only": p.cma_only, "threads": p.threads, "start_ns": int(p.start_ms * 1e6)}
               for p in sc.workload.pinner]
    if sc.workload.pins_fail is not None:
        pinners = pinner_rows(sc.workload.pins_fail)
    c = sc.costs
    f = c.speed_factor

    def ns(us: float) -> int:  # a cost in µs on the simulated machine, in ns
        return int(round(us * f * 1000))
    cfg = MachineConfig(zones=zones, nr_cpus=m.cpus, min_free_kbytes=m.min_free_kbytes,
                        thp=m.thp_enabled() != "never",
                        watermark_scale_factor=m.watermark_scale_factor,
                        percpu_pagelist_high_fraction=m.percpu_pagelist_high_fraction,
                        trace_capacity=trace_capacity, trace_mask=trace_mask, cma_areas=place_cma(zones, sc.cma),
                        migrate_cost_ns=ns(c.migrate_page_us), drain_cost_ns=ns(c.drain_all_us),
                        isolate_cost_ns=ns(c.isolate_pageblock_us), swap_cost_ns=ns(c.swap_page_us),
                        clean_drop_cost_ns=ns(c.drop_clean_page_us), contig_call_cost_ns=ns(c.contig_call_us),
                        scan_cost_ns=ns(c.scan_pfn_us), test_cost_ns=ns(c.test_pfn_us),
                        migrate_fail_cost_ns=None if c.migrate_fail_us is None else ns(c.migrate_fail_us),
                        thp_cost_ppm=int(round(c.thp_page_ratio * 1_000_000)), reclaim=sc.reclaim.enabled,
                        swap_bytes=sc.reclaim.swap, kswapd_rate_pages_s=int(sc.reclaim.kswapd_rate_mib_s * 256),
                        compaction=sc.compaction.enabled, pinners=pinners, oom_killer=sc.reclaim.oom_killer,
                        defrag_mode=m.defrag_mode, reserved_pages=m.reserved // 4096, reserve_pfn0=True,
                        migrate_eagain_ppm=round(sc.migration.transient_eagain * 1_000_000))
    return Machine(cfg, policy, seed=seed)


def pcp_metrics(ev: dict[str, int]) -> dict:
    """Per-CPU list effectiveness: hits, refills, drains, and zone-lock trips per 1000 allocations.

    hit_rate = allocations served from a per-CPU list by an rmqueue() call that took no zone
    lock, / allocation calls (a page popped after a failed refill is not a hit). `by_class`
    splits rmqueue() by request class — "cma" (ALLOC_CMA: __GFP_CMA under Android, every MOVABLE
    request in mainline), "movable_no_cma", "other" — with pages served (rmqueue() calls that
    returned a block), hits, zone-lock trips taken inside rmqueue() (refills and buddy attempts,
    failed ones included), pages of CMA blocks served to a class without ALLOC_CMA ("cma_pages",
    pollution by class), hit_rate = hits / served and zone_lock_per_1000 = 1000 * trips / served.
    """
    allocs = ev["alloc_calls"]
    by_class = {}
    for cls in ("cma", "movable_no_cma", "other"):
        served, hits, locks = (ev[f"rmqueue_{w}_{cls}"] for w in ("served", "pcp_hits", "zone_lock"))
        by_class[cls] = {"served": served, "pcp_hits": hits, "zone_lock": locks,
                         "cma_pages": ev[f"rmqueue_cma_pages_{cls}"],
                         "hit_rate": round(hits / served, 6) if served else 0.0,
                         "zone_lock_per_1000": round(1000 * locks / served, 3) if served else 0.0}
    return {
        "alloc_hits": ev["pcp_alloc_hits"],
        "refills": ev["pcp_refills"],
        "drains": ev["pcp_drains"],
        "drained_pages": ev["pcp_drain_pages"],
        "hit_rate": round(ev["pcp_alloc_hits"] / allocs, 6) if allocs else 0.0,
        "zone_lock_per_1000_allocs": round(1000 * (ev["buddy_allocs"] + ev["pcp_refills"]) / allocs, 3)
        if allocs else 0.0,
        "by_class": by_class,
    }


def run_scenario(sc: Scenario, policy: Policy, seed: int | None = None, out_dir: Path | None = None,
                 trace: bool | str = False, progress: Callable[[int, int], None] | None = None,
                 check_every: int = 0, trace_events: str | list[str] | None = None,
                 timeline_ms: float = 0) -> dict:
    """Run `sc` under `policy`; returns the metrics dict (and writes out_dir if given).

    `trace`: True writes `trace.txt`, a string names the file inside out_dir (compressed when
    it ends in .xz or .gz); `trace_events` picks the events (cmasim.trace.ftrace.parse_events).
    `check_every` > 0 runs the invariant checker every that many simulated milliseconds.
    `timeline_ms` > 0 samples free memory by order and CMA use that often into `timeline.npz`.
    With out_dir, `pageblocks.npz` holds the pageblock map (cmasim.pageblocks) at the start and
    end of the run, and `cma_ranges.json` every range cma_alloc() took or found busy and every
    cma_alloc() request (size, result, latency, busy retries); `explain.jsonl` one line per busy
    range (cmasim.explain).
    Callers that must never leave a partial folder pass a fresh folder (cmasim.outdir).
    """
    seed = sc.seed if seed is None else seed
    t0 = time.perf_counter()
    mask, events = parse_events(trace_events)
    machine = build_machine(sc, policy, seed, TRACE_CAPACITY if trace else 0, mask)
    trace_path = None
    if trace and out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        trace_path = out_dir / (trace if isinstance(trace, str) else "trace.txt")
    sink = TraceSink(trace_path, events) if trace else None
    engine = Engine(machine, sc, seed, sink)
    if timeline_ms:
        engine.record_timeline(max(1, int(timeline_ms * 1e6)))
    start_map = pageblock_map(machine) if out_dir is not None else None
    engine.keep_maps = out_dir is not None
    checks = 0
    pins_fail = None
    try:
        if check_every:
            step = int(check_every * 1e6)
            t_final = engine.t_end
            t = 0
            while t < t_final:
                t = min(t_final, t + step)
                engine.t_end = t
                engine.run(progress)
                machine.check()
                checks += 1
            engine.t_end = t_final
        else:
            engine.run(progress)
        if sc.workload.pins_fail is not None:
            pins_fail = PinsFail(machine, sc.workload.pins_fail, engine.anon_gfp, engine.tracer,
                                     thp_gfp=fill_thp_gfp(sc, machine.policy)).run()
            engine.flush()
        if sink is not None:
            sink.close(machine)
    finally:
        if sink is not None:
            sink.discard()
    machine.check()
    checks += 1
    ev = vmstat.event_counters(machine)
    metrics = {
        "scenario": sc.name,
        "policy": policy.name,
        "seed": seed,
        "events": int(engine.W[W_EVENTS]) if engine.W is not None else 0,
        "sim_time_s": round(machine.now_ns / 1e9, 9),
        "vmstat": vmstat.vmstat_counters(machine),
        "pcp": pcp_metrics(ev),
        "cma": {a.name: area_metrics(a) for a in machine.cma_areas},
        "counters": ev,
        "workload": engine.workload_metrics() | ({"pins_fail": pins_fail} if pins_fail else {}),
        "zones": {machine.zone_names[z]: zone_summary(machine, z) for z in range(machine.nr_zones)},
        "invariant_checks": checks,
        "trace": {"records": sink.written if sink else 0, "lost": TraceSink.lost(machine) if sink else 0,
                  "file": trace_path.name if trace_path is not None else None},
        "wall_s": round(time.perf_counter() - t0, 3),
    }
    if out_dir is not None:
        write_outputs(machine, metrics, out_dir)
        end_map = pageblock_map(machine)
        np.savez_compressed(out_dir / "pageblocks.npz", zone_names=np.array(machine.zone_names),
                            **{f"start_{k}": v for k, v in start_map.items()},
                            **{f"end_{k}": v for k, v in end_map.items()},
                            **{f"first_cma_{k}": v for k, v in (engine.map_before_cma or {}).items()})
        areas = [{"name": a.name, "base_pfn": a.base_pfn, "count": a.count} for a in machine.cma_areas]
        ranges = [{"t_ms": round(t / 1e6, 3), "area": ar, "pfn": pfn, "count": c, "outcome": o}
                  for t, ar, pfn, c, o in engine.cma_ranges]
        requests = [dict(r, device=d.spec.name, area=d.area.name) for d in engine.devices for r in d.results]
        (out_dir / "cma_ranges.json").write_text(json.dumps({"areas": areas, "ranges": ranges,
                                                             "requests": requests}) + "\n")
        write_jsonl(engine.busy_explained, out_dir / "explain.jsonl")
        if engine.timeline is not None:
            np.savez_compressed(out_dir / "timeline.npz", columns=np.array(TIMELINE_COLUMNS),
                                data=np.array(engine.timeline, dtype=np.int64).reshape(-1, len(TIMELINE_COLUMNS)))
            if engine.timeline_maps:
                keys = engine.timeline_maps[0][1].keys()
                np.savez_compressed(out_dir / "pageblocks_timeline.npz",
                                    t_ns=np.array([t for t, _ in engine.timeline_maps], dtype=np.int64),
                                    **{k: np.stack([mp[k] for _, mp in engine.timeline_maps]) for k in keys})
    return metrics


def zone_summary(m: Machine, z: int) -> dict:
    nr_free = vmstat.zone_nr_free(m, z)
    return {
        "managed": m.zone_field(z, mz.Z_MANAGED),
        "nr_free_pages": m.zone_field(z, mz.Z_NR_FREE),
        "nr_free_cma": m.zone_field(z, mz.Z_NR_FREE_CMA),
        "watermarks": {"min": m.zone_field(z, mz.Z_WMARK_MIN), "low": m.zone_field(z, mz.Z_WMARK_LOW),
                       "high": m.zone_field(z, mz.Z_WMARK_HIGH), "boost": m.zone_field(z, mz.Z_BOOST)},
        "extfrag_index_order9": vmstat.fragmentation_index(nr_free, 9),
        "unusable_index_order9": vmstat.unusable_index(nr_free, 9),
        "pageblocks": {mz.MIGRATETYPE_NAMES[t]: m.pageblock_types(z).count(t) for t in range(mz.MIGRATE_TYPES)},
    }


def write_outputs(m: Machine, metrics: dict, out_dir: Path) -> None:
    proc = out_dir / "proc"
    proc.mkdir(parents=True, exist_ok=True)
    (proc / "buddyinfo").write_text(vmstat.render_buddyinfo(m))
    (proc / "pagetypeinfo").write_text(vmstat.render_pagetypeinfo(m))
    (proc / "zoneinfo").write_text(vmstat.render_zoneinfo(m))
    (proc / "vmstat").write_text(vmstat.render_vmstat(m))
    for a in m.cma_areas:
        d = out_dir / "sys" / "kernel" / "mm" / "cma" / a.name
        d.mkdir(parents=True, exist_ok=True)
        for k, v in a.sysfs().items():
            (d / k).write_text(f"{v}\n")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
