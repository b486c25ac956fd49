"""Replay a kernel trace's page allocations and frees through the simulator.

The trace's successful `mm_page_alloc` events and its `mm_page_free` events become core
events (time, op, cpu, order, gfp, handle); the simulator chooses its own pages, and a free
refers to whatever block the simulator gave for that kernel pfn (a map kernel pfn ->
handle). `mm_page_free_batched` is not a second free: the kernel emits it for a page that
already had its `mm_page_free` (free_pages_prepare() traces every free; the batched event
comes later, when free_unref_folios() commits the page to the per-CPU list), so it is
counted, not replayed. Every other event is the kernel's own account of what happened and
feeds `cmasim.trace.fidelity`.

Frees of pages the trace never allocated are pages allocated before the trace started.
With a snapshot they are replayed: the snapshot machine holds every non-free page as an
allocated order-0 page "of the past" (`cmasim.trace.snapshot.SnapState`); such a free takes
an aligned run of them in a pageblock of the kernel pageblock's type (learned from the
trace's own drain/zone_locked events), keeping frees from one kernel pageblock in one
simulated pageblock, and frees it. A free of order MAX_PAGE_ORDER of an unknown pfn is
memory being onlined (hot-plug or virtio-mem: __free_pages_core() of a fresh
MAX_ORDER block); it takes offline headroom pageblocks, so managed pages grow and the
watermarks are recomputed as the kernel does. All of these are counted in the report, with
the first line numbers of each kind, and so is every record that cannot be used.

Large traces run in batches (`BATCH` events per core call); the trace is read chunk by
chunk from the columnar cache (one parse, then two cheap passes: a pre-scan for hot-plug
headroom and pageblock types, then the replay).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from cmasim import engine_core as ec
from cmasim.gfp import GFP_KERNEL
from cmasim.machine import Machine
from cmasim.mm import mmzone as mz
from cmasim.mm import vmstat
from cmasim.policy import Policy
from cmasim.trace import parser as P
from cmasim.trace import replay_core as RC
from cmasim.trace.columnar import CachedTrace
from cmasim.trace.snapshot import Snapshot, SnapState, build_machine, machine_config

BATCH = 1 << 16
TICK_NS = 1_000_000_000
TRACE_CAPACITY = 1 << 17
KEEP_BYTES = 256 << 20  # records kept in memory between the replay's passes
MAX_ORDER = mz.MAX_PAGE_ORDER
NO_WORKER = -1  # vmstat_phase_ns: the vmstat worker never runs (decay_phase()'s probe)
DEFAULT_WORKER = -2  # vmstat_phase_ns: first run one second after the first event, no inference

# run_events() takes a separate handles array in the committed core (S, C, ev, handles, i0);
# the reworked core keeps handles inside S (LIVE[h]) and takes (S, C, ev, i0).
_RUN = ec.run_events
_RUN_PARAMS = list(inspect.signature(getattr(_RUN, "py_func", _RUN)).parameters)
HANDLES_IN_STATE = "handles" not in _RUN_PARAMS
# Pre-trace frees below MAX_ORDER replayed inside the compiled translation pass (False: each one
# in Python, pretrace_free(); the same events and state, tests/test_replay.py compares the two).
COMPILED_PRETRACE = True


class Anomalies:
    """Counts per kind with the first few input line numbers."""

    def __init__(self, max_examples: int = 5):
        self.max_examples = max_examples
        self.count: dict[str, int] = {}
        self.lines: dict[str, list[int]] = {}

    def add(self, kind: str, line: int, n: int = 1) -> None:
        self.count[kind] = self.count.get(kind, 0) + n
        ex = self.lines.setdefault(kind, [])
        if len(ex) < self.max_examples:
            ex.append(int(line))

    def to_dict(self) -> dict:
        return {"count": dict(sorted(self.count.items())), "first_lines": dict(sorted(self.lines.items()))}


@dataclass
class KernelCounts:
    """The kernel's own events, counted from the trace."""

    allocs: int = 0
    allocs_failed: int = 0
    frees: int = 0
    frees_batched: int = 0
    refill_blocks: int = 0  # mm_page_alloc_zone_locked percpu_refill=1
    buddy_blocks: int = 0  # mm_page_alloc_zone_locked percpu_refill=0
    pcpu_drain: int = 0
    extfrag: int = 0
    extfrag_change_ownership: int = 0
    alloc_pages: int = 0
    free_pages: int = 0

    def add_counts(self, kc: np.ndarray) -> None:
        """Add prescan's counts (`replay_core.prescan_chunk`, KC_* order): the record loop that
        passes over every record anyway counts them, instead of a numpy pass per kind here."""
        for name, v in zip(RC.KC_NAMES, kc.tolist()):
            setattr(self, name, getattr(self, name) + v)


@dataclass
class SimCounts:
    """The simulator's tracepoint records for the same requests (same semantics per event)."""

    allocs: int = 0
    allocs_failed: int = 0
    frees: int = 0
    refill_blocks: int = 0
    buddy_blocks: int = 0
    pcpu_drain: int = 0
    extfrag: int = 0
    extfrag_change_ownership: int = 0
    records: int = 0

    def add_records(self, r: np.ndarray) -> None:
        # one comparison per kind counted (on a contiguous copy of the kind column), then the
        # rows of that kind only
        k = np.ascontiguousarray(r[:, 0])
        self.records += len(r)
        a = r[k == mz.TR_MM_PAGE_ALLOC, 3]
        self.allocs += int(np.count_nonzero(a >= 0))
        self.allocs_failed += int(np.count_nonzero(a < 0))
        self.frees += int(np.count_nonzero(k == mz.TR_MM_PAGE_FREE))
        zl = r[k == mz.TR_MM_PAGE_ALLOC_ZONE_LOCKED, 6]
        self.refill_blocks += int(np.count_nonzero(zl == 1))
        self.buddy_blocks += int(np.count_nonzero(zl == 0))
        self.pcpu_drain += int(np.count_nonzero(k == mz.TR_MM_PAGE_PCPU_DRAIN))
        ef = r[k == mz.TR_MM_PAGE_ALLOC_EXTFRAG, 8]
        self.extfrag += len(ef)
        self.extfrag_change_ownership += int(np.count_nonzero(ef == 1))


@dataclass
class ReplayResult:
    trace: str
    policy: str
    flavour: str
    parse: dict
    from_cache: bool
    kernel: KernelCounts
    sim: SimCounts
    anomalies: Anomalies
    replayed: dict
    machine: Machine
    state: SnapState | None
    snapshot: Snapshot | None
    wall_s: float
    sim_counters: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"trace": self.trace, "policy": self.policy, "flavour": self.flavour,
                "parse": self.parse, "from_cache": self.from_cache,
                "kernel": dataclasses.asdict(self.kernel), "sim": dataclasses.asdict(self.sim),
                "replayed": self.replayed, "anomalies": self.anomalies.to_dict(),
                "sim_counters": self.sim_counters, "notes": self.notes, "wall_s": round(self.wall_s, 3)}


class _Translation:
    """The state of the compiled translation pass (replay_core.translate_chunk): kmap (kernel
    head pfn -> handle, a key-value table; the block's order in horder[handle]), the handle
    allocator (ids freed in a batch are reused only in later batches), the event buffer,
    counters and anomalies."""

    def __init__(self, cap: int):
        self.cap = cap
        self.kmap = RC.kv_new(1024)
        self.horder = np.empty(cap, dtype=np.int64)  # written when its handle enters kmap
        # written before they are read (the free stack and pending list up to their counts, the
        # events up to CTL_NROWS), so not cleared: a warm process gets them from freed memory
        self.free = np.empty(cap, dtype=np.int64)
        self.pending = np.empty(cap, dtype=np.int64)
        self.ev = np.empty((2 * BATCH, ec.EV_COLS), dtype=np.int64)
        self.ctl = np.zeros(RC.CTL_SIZE, dtype=np.int64)
        self.an_count = np.zeros(len(RC.AN_NAMES), dtype=np.int64)
        self.an_lines = np.zeros((len(RC.AN_NAMES), RC.AN_EXAMPLES), dtype=np.int64)

    def reserve(self, n: int) -> None:
        """Room for n more records: two events each, one kmap key each (table at most half full)."""
        self.kmap = RC.kv_grow(self.kmap, int(self.ctl[RC.CTL_HT_N]), n)
        need = int(self.ctl[RC.CTL_NROWS]) + 2 * n
        if need > len(self.ev):
            ev = np.empty((max(need, 2 * len(self.ev)), ec.EV_COLS), dtype=np.int64)
            nr = int(self.ctl[RC.CTL_NROWS])
            ev[:nr] = self.ev[:nr]
            self.ev = ev

    def handle(self) -> int:
        h = int(RC.handle_get(self.free, self.ctl, self.cap))
        if h < 0:
            raise RuntimeError("out of replay handles (more live allocations than simulated pages)")
        return h

    def release(self, h: int) -> None:
        self.pending[self.ctl[RC.CTL_PEND_N]] = h
        self.ctl[RC.CTL_PEND_N] += 1

    def row(self, *ev: int) -> None:
        r = int(self.ctl[RC.CTL_NROWS])
        self.ev[r] = ev
        self.ctl[RC.CTL_NROWS] = r + 1

    def anomaly(self, kind: int, line: int) -> None:
        c = int(self.an_count[kind])
        if c < RC.AN_EXAMPLES:
            self.an_lines[kind, c] = line
        self.an_count[kind] = c + 1

    def anomalies(self) -> Anomalies:
        an = Anomalies(RC.AN_EXAMPLES)
        for k, name in enumerate(RC.AN_NAMES):
            c = int(self.an_count[k])
            if c:
                an.count[name] = c
                an.lines[name] = self.an_lines[k, :min(c, RC.AN_EXAMPLES)].tolist()
        return an


class _Engine:
    """run_events() behind either core API; handles live in S (new core) or in an array."""

    def __init__(self, m: Machine):
        self.m = m
        if HANDLES_IN_STATE:
            m.C[mz.H_LIVE_DENSE] = 0
            self.cap = m.n_pages
            self.arr = None
        else:
            self.cap = max(1 << 16, m.n_pages)
            self.arr = np.full(self.cap, -1, dtype=np.int64)

    def attach(self, h: int, p: int) -> None:
        """Handle h refers to allocated block p (used for blocks the trace did not allocate)."""
        m = self.m
        if HANDLES_IN_STATE:
            m.S[int(m.C[mz.H_LIVE]) + h] = p
            m.S[int(m.C[mz.H_HANDLE]) + p] = h
            order = int(m.S[mz.NODE_W * p + mz.F_PINFO]) & mz.PI_ORDER_MASK
            m.C[mz.H_LIVE_PAGES] += 1 << order
        else:
            self.arr[h] = p

    def run(self, ev: np.ndarray, i: int) -> int:
        if HANDLES_IN_STATE:
            return int(_RUN(self.m.S, self.m.C, ev, i))
        return int(_RUN(self.m.S, self.m.C, ev, self.arr, i))

    def skipped(self) -> int:
        return int(self.m.C[getattr(mz, "H_SKIPPED", getattr(ec, "H_SKIPPED", 26))])


def _set_owner(m: Machine, p: int, mt: int) -> None:
    from cmasim.mm.folio import default_owner

    m.S[mz.NODE_W * p + mz.F_OWNER] = default_owner(mt)


def default_machine(policy: Policy, nr_cpus: int, trace_capacity: int, seed: int = 1,
                    gib: float = 4.0) -> Machine:
    """Without a snapshot: DMA32 (up to 3 GiB) + Normal, all free (boot state)."""
    pages = int(gib * (1 << 18)) // 1024 * 1024
    dma32 = min(pages // 2, 786432) // 1024 * 1024
    return Machine(machine_config([("DMA32", dma32), ("Normal", pages - dma32)], nr_cpus, trace_capacity),
                   policy, seed)


def prescan(chunks, snap: Snapshot | None, zones_of: Callable | None = None
            ) -> tuple[dict[str, int], dict[int, int], dict]:
    """Hot-plug headroom per zone (pages of MAX_ORDER frees of never-allocated pfns) and the
    first migratetype seen per kernel pageblock (drain and zone_locked events).

    Also counts the kernel's own events (`info["kernel_counts"]`, for KernelCounts).
    The record loops are compiled (`replay_core.prescan_chunk`; the pageblock types `first_types`).
    `zones_of(a)`: the snapshot zone of each record of chunk `a` (default: computed here)."""
    kpb_type: dict[int, int] = {}
    maxcpu = 0
    has_snap = int(snap is not None)
    headroom_pages = np.zeros(max(1, len(snap.zones) if snap is not None else 1), dtype=np.int64)
    counts = np.zeros(2, dtype=np.int64)  # allocations at pfns the snapshot has no zone for; live pfns
    kc = np.zeros(len(RC.KC_NAMES), dtype=np.int64)  # the kernel's own events (KernelCounts)
    last_kind = np.full(64, -1, dtype=np.int64)  # cpu -> kind of its previous event (-1: none)
    last_pid = np.zeros(64, dtype=np.int64)
    live = RC.kv_new(1024)
    bg_drains: list[tuple[int, int]] = []  # (time, cpu) of drain bursts no free on that CPU set off
    t0 = None
    out_pb = out_mt = np.empty(0, dtype=np.int64)  # first_types' output, grown to the largest chunk
    for a in chunks:
        if not len(a):
            continue
        a = np.ascontiguousarray(a, dtype=np.int64)
        cmax = int(a[:, P.C_CPU].max())
        maxcpu = max(maxcpu, cmax)
        if t0 is None:
            t0 = int(a[0, P.C_TIME])
        if cmax >= len(last_kind):
            grow = 2 * cmax + 2 - len(last_kind)
            last_kind = np.concatenate([last_kind, np.full(grow, -1, dtype=np.int64)])
            last_pid = np.concatenate([last_pid, np.zeros(grow, dtype=np.int64)])
        # the first migratetype of each kernel pageblock (drain and zone_locked records), in trace order
        if len(out_pb) < len(a):
            out_pb, out_mt = np.empty(len(a), dtype=np.int64), np.empty(len(a), dtype=np.int64)
        m = RC.first_types(a, out_pb, out_mt)
        for kp, mt in zip(out_pb[:m].tolist(), out_mt[:m].tolist()):
            kpb_type.setdefault(kp, mt)
        zones = ((zones_of(a) if zones_of is not None else snap.zones_of_kernel_pfns(a[:, P.C_PFN]))
                 if snap is not None else np.full(len(a), -1, dtype=np.int64))
        live = RC.kv_grow(live, int(counts[1]), len(a))
        bg = np.zeros(len(a), dtype=np.int8)
        RC.prescan_chunk(a, zones, has_snap, last_kind, last_pid, bg, live, headroom_pages,
                         counts, MAX_ORDER, kc)
        w = np.flatnonzero(bg)
        bg_drains += zip(a[w, P.C_TIME].tolist(), a[w, P.C_CPU].tolist())
    headroom = {snap.zones[z].name: int(v) for z, v in enumerate(headroom_pages.tolist()) if v} if snap else {}
    return headroom, kpb_type, {"max_cpu": maxcpu, "bg_drains": bg_drains, "t0": t0, "outside": int(counts[0]),
                                "kernel_counts": kc}


def snapshot_mismatch(snap: Snapshot, info: dict) -> list[str]:
    """Signs that the /proc snapshot was not taken on the machine that wrote the trace."""
    out = []
    if info["max_cpu"] + 1 > snap.nr_cpus:
        out.append(f"the trace has events of CPU {info['max_cpu']}, the snapshot only {snap.nr_cpus} CPUs")
    if info.get("outside"):
        out.append(f"{info['outside']:,} allocations are at pfns outside every zone of the snapshot")
    return out


def learn_pageblock_types(ev: np.ndarray, kpb_type: dict[int, int], movable_exact: bool = True) -> int:
    """Pageblock types the trace shows through per-CPU round trips; adds them to `kpb_type`.

    A page freed to a per-CPU list and allocated again from that list shows the list it sat
    on: free_frozen_pages() puts it on the list of get_pfnblock_migratetype() (types above
    RECLAIMABLE on MOVABLE's), and __rmqueue_pcplist() hands it out only to a request of that
    list's migratetype. So when the next event of a freed pfn is an mm_page_alloc of the same
    order (no zone_locked, drain or extfrag of it in between: it never went back to the buddy),
    the allocation's migratetype is its pageblock's type at the free -- except MOVABLE, which
    only says "MOVABLE or above" (CMA and HIGHATOMIC pageblocks free to the MOVABLE list), so a
    MOVABLE round trip is learned only when the snapshot has no pageblock of those types
    (`movable_exact`; both shared traces have none). prescan() learns types
    only where the trace drained or refilled from a pageblock; this fills in pageblocks seen
    only in such round trips, which the replay needs for the list of a pre-trace page's free
    (both traces: every round trip in a pageblock prescan() knew agrees with it). `ev` holds
    the columns (kind, cpu, pfn, f0, f1, ...) in trace order. Returns how many were added.

    The record loop is compiled (`replay_core.learn_round_trips`); Python keeps the first round
    trip of each pageblock.
    """
    ev = np.ascontiguousarray(ev, dtype=np.int64)
    out_pb = np.empty(len(ev) + 1, dtype=np.int64)  # [:n] written
    out_mt = np.empty(len(ev) + 1, dtype=np.int64)
    n = RC.learn_round_trips(ev, out_pb, out_mt)
    if not movable_exact:  # a MOVABLE round trip only says "MOVABLE or above"
        keep = out_mt[:n] != mz.MIGRATE_MOVABLE
        n = int(keep.sum())
        out_pb[:n], out_mt[:n] = out_pb[:len(keep)][keep], out_mt[:len(keep)][keep]
    _, first = np.unique(out_pb[:n], return_index=True)
    first.sort()
    added = 0
    for pb, mt in zip(out_pb[first].tolist(), out_mt[first].tolist()):
        if pb not in kpb_type:
            kpb_type[pb] = mt
            added += 1
    return added


def infer_pcp_lists(chunks, snap: Snapshot, policy: Policy, kpb_type: dict[int, int],
                    untraced: dict[int, list] | None = None, unexplained: list | None = None,
                    zones_of: Callable | None = None) -> dict:
    """The per-CPU list contents at trace start, from the trace's own per-CPU flows.

    /proc/zoneinfo gives each pageset's `count` but not how it splits over the lists
    (order x migratetype). The trace does: per (zone, CPU, list) the net flow is refills
    (zone_locked percpu_refill=1) + frees (to the list of the pageblock's type) - allocations
    served by the list - drains. A list cannot go negative, so its initial content is at least
    -min(net flow); and rmqueue_bulk() runs only on an empty list, so at the first refill of a
    list its initial content is exactly -net flow. What is left of `count` goes to the order-0
    list that was never seen empty and has the largest lower bound (MOVABLE if none).

    Two flows have no event of their own, and both are taken from the kernel's code:
    * a block that __rmqueue_steal(), or try_to_claim_block() of a whole pageblock
      (fallback order >= pageblock_order), takes under the zone lock is traced by
      mm_page_alloc_extfrag alone (only __rmqueue_smallest() emits zone_locked): an extfrag
      event that does not follow a zone_locked of its pfn is one more refilled block (pybuild
      line 25417: a refill of 15 order-2 blocks with 14 zone_locked events);
    * the list a free goes to is its pageblock's type, learned from the trace's drains and
      refills (prescan()) and from per-CPU round trips (learn_pageblock_types(), which adds
      them to `kpb_type`, so the replay places pre-trace frees by them too).

    And one flow has no event at all: alloc_pages_bulk() (vmalloc's vm_area_alloc_pages(), e.g.
    a forked task's 4-page stack) takes pages with __rmqueue_pcplist() and emits no
    mm_page_alloc. The trace still shows where: every page put on a list inside the trace
    (refilled, or freed to it) is followed page by page until it is allocated or drained, so
    a page still on its list when the list is refilled (rmqueue_bulk() runs only on an empty
    list), or freed again without having been allocated, was taken that way (thp-mix CPU 0,
    UNMOVABLE: lines 7969-7972 free four pages that are still on the list at its refill at line
    8427 and are freed again at 17596-17599; lines 8473-8476 refill four that no event shows
    again before the refill at line 13400). Each such page leaves its list at the latest
    moment the trace allows, just before that refill or second free; `untraced` (if given) receives {line: [(pfn, order, list migratetype, cpu), ...]},
    the pages taken just before that line, for the replay to make the same allocations.
    A page of order > 0 found that way cannot have been taken by alloc_pages_bulk() (order 0
    only): it leaves its list all the same, is not allocated, and its line goes to
    `unexplained` (if given). `zones_of(a)`: the snapshot zone of each record of chunk `a`
    (default: computed here).
    Returns {(zone index, cpu): {pindex: pages}}.
    """
    pind = policy.pcp_pindex
    arrs = [a for a in chunks if len(a)]
    # the columns (kind, cpu, pfn, f0, f1, f2, f3, zone, line), filled in place chunk by chunk
    ev = np.empty((sum(len(a) for a in arrs), 9), dtype=np.int64)
    r = 0
    for a in arrs:
        z = zones_of(a) if zones_of is not None else snap.zones_of_kernel_pfns(a[:, P.C_PFN])
        RC.infer_rows(np.ascontiguousarray(a, dtype=np.int64), np.ascontiguousarray(z, dtype=np.int64), ev, r)
        r += len(a)
    above = [t for t in range(mz.MIGRATE_PCPTYPES, mz.MIGRATE_TYPES) if t != mz.MIGRATE_ISOLATE]
    learn_pageblock_types(ev, kpb_type, not any(zs.blocks[t] for zs in snap.zones for t in above))
    # The record loops are compiled (replay_core.next_on_cpu, pcp_flows): the lists are dense
    # keys (zone * ncpu + cpu) * npi + pindex, and net, low and exact come back as the dicts
    # the rules above describe, in the order the keys entered them.
    # The next event of the same CPU, for each record (kind, pfn): a one-block "refill" that is
    # followed by the allocation of that block may be rmqueue_buddy() after a failed
    # pcp_spin_trylock() (percpu_refill is set by order and type, not by the path).
    ev = np.ascontiguousarray(ev, dtype=np.int64)
    cmin = int(ev[:, 1].min()) if len(ev) else 0
    if cmin < 0:  # no such CPU in a parsed trace; kept exact anyway
        ev = ev.copy()
        ev[:, 1] -= cmin
    else:
        cmin = 0
    ncpu = int(ev[:, 1].max()) + 1 if len(ev) else 1
    nz = max(len(snap.zones), int(ev[:, 7].max()) + 1 if len(ev) else 0)
    width = max(len(row) for row in pind)
    pind_a = np.full((len(pind), width), -1, dtype=np.int64)
    for o, row in enumerate(pind):
        pind_a[o, :len(row)] = row
    npi = int(pind_a.max()) + 1
    nxt_kind = np.full(len(ev), -1, dtype=np.int64)
    nxt_pfn = np.full(len(ev), -1, dtype=np.int64)
    RC.next_on_cpu(ev, ncpu, nxt_kind, nxt_pfn)
    kt = RC.kv_new(2 * len(kpb_type) + 2)
    pbs = np.fromiter(kpb_type.keys(), dtype=np.int64, count=len(kpb_type))
    types = np.fromiter(kpb_type.values(), dtype=np.int64, count=len(kpb_type))
    keep = pbs >= 0
    RC.kv_fill(kt, pbs[keep], types[keep])  # every pageblock in one compiled call, in the dict's order
    am = RC.kv_new(1024)  # pcp_flows grows both tables (at most half full)
    ol = RC.kv_new(1024)
    nkeys = nz * ncpu * npi
    net_a = np.zeros(nkeys, dtype=np.int64)
    low_a = np.zeros(nkeys, dtype=np.int64)
    low_seq = np.full(nkeys, -1, dtype=np.int64)
    exact_a = np.zeros(nkeys, dtype=np.int64)
    exact_seq = np.full(nkeys, -1, dtype=np.int64)
    ut = np.empty((len(ev) + 1, 5), dtype=np.int64)  # [:nut] written
    nut = RC.pcp_flows(ev, nxt_kind, nxt_pfn, pind_a, npi, ncpu, kt, am, ol, net_a, low_a, low_seq, exact_a,
                       exact_seq, ut)

    def key_of(k):
        zc, pi = divmod(k, npi)
        z, c = divmod(zc, ncpu)
        return (z, c + cmin, pi)

    ks = np.flatnonzero(low_seq >= 0)
    low = {key_of(k): v for k, v in zip(ks[np.argsort(low_seq[ks])].tolist(),
                                        low_a[ks[np.argsort(low_seq[ks])]].tolist())}
    ks = np.flatnonzero(exact_seq >= 0)
    exact = {key_of(k): v for k, v in zip(ks[np.argsort(exact_seq[ks])].tolist(),
                                          exact_a[ks[np.argsort(exact_seq[ks])]].tolist())}
    for line, q, o, m, c in ut[:nut].tolist():
        if o != 0:
            # alloc_pages_bulk_noprof() takes order-0 pages only (pcp->lists[
            # order_to_pindex(migratetype, 0)]): no kernel path explains this one, so it left
            # the list (pcp_flows counted that) but is not allocated (counted, not guessed)
            if unexplained is not None:
                unexplained.append(line)
        elif untraced is not None:  # alloc_pages_bulk(): no mm_page_alloc
            untraced.setdefault(line, []).append((q, o, m, c + cmin))
    out: dict = {}
    for zi, zs in enumerate(snap.zones):
        for cpu, ps in enumerate(zs.pcp[:snap.nr_cpus]):
            count = ps.get("count", 0)
            lists = {}
            for (z, c, pi), lo in low.items():
                if z == zi and c == cpu:
                    lists[pi] = max(lo, exact.get((z, c, pi), 0))
            for (z, c, pi), ex in exact.items():
                if z == zi and c == cpu:
                    lists[pi] = max(ex, lists.get(pi, 0))
            order_of = {pind[o][mt]: o for o in range(len(pind)) for mt in range(mz.MIGRATE_PCPTYPES)
                        if pind[o][mt] >= 0}
            lists = {pi: v >> order_of[pi] << order_of[pi] for pi, v in lists.items() if v > 0}
            rest = count - sum(lists.values())
            open0 = [pind[0][mt] for mt in range(mz.MIGRATE_PCPTYPES) if (zi, cpu, pind[0][mt]) not in exact]
            target = max(open0, key=lambda pi: (lists.get(pi, 0), pi == pind[0][mz.MIGRATE_MOVABLE]),
                         default=pind[0][mz.MIGRATE_MOVABLE])
            if rest >= 0:
                lists[target] = lists.get(target, 0) + rest
            else:
                # More seen leaving than the snapshot holds (pages moved before the trace started):
                # trim the largest order-0 lists.
                for pi in sorted((p for p in lists if order_of[p] == 0), key=lambda p: -lists[p]):
                    d = min(lists[pi], -rest)
                    lists[pi] -= d
                    rest += d
                    if rest >= 0:
                        break
            out[(zi, cpu)] = {pi: v for pi, v in lists.items() if v > 0}
    return out


@dataclass
class _Prepared:
    """What a replay computes before its translation pass: the records (kept in memory up to
    KEEP_BYTES), prescan's and infer_pcp_lists()' results, and the snapshot machine as built
    (reclaim and compaction off, nothing replayed yet). decay_phase()'s replays of the same
    trace start from a copy of it instead of reading, inferring and building it all again."""

    ct: CachedTrace
    chunks: Callable
    zones_of: Callable  # chunk -> snapshot zone of each record (computed once per kept chunk)
    kpb_type: dict[int, int]
    info: dict
    untraced: dict[int, list]
    unexplained: list[int]
    parse_meta: dict
    notes: list[str]
    state: SnapState | None
    machine: Machine

    def copy_state(self) -> SnapState:
        """A deep copy of the pristine snapshot machine and its bookkeeping (the policy, the
        machine configuration and the snapshot are shared: nothing changes them)."""
        st = self.state
        memo = {id(st.machine.policy): st.machine.policy, id(st.machine.cfg): st.machine.cfg,
                id(st.snapshot): st.snapshot}
        return copy.deepcopy(st, memo)


def _prepare(trace, policy: Policy, snapshot: Snapshot | None, flavour: str, cache, seed: int,
             max_records: int | None) -> _Prepared:
    """replay()'s passes before the translation: read (or parse) the records, prescan, infer
    the per-CPU lists and build the machine from the snapshot."""
    # A short --max-records replay parses only about as many lines as it uses (chunks of at
    # most 2^16 records otherwise; the records are the same whatever the chunk size).
    ct = CachedTrace(trace, cache, flavour) if max_records is None else \
        CachedTrace(trace, cache, flavour, chunk=min(1 << 16, max(1024, max_records)))

    def read():
        seen = 0
        for a in ct.chunks():
            if max_records is not None:
                if seen >= max_records:
                    break
                a = a[:max_records - seen]
            seen += len(a)
            yield a

    # The three passes below (prescan, infer_pcp_lists, translation) see the same records: the
    # first keeps them in memory up to KEEP_BYTES (pybuild: 29 MB), so the others neither read
    # the columnar cache again nor, after a --max-records stop (which leaves the cache
    # unwritten), parse the head of the trace again. Longer traces are read once per pass.
    kept: list[np.ndarray] | None = []

    def first_pass():
        nonlocal kept
        size = 0
        for a in read():
            if kept is not None:
                size += a.nbytes
                if size <= KEEP_BYTES:
                    kept.append(a)
                else:
                    kept = None
            yield a

    def chunks():
        yield from (kept if kept is not None else read())

    # The snapshot zone of each record, computed once per kept chunk for the three passes.
    zone_memo: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def zones_of(a: np.ndarray) -> np.ndarray:
        hit = zone_memo.get(id(a))
        if hit is not None and hit[0] is a:
            return hit[1]
        z = snapshot.zones_of_kernel_pfns(a[:, P.C_PFN])
        if kept is not None:
            zone_memo[id(a)] = (a, z)
        return z

    headroom, kpb_type, info = prescan(first_pass(), snapshot, zones_of)
    untraced: dict[int, list] = {}  # line -> pages alloc_pages_bulk() took just before it
    unexplained: list[int] = []  # lines where an order > 0 page left its per-CPU list untraced
    parse_meta = ct.meta or {}
    notes: list[str] = []
    if snapshot is not None:
        notes += [f"warning: snapshot does not match the trace: {w}" for w in snapshot_mismatch(snapshot, info)]
    if snapshot is not None:
        pcp_lists = infer_pcp_lists(chunks(), snapshot, policy, kpb_type, untraced, unexplained, zones_of)
        state = build_machine(snapshot, policy, seed=seed, trace_capacity=TRACE_CAPACITY, headroom=headroom,
                              pcp_lists=pcp_lists)
        m = state.machine
        notes += state.notes
    else:
        state = None
        m = default_machine(policy, max(2, info["max_cpu"] + 1), TRACE_CAPACITY, seed)
        notes.append("no snapshot: replayed on an empty default machine (frees of pre-trace pages are skipped)")
    _disable_background(m)
    return _Prepared(ct, chunks, zones_of, kpb_type, info, untraced, unexplained, parse_meta, notes, state, m)


def replay(trace: str | Path, policy: Policy, snapshot: Snapshot | None = None, flavour: str | None = None,
           cache: str | Path | None = None, seed: int = 1, sim_trace: TextIO | None = None,
           progress: Callable[[int], None] | None = None, check: bool = True,
           max_records: int | None = None, vmstat_phase_ns: int | None = None,
           _drains: list | None = None, _prep: _Prepared | None = None) -> ReplayResult:
    """Replay `trace` (ftrace text, plain/.gz/.xz) on `snapshot` (or an empty default machine).

    `cache`: columnar cache path (parsed once, reused when the trace is unchanged).
    `vmstat_phase_ns`: where in each second of the trace clock the kernel's vmstat worker
    (decay_pcp_high()) runs, when the trace shows no background drain that gives it away
    (else decay_phase() looks for it; NO_WORKER / DEFAULT_WORKER: never / one second in).
    `sim_trace`: a text stream for the simulator's own ftrace output. `max_records`: replay
    only the first N records (tests and quick looks).
    """
    t0 = time.perf_counter()
    if flavour is None:
        flavour = snapshot.flavour if snapshot is not None else "mainline"
    if _prep is None:
        prep = _prepare(trace, policy, snapshot, flavour, cache, seed, max_records)
        state = prep.state
    else:  # decay_phase()'s replays: the same records and inference, a copy of the pristine machine
        prep = _prep
        state = prep.copy_state()
    ct, chunks, kpb_type, info = prep.ct, prep.chunks, prep.kpb_type, prep.info
    untraced, unexplained, parse_meta = prep.untraced, prep.unexplained, prep.parse_meta
    notes = list(prep.notes)
    m = state.machine if state is not None else prep.machine
    inferred = None
    if (vmstat_phase_ns is None and snapshot is not None and not info.get("bg_drains")
            and policy.version >= 607 and info.get("t0") is not None):
        inferred = decay_phase(trace, policy, snapshot, flavour, cache, seed, max_records, chunks, info, prep)
        if inferred is not None:
            vmstat_phase_ns = info["t0"] + inferred[0]
    _vmstat_phase(m, info, vmstat_phase_ns, notes)
    if inferred is not None:
        notes[-1] = (f"vmstat worker phase from the first free-path drain only its decay explains (CPU "
                     f"{inferred[2]}, {inferred[1] / 1e9:.3f} s): first run {inferred[0] / 1e9:.3f} s after "
                     "the first event")
    eng = _Engine(m)
    tr = _Translation(eng.cap)
    kc, sc = KernelCounts(), SimCounts()
    kc.add_counts(info["kernel_counts"])  # counted by prescan, over the records the loop below sees
    # kernel pageblock -> simulated pageblock of its first pre-trace free (-1: none yet) and the
    # kernel pageblock's type (kpb_type; MOVABLE where unknown), dense over the snapshot's kernel
    # pageblocks (a pre-trace free's pfn lies in a zone of the snapshot)
    npb = (max((z.start_pfn + z.spanned for z in snapshot.zones), default=0) >> mz.PAGEBLOCK_ORDER) + 1 \
        if snapshot is not None else 1
    kpb_map = np.full(npb, -1, dtype=np.int64)
    kpb_types = np.full(npb, mz.MIGRATE_MOVABLE, dtype=np.int64)
    if kpb_type:
        pbs = np.fromiter(kpb_type.keys(), dtype=np.int64, count=len(kpb_type))
        mts = np.fromiter(kpb_type.values(), dtype=np.int64, count=len(kpb_type))
        inside = (pbs >= 0) & (pbs < npb)
        kpb_types[pbs[inside]] = mts[inside]
    # pre-trace frees below MAX_ORDER are replayed inside the compiled pass (translate_chunk);
    # memory onlining (and any pre-trace free without a snapshot state) comes back to pretrace_free()
    pre_on = int(COMPILED_PRETRACE and state is not None and HANDLES_IN_STATE)
    if state is not None:
        cursor, left = state.search_state()
        pre_arr = state.pretrace
    else:
        cursor, left, pre_arr = np.zeros((1, 1), dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    rep = {"allocs": 0, "frees": 0, "pretrace_frees": 0, "pretrace_free_pages": 0, "online_blocks": 0,
           "online_pages": 0, "batches": 0, "untraced_bulk_allocs": 0}

    untraced_lines = np.array(sorted(untraced), dtype=np.int64)
    bulk_lines: list[int] = []

    def bulk_allocs(t: int, pages: list, line: int) -> None:
        """alloc_pages_bulk() took these pages off their per-CPU lists (infer_pcp_lists): the
        same allocations, untraced in the kernel, so not counted as mm_page_alloc here either
        (nor in CTL_ALLOCS)."""
        for pfn, order, mt, cpu in pages:
            if RC.kv_find(tr.kmap, pfn) >= 0:
                continue
            h = tr.handle()
            ctl[RC.CTL_HT_N] += RC.kv_insert(tr.kmap, pfn, h)
            tr.horder[h] = order
            tr.row(t, ec.OP_ALLOC, cpu % ncpu, order, GFP_KERNEL | (mt << 3), h)
            rep["untraced_bulk_allocs"] += 1
            bulk_lines.append(line)
    t_base = None
    ncpu = m.cfg.nr_cpus
    trace_base = int(m.C[mz.H_TRACE_BASE])
    ctl = tr.ctl

    def drain_trace() -> None:
        n = int(m.C[mz.H_TRACE_N])
        if n:
            recs = m.C[trace_base:trace_base + n * mz.TR_SIZE].reshape(n, mz.TR_SIZE)
            sc.add_records(recs)
            if _drains is not None:
                d = recs[recs[:, 0] == mz.TR_MM_PAGE_PCPU_DRAIN]
                _drains.extend(zip(d[:, 1].tolist(), d[:, 2].tolist()))
            if sim_trace is not None:
                from cmasim.trace.ftrace import format_records

                known = recs[np.isin(recs[:, 0], list(_WRITER_KINDS))]
                sim_trace.writelines(format_records(known))
            m.C[mz.H_TRACE_N] = 0

    def flush() -> None:
        nr = int(ctl[RC.CTL_NROWS])
        if nr:
            ev = tr.ev[:nr]
            i = 0
            while i < nr:
                i = eng.run(ev, i)
                drain_trace()
            ctl[RC.CTL_NROWS] = 0
            rep["batches"] += 1
        RC.end_batch(tr.free, tr.pending, ctl)

    def pretrace_free(r: list[int], z: int) -> None:
        """A free of a page the trace never allocated (replay_core.ST_SPECIAL): memory being
        onlined, or a page allocated before the trace."""
        pfn, order = r[P.C_PFN], r[P.C_F0]
        cpu = r[P.C_CPU] % ncpu
        t = max(0, r[P.C_TIME] - t_base)
        p = -1
        if order == MAX_ORDER:
            flush()  # managed pages and watermarks change at this point of the trace
            p = state.take_offline(z, order)
            if p >= 0:
                rep["online_blocks"] += 1
                rep["online_pages"] += 1 << order
                tr.anomaly(RC.AN_ONLINED, r[P.C_LINE])
        if p < 0:
            kpb = pfn >> mz.PAGEBLOCK_ORDER
            spb = int(kpb_map[kpb])
            hint = spb * mz.PAGEBLOCK_NR_PAGES + (pfn & (mz.PAGEBLOCK_NR_PAGES - 1)) if spb >= 0 else -1
            p = state.take_pretrace(z, order, int(kpb_types[kpb]), hint)
            if p < 0:
                tr.anomaly(RC.AN_POOL_EMPTY, r[P.C_LINE])
                return
            if spb < 0:
                kpb_map[kpb] = p >> mz.PAGEBLOCK_ORDER
            ctl[RC.CTL_PRE_FREES] += 1
            ctl[RC.CTL_PRE_PAGES] += 1 << order
            tr.anomaly(RC.AN_PRETRACE, r[P.C_LINE])
        pmt = state.pageblock_type(p)
        _set_owner(m, p, pmt if pmt < 3 else mz.MIGRATE_MOVABLE)
        h = tr.handle()
        eng.attach(h, p)
        tr.row(t, ec.OP_FREE, cpu, 0, 0, h)
        tr.release(h)
        ctl[RC.CTL_FREES] += 1
        if ctl[RC.CTL_NROWS] >= BATCH:
            flush()

    done = 0
    has_snap, has_state = int(snapshot is not None), int(state is not None)
    for a in chunks():
        n = len(a)
        if n:
            if t_base is None:
                t_base = int(a[0, P.C_TIME])
            a = np.ascontiguousarray(a, dtype=np.int64)
            zones = prep.zones_of(a) if snapshot is not None else np.full(n, -1, dtype=np.int64)
            # records before which alloc_pages_bulk() took pages (infer_pcp_lists): the compiled
            # pass stops there, and the untraced allocations go in before the record
            if untraced:
                hit = np.empty(n, dtype=np.bool_)
                RC.in_sorted(np.ascontiguousarray(a[:, P.C_LINE]), untraced_lines, hit)  # np.isin, sorted keys
                cuts = np.flatnonzero(hit).tolist()
            else:
                cuts = []
            tr.reserve(n + sum(len(untraced[int(a[e, P.C_LINE])]) for e in cuts))
            i = 0
            for e in cuts + [n]:
                sub_a, sub_z = a[:e], zones[:e]
                while True:
                    i, st = RC.translate_chunk(sub_a, sub_z, i, ncpu, has_snap, has_state, t_base, BATCH,
                                               MAX_ORDER, tr.kmap, tr.horder, tr.free, tr.pending,
                                               tr.cap, tr.ev, ctl, tr.an_count, tr.an_lines, pre_on, m.S, m.C,
                                               pre_arr, left, cursor, kpb_types, kpb_map)
                    if st == RC.ST_DONE:
                        break
                    if st == RC.ST_FLUSH:
                        flush()
                    elif st == RC.ST_SPECIAL:
                        pretrace_free(a[i].tolist(), int(zones[i]))
                        i += 1
                    else:
                        raise RuntimeError("out of replay handles (more live allocations than simulated pages)")
                if e < n:
                    line = int(a[e, P.C_LINE])
                    bulk_allocs(max(0, int(a[e, P.C_TIME]) - t_base), untraced[line], line)
        done += n
        if progress:
            progress(done)
    flush()
    drain_trace()
    rep["allocs"], rep["frees"] = int(ctl[RC.CTL_ALLOCS]), int(ctl[RC.CTL_FREES])
    rep["pretrace_frees"], rep["pretrace_free_pages"] = int(ctl[RC.CTL_PRE_FREES]), int(ctl[RC.CTL_PRE_PAGES])
    an = tr.anomalies()
    for line in bulk_lines:
        an.add("untraced_bulk_alloc", line)
    for line in unexplained:
        an.add("pcp_list_exit_unexplained", line)
    sc.allocs -= rep["untraced_bulk_allocs"]  # the kernel traced no mm_page_alloc for them either
    if check:
        m.check()
    parse_meta = ct.meta or parse_meta
    res = ReplayResult(str(trace), policy.name, flavour, parse_meta.get("stats", {}), not ct.parsed, kc, sc, an,
                       rep, m, state, snapshot, time.perf_counter() - t0, notes=notes)
    for k, v in parse_meta.get("stats", {}).get("bad", {}).items():
        an.count[f"parse_{k}"] = v
        an.lines[f"parse_{k}"] = parse_meta["stats"]["bad_first_lines"].get(k, [])
    res.sim_counters = vmstat.event_counters(m)
    res.sim_counters["free_skipped"] = eng.skipped()
    res.replayed["live_at_end"] = int(ctl[RC.CTL_HT_N])
    res.replayed["trace_lost_records"] = int(m.C[mz.H_TRACE_LOST])
    return res


_WRITER_KINDS = (mz.TR_MM_PAGE_ALLOC, mz.TR_MM_PAGE_FREE, mz.TR_MM_PAGE_ALLOC_ZONE_LOCKED, mz.TR_MM_PAGE_PCPU_DRAIN,
                 mz.TR_MM_PAGE_ALLOC_EXTFRAG)


def _vmstat_phase(m: Machine, info: dict, phase_ns: int | None, notes: list[str]) -> None:
    """Run the simulated vmstat worker when the kernel's ran.

    vmstat_update() is queued with round_jiffies_relative(HZ): it runs at whole seconds of
    jiffies, a fixed phase of the trace clock that depends on the boot, not on when the trace
    started. A drain burst on a CPU that no free on that CPU set off is decay_pcp_high() (or
    a drain_all_pages()) from that worker, and gives the phase; else `phase_ns`; else the
    first run is one second after the first event.
    """
    t0 = info.get("t0")
    if t0 is None:
        return
    if phase_ns == NO_WORKER:
        m.C[mz.H_NEXT_TICK] = 1 << 62
        return
    if phase_ns == DEFAULT_WORKER:
        return
    if info.get("bg_drains"):
        t, cpu = info["bg_drains"][0]
        first = (t - t0) % TICK_NS
        notes.append(f"vmstat worker phase from the background drain on CPU {cpu} at "
                     f"{(t - t0) / 1e9:.3f} s: first run {first / 1e9:.3f} s after the first event")
    elif phase_ns is not None:
        first = (phase_ns - t0) % TICK_NS
        notes.append(f"vmstat worker phase {phase_ns / 1e9:.3f} s (given): first run {first / 1e9:.3f} s "
                     "after the first event")
    else:
        return
    m.C[mz.H_NEXT_TICK] = max(first, 1)  # a phase of 0 runs it at once, not a second late


def free_drain_windows(chunks, t0: int) -> list[tuple[int, int, int]]:
    """The kernel's drain bursts set off by frees: (first, last, cpu), the times (relative to t0)
    of the run of mm_page_free / mm_page_free_batched events on that CPU just before the burst.
    The replay frees at mm_page_free times and the kernel commits a batch later, so the
    simulated drain of the same free falls inside that window."""
    arrs = [a for a in chunks if len(a)]
    if not arrs:
        return []
    kind, cpu, t = (np.concatenate([a[:, c] for a in arrs]) for c in (P.C_KIND, P.C_CPU, P.C_TIME))
    # each CPU's events in trace order, one CPU after the other
    order = np.argsort(cpu, kind="stable")
    kind, cpu, t = kind[order], cpu[order], t[order]
    n = len(kind)
    first = np.ones(n, dtype=bool)  # the first event of its CPU
    first[1:] = cpu[1:] != cpu[:-1]
    free = (kind == P.K_PAGE_FREE) | (kind == P.K_FREE_BATCHED)
    prev_free = np.zeros(n, dtype=bool)  # the CPU's previous event is a free
    prev_free[1:] = free[:-1]
    prev_free &= ~first
    # where each run of frees starts, and for every event the latest start at or before it
    last_start = np.maximum.accumulate(np.where(free & ~prev_free, np.arange(n), -1))
    d = np.flatnonzero((kind == P.K_PCPU_DRAIN) & prev_free)
    d = d[np.argsort(order[d])]  # in trace order
    return list(zip((t[last_start[d - 1]] - t0).tolist(), (t[d - 1] - t0).tolist(), cpu[d].tolist()))


def decay_phase(trace, policy: Policy, snapshot: Snapshot, flavour: str, cache, seed: int,
                max_records: int | None, chunks, info: dict,
                prep: _Prepared | None = None) -> tuple[int, int, int] | None:
    """When the vmstat worker ran, from the first drain only its decay_pcp_high() explains.

    A trace without a background drain does not show the worker's phase, but its work shows:
    decay_pcp_high() lowers pcp->high by an eighth without draining, and the next free that
    takes `count` to the lower high drains (free_frozen_page_commit()). The replay is run once
    with the worker off and its free-path drains are compared with the kernel's in time order
    (free_drain_windows()). If the first disagreement is a kernel drain the simulation does not
    make, only a lower high explains it (nothing else lowers it while the zone is not below its
    high watermark): the worker ran before it, and the latest such moment is taken, the first
    free of the run that set the drain off (thp-mix: the kernel drains 890 pages on CPU 0 at
    0.753 s with count 9,263 = 10,586 - 10,586/8). Returns (first run, end of the window, cpu) in
    ns after the first event, or None: no such drain, a simulated drain the kernel lacks comes
    first, or a second run with the worker at that phase does not make the kernel's drain.
    """
    probe: list = []
    replay(trace, policy, snapshot, flavour, cache, seed, check=False, max_records=max_records,
           vmstat_phase_ns=NO_WORKER, _drains=probe, _prep=prep)
    sim: dict[int, list[int]] = {}
    for t, c in sorted(set(probe)):
        sim.setdefault(c, []).append(t)
    kernel = sorted(free_drain_windows(chunks(), info["t0"]))
    used: set = set()
    first_kernel_only = None
    for a, b, c in kernel:
        hit = next((t for t in sim.get(c, []) if a <= t <= b and (c, t) not in used), None)
        if hit is None:
            first_kernel_only = (a, b, c)
            break
        used.add((c, hit))
    if first_kernel_only is None:
        return None
    a, b, cpu = first_kernel_only
    if any(t < a and (c, t) not in used for c, ts in sim.items() for t in ts):
        return None  # the simulation drained first where the kernel did not: other evidence
    check: list = []
    replay(trace, policy, snapshot, flavour, cache, seed, check=False, max_records=max_records,
           vmstat_phase_ns=info["t0"] + a, _drains=check, _prep=prep)
    if not any(c == cpu and a <= t <= b for t, c in check):
        return None  # a decay there does not make that drain either
    return first_kernel_only


def _disable_background(m: Machine) -> None:
    """Reclaim and compaction off (the kernel's own are in the trace); where the core has them."""
    if hasattr(mz, "H_PARAM") and hasattr(mz, "T_RECLAIM_ENABLED"):
        b = int(m.C[mz.H_PARAM])
        m.C[b + mz.T_RECLAIM_ENABLED] = 0
        if hasattr(mz, "T_COMPACTION_ENABLED"):
            m.C[b + mz.T_COMPACTION_ENABLED] = 0


def write_outputs(res: ReplayResult, out: Path, fidelity: dict | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    proc = out / "proc"
    proc.mkdir(exist_ok=True)
    m = res.machine
    (proc / "buddyinfo").write_text(vmstat.render_buddyinfo(m))
    (proc / "pagetypeinfo").write_text(vmstat.render_pagetypeinfo(m))
    (proc / "zoneinfo").write_text(vmstat.render_zoneinfo(m))
    (proc / "vmstat").write_text(vmstat.render_vmstat(m))
    d = res.to_dict()
    if fidelity is not None:
        d["fidelity"] = fidelity
    (out / "replay.json").write_text(json.dumps(d, indent=2) + "\n")
