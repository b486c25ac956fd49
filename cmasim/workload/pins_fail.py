"""The oracle's pins_fail experiment as a workload: phases of pinner load on one machine.

Kernel side: ../shared/oracle/tools/pins_fail.sh runs one `oracle-tool run -l LEAVE -F HEAD
-B -I -V -D DEADLINE -a ALIGN -s SIZES -n COUNT -t T -H HOLD -G GAP [-C] [-L]` per load, one
after another on a single boot, so kernel state (pageblock types, free lists) carries over
from phase to phase while each phase's fill is new. Per phase (oracle-tool.c cmd_run(),
run_attempts(), one_attempt()):

1. fill anonymous order-0 pages until LEAVE is free (cmasim.workload.fill.fill_anon);
2. drop HEADROOM of fill pages outside CMA (drop_outside_cma);
3. start the pinner threads (cmasim.workload.pinner, one pinner row per phase), wait warm_ms;
4. attempts, sizes interleaved (-I; `interleave = false`: all attempts of one size, then the
   next): with `churn` (-R, the lkml_pins set-up) drop a random run of the fill and touch it
   again; re-touch the dropped pages, drop HEADROOM outside CMA again,
   rescan the candidate list (prep_ms of simulated time pass meanwhile), cma_alloc(size,
   align) with the measurement window open (H_ALLOC_ACTIVE), release at once, wait
   interval_ms; no new attempt after deadline_s;
5. stop the pinners, let the last pins end, free the fill (process exit).

Per range tried the record has the time spent in it, its result and, for -EBUSY, the cause
(cmasim.mm.alloc_contig: BUSY_GAVE_UP "migration gave up" / BUSY_LEFT_BEHIND "skipped at
isolation") and whether the first busy page was still pinned at the test (the module's
WINDOW fin_pinned is "pinned by our pinners since the attempt started"; the model reports
the stricter "pinned at the test" and "skipped by the scan while pinned").
Simplification: the re-borrow is instantaneous and prep_ms then passes with pinners running.

THP fill (`machine.thp = "always"`, pins_fail.sh THP=always): the fill faults a THP per
2 MiB region with the vma_thp_gfp_mask() flags of `machine.thp_defrag` (default "madvise":
GFP_TRANSHUGE_LIGHT, no reclaim or compaction), 4 KiB pages where that fails; drops split
PMDs without freeing and re-touches fault THPs only into emptied regions
(cmasim.workload.fill, "THP fill"); the candidate list has one entry per mapped page. A pin
of any subpage pins the folio (mm/gup.c try_grab_folio(): the folio's pincount), so the
whole THP stays unmigratable while it lasts. Per attempt the record counts THPs migrated
whole (thp_migration_success) and split for want of an order-9 target (thp_split_page).
"""

from __future__ import annotations

import numpy as np

from cmasim.mm import mmzone as mz
from cmasim.gfp import vma_thp_gfp_mask
from cmasim.mm.cma import EBUSY, cma_alloc_steps, cma_release
from cmasim.scenario import PinLoad, PinsFailSpec, Scenario
from cmasim.workload.fill import (
    drop_outside_cma, drop_outside_cma_thp, fill_anon, fill_anon_thp, madv_dontneed_fill, release_anon,
    rescan_candidates, rescan_candidates_thp, touch_anon_pages, touch_anon_regions,
)


def fill_thp_gfp(sc: Scenario, policy) -> int:
    """The fill's THP fault flags: vma_thp_gfp_mask() of `machine.thp_defrag` for a VMA without
    MADV_HUGEPAGE (oracle-tool's mmap) when `machine.thp` is "always", else 0 (no THP faults:
    "madvise" needs MADV_HUGEPAGE, which the tool does not use). __GFP_CMA where the policy
    tags THP faults (Android)."""
    if sc.machine.thp_enabled() != "always":
        return 0
    return vma_thp_gfp_mask(sc.machine.thp_defrag) | (mz.GFP_CMA_ if "thp" in policy.gfp_cma_owners else 0)
from cmasim.workload.pinner import pinner_start


def pinner_rows(spec: PinsFailSpec) -> list[dict]:
    """One pinner table row per phase (started by the driver, so start_ns = -1). Every sleep
    (the hold, and the gap when there is one) ends `pin_wake_us` late: the wake-up latency of
    the guest, which keeps the page pinned that much longer (fitted to the kernel's pins/s:
    ~700 pins/s per thread at H = 1 ms is a 1.4 ms cycle for a 1.06 ms mean hold)."""
    rows = []
    wake = int(spec.pin_wake_us * 1000)
    for ld in spec.load_list():
        rows.append({"hold_ns": ld.hold_us * 1000 + wake, "gap_ns": ld.gap_us * 1000 + (wake if ld.gap_us else 0),
                     "longterm": ld.longterm,
                     "cma_only": False, "threads": ld.threads, "start_ns": -1,
                     "pick": mz.PICK_FILL if ld.any_fill else mz.PICK_CANDIDATES,
                     "jitter_ns": hold_jitter_ns(ld.hold_us, spec.hz)})
    return rows


def hold_jitter_ns(hold_us: int, hz: int) -> int:
    """cmaoracle.c do_pin(): usleep_range(H, H + H/8 + 1) below 20 ms; msleep(H/1000) above,
    which sleeps up to one jiffy more (kernel/time/timer.c msleep(): msecs_to_jiffies() + 1)."""
    if hold_us >= 20000:
        return 1_000_000_000 // hz
    return (hold_us // 8 + 1) * 1000


def _median(v):
    return float(np.median(v)) if len(v) else None


class PinsFail:
    """Drives `spec` on machine `m` (built with pinner_rows(spec)); `run()` returns the metrics."""

    def __init__(self, m, spec: PinsFailSpec, anon_gfp: int, tracer=None, thp_gfp: int = 0):
        self.m, self.spec, self.gfp, self.thp_gfp = m, spec, anon_gfp, thp_gfp
        self._out = np.zeros(2, dtype=np.int64)  # drop_outside_cma_thp(): pages, regions to re-touch
        self.downstream = tracer  # the engine's tracer (ftrace output, busy-range explanations)
        self.area = m.area(spec.area)
        self.dropped = 0
        self.dropped_regions = 0
        self.ranges: list[dict] = []

    # --- the fill's steps, 4 KiB or THP -----------------------------------------------------------
    def _fill(self) -> int:
        m, C = self.m, self.m.C
        if self.thp_gfp:
            return int(fill_anon_thp(m.S, C, self.spec.leave // mz.PAGE_SIZE, self.gfp, self.thp_gfp, m.n_pages))
        return int(fill_anon(m.S, C, self.spec.leave // mz.PAGE_SIZE, self.gfp, m.n_pages))

    def _drop(self) -> None:
        m, pages = self.m, self.spec.headroom // mz.PAGE_SIZE
        if self.thp_gfp:
            drop_outside_cma_thp(m.S, m.C, pages, self._out)
            self.dropped, self.dropped_regions = int(self._out[0]), int(self._out[1])
        else:
            self.dropped = int(drop_outside_cma(m.S, m.C, pages))

    def _retouch(self) -> None:
        m = self.m
        if self.thp_gfp:
            touch_anon_regions(m.S, m.C, self.gfp, self.thp_gfp, self.dropped, self.dropped_regions)
        else:
            touch_anon_pages(m.S, m.C, self.dropped, self.gfp)

    def _churn(self) -> None:
        """oracle-tool -R: MADV_DONTNEED a random run of `churn` of the fill, touch it again."""
        m, out = self.m, self._out
        madv_dontneed_fill(m.S, m.C, self.spec.churn // mz.PAGE_SIZE, False, out)
        touch_anon_regions(m.S, m.C, self.gfp, self.thp_gfp, int(out[0]), int(out[1]))

    def _rescan(self) -> int:
        m = self.m
        return int(rescan_candidates_thp(m.S, m.C) if self.thp_gfp else rescan_candidates(m.S, m.C))

    # --- time ---------------------------------------------------------------------------------
    def wait(self, ns: int) -> None:
        self.m.advance(self.m.now_ns + int(ns))
        if self.downstream:
            self.downstream("", "")  # drain the core's trace buffer

    # --- the tracer cma_alloc_steps calls after every alloc_contig_range() ---------------------
    def _tracer(self, event: str, fields: str) -> None:
        if self.downstream:
            self.downstream(event, fields)
        if event:
            return
        a, m = self.area, self.m
        now = m.now_ns
        gave, left, iso = a.busy_gave_up, a.busy_skipped, a.busy_isolation
        g0, l0, i0 = self._busy
        self._busy = (gave, left, iso)
        rec = {"ns": now - self._t_range, "ret": 0, "cause": None, "fin_pinned": False}
        self._t_range = now
        if (gave, left, iso) != (g0, l0, i0):
            rec["ret"] = EBUSY
            rec["cause"] = "gave_up" if gave > g0 else "left_behind" if left > l0 else "isolation"
            fin = a.last_busy[0]
            if 0 <= fin < m.n_pages:
                w = int(m.S[mz.NODE_W * fin + mz.F_OWNER])
                rec["fin_pinned"] = ((w >> mz.OW_PIN_SHIFT) & mz.OW_PIN_MASK) > 0
        self._cur.append(rec)

    # --- one attempt ----------------------------------------------------------------------------
    def attempt(self, mib: float, i: int) -> dict:
        m, C, spec = self.m, self.m.C, self.spec
        if spec.churn:
            self._churn()
        if spec.reborrow and spec.headroom:
            self._retouch()
            self._drop()
        self.wait(spec.prep_ms * 1e6)
        in_cma = self._rescan()
        free_cma = sum(m.zone_field(z, mz.Z_NR_FREE_CMA) for z in range(m.nr_zones))
        count = max(1, int(mib * 256))
        C[mz.H_ALLOC_ACTIVE] = 1
        C[mz.H_PINS_CMA_DURING] = 0
        held0 = int(C[mz.H_HELD_CMA])
        thp0 = (m.vm(mz.VM_THP_MIGRATION_SUCCESS), m.vm(mz.VM_THP_SPLIT_PAGE))
        C[mz.H_HELD_CMA_MAX] = held0
        self._cur: list[dict] = []
        self._busy = (self.area.busy_gave_up, self.area.busy_skipped, self.area.busy_isolation)
        t0 = self._t_range = m.now_ns
        gen = cma_alloc_steps(m, self.area, count, spec.align_order, self._tracer)
        while True:
            try:
                self.wait(next(gen))
            except StopIteration as stop:
                pfn, ret = stop.value
                break
        C[mz.H_ALLOC_ACTIVE] = 0
        (self.area.latencies_ns if ret == 0 else self.area.failed_latencies_ns).append(m.now_ns - t0)
        rec = {"size_mib": mib, "try": i, "ok": int(ret == 0), "err": int(ret), "ns": m.now_ns - t0,
               "windows": self._cur, "held_cma_start": held0, "held_cma_max": int(C[mz.H_HELD_CMA_MAX]),
               "pins_cma_during": int(C[mz.H_PINS_CMA_DURING]), "fill_pages_in_cma": in_cma,
               "cma_free_pages": free_cma, "thp_migrated": m.vm(mz.VM_THP_MIGRATION_SUCCESS) - thp0[0],
               "thp_split": m.vm(mz.VM_THP_SPLIT_PAGE) - thp0[1]}
        if ret == 0:
            cma_release(m, self.area, pfn, count, self.downstream)
        self.wait(spec.interval_ms * 1e6)
        return rec

    # --- one phase --------------------------------------------------------------------------------
    def phase(self, idx: int, ld: PinLoad) -> dict:
        m, C, spec = self.m, self.m.C, self.spec
        faults0 = (m.vm(mz.VM_THP_FAULT_ALLOC), m.vm(mz.VM_THP_FAULT_FALLBACK))
        filled = self._fill()
        thp_faults = {"fault_alloc": m.vm(mz.VM_THP_FAULT_ALLOC) - faults0[0],
                      "fault_fallback": m.vm(mz.VM_THP_FAULT_FALLBACK) - faults0[1]}
        self.dropped = self.dropped_regions = 0
        if spec.headroom:
            self._drop()
        b = int(C[mz.H_PINNERS]) + idx * mz.PNS
        pins0 = (int(C[b + mz.PN_PINS]), int(C[b + mz.PN_PINNED_IN_CMA]))
        t_start = m.now_ns
        if ld.threads:
            pinner_start(C, idx, t_start)
        self.wait(spec.warm_ms * 1e6)
        attempts = []
        deadline = t_start + int(spec.deadline_s * 1e9)
        order = ([(i, mib) for i in range(spec.count) for mib in spec.sizes_mib] if spec.interleave
                 else [(i, mib) for mib in spec.sizes_mib for i in range(spec.count)])
        for i, mib in order:
            if m.now_ns > deadline:
                break
            attempts.append(self.attempt(mib, i))
        # stop_pins: threads exit at their next wake-up; let the last holds end.
        C[b + mz.PN_END_NS] = max(1, m.now_ns)
        self.wait(2 * (ld.hold_us * 1000 + hold_jitter_ns(ld.hold_us, spec.hz)) + ld.gap_us * 1000 + 1_000_000)
        pins = {"pins": int(C[b + mz.PN_PINS]) - pins0[0], "pages_in_cma": int(C[b + mz.PN_PINNED_IN_CMA]) - pins0[1],
                "misses": int(C[b + mz.PN_MISSES]), "fails": int(C[b + mz.PN_FAILS])}
        release_anon(m.S, C)
        self.wait(spec.phase_gap_s * 1e9)
        out = {"name": ld.name, "fill_pages": filled, "pins": pins, "attempts": attempts,
                "sizes": {str(s): summarize([a for a in attempts if a["size_mib"] == s]) for s in spec.sizes_mib}}
        if self.thp_gfp:
            thp_faults["fault_alloc_end"] = m.vm(mz.VM_THP_FAULT_ALLOC) - faults0[0]
            out["thp"] = thp_faults
        return out

    def run(self) -> dict:
        phases = [self.phase(i, ld) for i, ld in enumerate(self.spec.load_list())]
        return {"phases": phases}


def summarize(att: list[dict]) -> dict:
    """Per phase and size: the oracle table's columns (pins_fail_table.py)."""
    wins = [w for a in att for w in a["windows"]]
    busy = [w for w in wins if w["ret"] == EBUSY]
    errs: dict[str, int] = {}
    for a in att:
        if not a["ok"]:
            errs[str(a["err"])] = errs.get(str(a["err"]), 0) + 1
    first = [a["windows"][0]["ns"] / 1e6 for a in att if a["windows"]]
    later = [w["ns"] / 1e6 for a in att for w in a["windows"][1:]]
    ok_ms = [a["ns"] / 1e6 for a in att if a["ok"]]
    fail_ms = [a["ns"] / 1e6 for a in att if not a["ok"]]
    return {
        "attempts": len(att), "ok": sum(a["ok"] for a in att), "fail": sum(1 - a["ok"] for a in att),
        "errors": errs, "ranges": len(wins), "busy_retries": len(busy),
        "busy_gave_up": sum(w["cause"] == "gave_up" for w in busy),
        "busy_left_behind": sum(w["cause"] == "left_behind" for w in busy),
        "busy_still_pinned": sum(w["fin_pinned"] for w in busy),
        "ok_ms_med": _median(ok_ms), "fail_ms_med": _median(fail_ms),
        "first_range_ms_med": _median(first), "later_range_ms_med": _median(later),
        "held_cma_start_med": _median([a["held_cma_start"] for a in att]),
        "held_cma_start_max": max((a["held_cma_start"] for a in att), default=0),
        "held_cma_max": max((a["held_cma_max"] for a in att), default=0),
        "pins_cma_during_med": _median([a["pins_cma_during"] for a in att]),
        "fill_pages_in_cma_med": _median([a["fill_pages_in_cma"] for a in att]),
        "thp_migrated": sum(a.get("thp_migrated", 0) for a in att),
        "thp_split": sum(a.get("thp_split", 0) for a in att),
    }
