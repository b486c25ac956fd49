"""The scenario timeline: compiled churn in batches, Python devices in between.

Devices (cma_alloc/cma_release callers) act rarely and follow complex, Python-side rules,
so the engine runs the compiled workload up to the next device event, then lets the
device act at that simulated time. Pinner threads, kswapd, kcompactd and the vmstat
worker run inside the compiled core on the same clock (cmasim.clock). A cma_alloc() whose
policy sleeps between retry rounds is suspended, and the world runs during the sleep.

Devices draw from their own numpy Generator seeded from (seed, device index), so runs are
deterministic. This module never prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from cmasim.gfp import GFP_HIGHUSER_MOVABLE, parse_gfp
from cmasim.machine import Machine
from cmasim.mm import mmzone as mz
from cmasim.mm.cma import CmaArea, cma_alloc_steps, cma_release
from cmasim.explain import attribute_busy
from cmasim.pageblocks import pageblock_map
from cmasim.scenario import DeviceSpec, Scenario
from cmasim.trace.ftrace import TraceSink
from cmasim.workload.churn import W_ALLOC_FAIL, W_ALLOCS, W_EVENTS, W_FREES, churn, churn_params
from cmasim.workload.fill import fill_anon, recycle_anon

CHUNK = 250_000
NEVER = 1 << 62
SAMPLE_NS = 10_000_000  # the engine samples zone counters every 10 ms of simulated time
MAP_SNAPSHOTS = 8  # run --timeline: pageblock maps kept for the report's small multiples
# run --timeline: columns of each sample (pages; the last NR_PAGE_ORDERS are free blocks per order)
TIMELINE_COLUMNS = ("t_ns", "nr_free_pages", "nr_free_cma", "cma_taken", "cma_borrowed") + tuple(
    f"free_order{o}" for o in range(mz.NR_PAGE_ORDERS))


@dataclass
class Device:
    spec: DeviceSpec
    area: CmaArea
    rng: np.random.Generator
    next_request: int
    requests: int = 0
    held: list[tuple[int, int, int]] = field(default_factory=list)  # (release time, pfn, count)
    gen: object = None  # a suspended cma_alloc_steps generator
    gen_wake: int = NEVER
    gen_t0: int = 0
    gen_count: int = 0
    gen_ranges0: int = 0  # Engine.cma_ranges entries before the request in flight
    results: list[dict] = field(default_factory=list)

    def done_requesting(self) -> bool:
        return self.spec.count > 0 and self.requests >= self.spec.count

    def next_time(self) -> int:
        t = NEVER
        if self.gen is not None:
            t = self.gen_wake
        elif not self.done_requesting():
            t = self.next_request
        if self.held:
            t = min(t, min(h[0] for h in self.held))
        return t


class Engine:
    def __init__(self, machine: Machine, sc: Scenario, seed: int, sink: TraceSink | None = None):
        self.m = machine
        self.sc = sc
        self.seed = seed
        self.sink = sink
        wl = sc.workload
        self.W = None
        self.churn_total = 0
        if wl.churn is not None:
            c = wl.churn
            self.W = churn_params(machine, target_usage=c.target_usage, p_order0=c.order0, p_order13=c.order1_3,
                                  high_order=c.high_order, p_movable=c.movable, p_unmovable=c.unmovable,
                                  p_file=c.file, p_file_dirty=c.file_dirty, dt_ns=c.event_interval_ns,
                                  gfp={"high_order_movable": parse_gfp(c.thp_gfp)},
                                  gfp_cma_owners=machine.policy.gfp_cma_owners, p_thp_gfp_cma=c.thp_gfp_cma)
            self.churn_total = c.events
        if wl.duration_s is not None:
            self.t_end = int(wl.duration_s * 1e9)
            if wl.churn is not None:
                self.churn_total = self.t_end // wl.churn.event_interval_ns
        elif wl.churn is not None:
            self.t_end = self.churn_total * wl.churn.event_interval_ns
        else:
            self.t_end = 0  # a driver-timed workload (workload.pins_fail) runs after the engine
        self.devices = [Device(d, machine.area(d.area), np.random.default_rng([seed, 1000 + i]),
                               int(d.start_ms * 1e6)) for i, d in enumerate(wl.device)]
        self.fill_done = wl.fill is None
        self.filled_pages = 0
        self.next_sample = 0
        self.samples: list[tuple[int, int, int]] = []  # (t, nr_free_pages, nr_free_cma)
        self.sample_ns = SAMPLE_NS
        self._next_metric_sample = 0
        self.timeline: list[list[int]] | None = None  # with timeline(): one row of TIMELINE_COLUMNS per sample
        # With timeline() and keep_maps: (t, cmasim.pageblocks map) at most MAP_SNAPSHOTS times, evenly spaced.
        self.timeline_maps: list[tuple[int, dict]] = []
        self._next_map = 0
        self.cma_ranges: list[tuple[int, str, int, int, str]] = []  # (t, area, pfn, count, "ok" | "busy")
        self.busy_explained: list[dict] = []  # cmasim.explain records, one per busy range
        self.keep_maps = False  # run.py sets it when writing an output folder
        self.map_before_cma: dict | None = None  # cmasim.pageblocks map just before the first cma_alloc()
        # Anonymous fill and re-touch carry __GFP_CMA where the policy tags anonymous memory.
        self.anon_gfp = GFP_HIGHUSER_MOVABLE | (mz.GFP_CMA_ if {"anon", "anon0"} & set(machine.policy.gfp_cma_owners)
                                                   else 0)

    # --- tracing ----------------------------------------------------------------------------------
    def tracer(self, event: str, fields: str) -> None:
        """The tracepoint hook Python-side kernel code calls (cma_*); also records the ranges
        cma_alloc() found busy, from its cma_alloc_busy_retry events, for the report."""
        if event == "cma_alloc_busy_retry":
            f = dict(kv.split("=", 1) for kv in fields.split() if "=" in kv)
            start, count = int(f["pfn"], 16), int(f["count"])
            self.cma_ranges.append((self.m.now_ns, f["name"], start, count, "busy"))
            fin, cause = self.m.area(f["name"]).last_busy
            self.busy_explained.append(attribute_busy(self.m, f["name"], start, count, fin, cause, self.m.now_ns))
        if self.sink is None:
            return
        self.sink.flush(self.m)
        if event:
            self.sink.line(self.m, event, fields)

    def flush(self) -> None:
        if self.sink is not None:
            self.sink.flush(self.m)

    # --- main loop ------------------------------------------------------------------------------------
    def run(self, progress: Callable[[int, int], None] | None = None) -> None:
        m = self.m
        while m.now_ns < self.t_end:
            t_next = self.t_end
            if not self.fill_done:
                t_next = min(t_next, int(self.sc.workload.fill.start_ms * 1e6))
            for d in self.devices:
                t_next = min(t_next, d.next_time())
            t_next = min(t_next, self.next_sample)
            self._run_world_until(t_next)
            if m.now_ns >= self.next_sample:
                self._sample()
            if not self.fill_done and m.now_ns >= int(self.sc.workload.fill.start_ms * 1e6):
                self._fill()
            for d in self.devices:
                if d.next_time() <= m.now_ns:
                    self._device_act(d)
            if progress:
                progress(min(m.now_ns, self.t_end), self.t_end)
        self.flush()

    def _run_world_until(self, t: int) -> None:
        m = self.m
        if self.W is not None:
            while m.now_ns < t:
                left = self.churn_total - int(self.W[W_EVENTS])
                if left <= 0:
                    break
                churn(m.S, m.C, self.W, min(CHUNK, left), t)
                self.flush()
        if m.now_ns < t:
            m.advance(t)
            self.flush()

    def record_timeline(self, interval_ns: int) -> None:
        """Sample TIMELINE_COLUMNS every `interval_ns` of simulated time (run --timeline)."""
        self.sample_ns = min(SAMPLE_NS, interval_ns)
        self.timeline = []
        self._map_every = max(interval_ns, -(-self.t_end // MAP_SNAPSHOTS))

    def _sample(self) -> None:
        m = self.m
        free = sum(m.zone_field(z, mz.Z_NR_FREE) for z in range(m.nr_zones))
        cma = sum(m.zone_field(z, mz.Z_NR_FREE_CMA) for z in range(m.nr_zones))
        if self.timeline is not None:
            orders = [sum(m.zone_field(z, mz.Z_AREA + o) for z in range(m.nr_zones)) for o in range(mz.NR_PAGE_ORDERS)]
            taken = sum(a.count - a.available_count for a in m.cma_areas)  # bitmap bits set: cma_alloc buffers
            total = sum(a.count for a in m.cma_areas)
            self.timeline.append([m.now_ns, free, cma, taken, max(0, total - cma - taken)] + orders)
            if self.keep_maps and m.now_ns >= self._next_map and len(self.timeline_maps) < MAP_SNAPSHOTS:
                self.timeline_maps.append((m.now_ns, pageblock_map(m)))
                self._next_map = m.now_ns + self._map_every
        if m.now_ns >= self._next_metric_sample:  # the metrics' own 10 ms samples, timeline or not
            self.samples.append((m.now_ns, free, cma))
            self._next_metric_sample = m.now_ns + SAMPLE_NS
        self.next_sample = m.now_ns + self.sample_ns

    def _fill(self) -> None:
        spec = self.sc.workload.fill
        target = spec.free // mz.PAGE_SIZE
        self.filled_pages = int(fill_anon(self.m.S, self.m.C, target, self.anon_gfp, self.m.n_pages))
        self.fill_done = True
        self.flush()

    # --- devices -----------------------------------------------------------------------------------------
    def _request_pages(self, d: Device) -> int:
        s = d.spec
        if s.size_choices_mib:
            mib = s.size_choices_mib[d.requests % len(s.size_choices_mib)]
        elif len(s.size_mib) == 2:
            mib = float(d.rng.uniform(s.size_mib[0], s.size_mib[1]))
        else:
            mib = s.size_mib[0]
        return max(1, int(mib * 256))

    def _device_act(self, d: Device) -> None:
        m = self.m
        for h in [h for h in d.held if h[0] <= m.now_ns]:
            cma_release(m, d.area, h[1], h[2], self.tracer)
            d.held.remove(h)
        if d.gen is not None:
            if d.gen_wake <= m.now_ns:
                self._step(d)
            return
        if d.done_requesting() or d.next_request > m.now_ns:
            return
        s = d.spec
        if s.recycle_mib:
            recycle_anon(m.S, m.C, int(s.recycle_mib * 256), self.anon_gfp)
        d.gen_count = self._request_pages(d)
        d.requests += 1
        gap = s.interval_ms * 1e6
        if s.jitter:
            gap *= float(d.rng.uniform(0.5, 1.5))
        d.next_request = m.now_ns + int(gap)
        d.gen_t0 = m.now_ns
        d.gen_ranges0 = len(self.cma_ranges)
        if self.map_before_cma is None and self.keep_maps:
            self.map_before_cma = pageblock_map(m)
        d.gen = cma_alloc_steps(m, d.area, d.gen_count, s.align_order, self.tracer)
        self._step(d)

    def _step(self, d: Device) -> None:
        m = self.m
        try:
            ns = next(d.gen)
            d.gen_wake = m.now_ns + ns
            return
        except StopIteration as stop:
            pfn, ret = stop.value
        latency = m.now_ns - d.gen_t0
        (d.area.latencies_ns if ret == 0 else d.area.failed_latencies_ns).append(latency)
        busy = sum(1 for r in self.cma_ranges[d.gen_ranges0:] if r[4] == "busy")
        d.results.append({"t_ms": round(d.gen_t0 / 1e6, 3), "pages": d.gen_count, "ret": ret,
                          "latency_ms": round(latency / 1e6, 3), "busy_retries": busy})
        d.gen = None
        d.gen_wake = NEVER
        if ret == 0:
            self.cma_ranges.append((m.now_ns, d.area.name, pfn, d.gen_count, "ok"))
            release_at = m.now_ns + int(d.spec.hold_ms * 1e6)
            if d.spec.hold_ms == 0:
                cma_release(m, d.area, pfn, d.gen_count, self.tracer)
            else:
                d.held.append((release_at, pfn, d.gen_count))

    # --- results --------------------------------------------------------------------------------------------
    def workload_metrics(self) -> dict:
        m = self.m
        out: dict = {}
        if self.W is not None:
            out["churn"] = {"events": int(self.W[W_EVENTS]), "allocs": int(self.W[W_ALLOCS]),
                            "frees": int(self.W[W_FREES]), "alloc_fail": int(self.W[W_ALLOC_FAIL])}
        out["live_blocks"] = int(m.C[mz.H_NLIVE])
        out["live_pages"] = int(m.C[mz.H_LIVE_PAGES])
        out["usage"] = round(int(m.C[mz.H_LIVE_PAGES]) / m.n_pages, 6)
        if self.sc.workload.fill is not None:
            out["fill_pages"] = self.filled_pages
        pins = []
        b = int(m.C[mz.H_PINNERS])
        for i in range(int(m.C[mz.H_NPINNERS])):
            r = m.C[b + i * mz.PNS: b + (i + 1) * mz.PNS]
            pins.append({"pins": int(r[mz.PN_PINS]), "misses": int(r[mz.PN_MISSES]), "fails": int(r[mz.PN_FAILS]),
                         "pinned_in_cma": int(r[mz.PN_PINNED_IN_CMA])})
        if pins:
            out["pinners"] = pins
        if self.devices:
            out["devices"] = [{"name": d.spec.name, "area": d.area.name, "requests": d.requests,
                               "results": d.results[:200]} for d in self.devices]
        out["timers_lost"] = int(m.C[mz.H_TIMER_LOST])
        cma_total = sum(a.count for a in m.cma_areas)
        if self.samples:
            free = np.array([s[1] for s in self.samples], dtype=np.float64)
            cma = np.array([s[2] for s in self.samples], dtype=np.float64)
            out["samples"] = len(self.samples)
            out["nr_free_pages_mean"] = round(float(free.mean()), 1)
            out["nr_free_cma_mean"] = round(float(cma.mean()), 1)
            if cma_total:
                out["cma_idle_share"] = round(float(cma.mean()) / cma_total, 4)
                # Free memory outside CMA: what non-CMA allocations can actually use.
                out["non_cma_free_mean"] = round(float((free - cma).mean()), 1)
        return out
