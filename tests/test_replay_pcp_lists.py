"""infer_pcp_lists(): the per-CPU list contents at trace start, from the trace's own flows.

Synthetic records in the parser's column layout on the pybuild snapshot (Normal starts at pfn
0x100000, zone index 2). No engine call; infer_pcp_lists()' record loops are compiled
(replay_core) unless CMASIM_JIT=0, and the last test checks them against the Python loops."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmasim.mm import mmzone as mz
from cmasim.policy import get_policy
from cmasim.trace import parser as P
from cmasim.trace.replay import infer_pcp_lists, learn_pageblock_types, replay
from cmasim.trace.snapshot import load_snapshot

PYBUILD = Path(__file__).resolve().parent.parent / "data" / "traces" / "linux-6.18-x86_64" / "pybuild"
NORMAL = 0x100000
POL = get_policy("linux-6.18")


_line = iter(range(1, 1 << 30))


def rec(kind, pfn, *f, cpu=0, t=0):
    r = np.full(P.NCOL, P.ABSENT, dtype=np.int64)
    r[P.C_KIND], r[P.C_TIME], r[P.C_CPU], r[P.C_PID], r[P.C_PFN] = kind, t, cpu, 1, pfn
    r[P.C_LINE] = next(_line)
    r[P.C_F0:P.C_F0 + len(f)] = f
    return r


def chunks(*rows):
    yield np.array(rows, dtype=np.int64)


def alloc(pfn, order, mt, cpu=0):
    return rec(P.K_PAGE_ALLOC, pfn, order, mt, 0, cpu=cpu)


def free(pfn, order, cpu=0):
    return rec(P.K_PAGE_FREE, pfn, order, cpu=cpu)


def locked(pfn, order, mt, cpu=0):
    return rec(P.K_ZONE_LOCKED, pfn, order, mt, 1, cpu=cpu)


def extfrag(pfn, order, fallback_order, mt, fallback_mt, cpu=0):
    return rec(P.K_EXTFRAG, pfn, order, fallback_order, 9, mt, fallback_mt, 0, 1, cpu=cpu)


def test_round_trip_through_a_per_cpu_list_gives_the_pageblock_type():
    """A page freed and allocated again with nothing of it in between sat on the list of its
    pageblock's type (free_frozen_pages() / __rmqueue_pcplist())."""
    a, b, c = NORMAL + 0x10000, NORMAL + 0x20000, NORMAL + 0x30000
    ev = np.array([free(a, 0), alloc(a, 0, mz.MIGRATE_UNMOVABLE),  # round trip: UNMOVABLE
                   free(b, 0), locked(b, 0, mz.MIGRATE_MOVABLE), alloc(b, 0, mz.MIGRATE_MOVABLE),  # via the buddy
                   free(c, 0), alloc(c, 0, mz.MIGRATE_RECLAIMABLE)], dtype=np.int64)
    cols = np.column_stack([ev[:, P.C_KIND], ev[:, P.C_CPU], ev[:, P.C_PFN], ev[:, P.C_F0], ev[:, P.C_F0 + 1]])
    kpb = {c >> mz.PAGEBLOCK_ORDER: mz.MIGRATE_MOVABLE}  # known from a drain: kept
    assert learn_pageblock_types(cols, kpb) == 1
    assert kpb == {a >> mz.PAGEBLOCK_ORDER: mz.MIGRATE_UNMOVABLE, c >> mz.PAGEBLOCK_ORDER: mz.MIGRATE_MOVABLE}


def test_a_pre_trace_free_goes_to_the_list_its_round_trip_shows():
    """pybuild line 15212: a pre-trace page of a pageblock no drain or refill showed is freed on
    CPU 0 and allocated again as UNMOVABLE. Its free fed the UNMOVABLE list, not MOVABLE (the
    old default), so the UNMOVABLE list needs no page of its own at trace start for it."""
    snap = load_snapshot(PYBUILD)
    p = NORMAL + 0x5039d
    kpb: dict[int, int] = {}
    lists = infer_pcp_lists(chunks(free(p, 0), alloc(p, 0, mz.MIGRATE_UNMOVABLE)), snap, POL, kpb)
    unmov = POL.pcp_pindex[0][mz.MIGRATE_UNMOVABLE]
    assert kpb == {p >> mz.PAGEBLOCK_ORDER: mz.MIGRATE_UNMOVABLE}
    assert unmov not in lists[(2, 0)]
    assert sum(lists[(2, 0)].values()) == snap.zones[2].pcp[0]["count"]


def test_a_block_claimed_without_zone_locked_is_a_refilled_block():
    """pybuild line 25417: a refill of order-2 RECLAIMABLE blocks in which try_to_claim_block()
    took a whole pageblock (fallback_order 10): that block has an mm_page_alloc_extfrag event
    and no zone_locked one. Both blocks of the refill are then allocated: the list was empty
    at the refill and stays empty, so it starts with nothing."""
    snap = load_snapshot(PYBUILD)
    a, b = NORMAL + 0xc0fec, NORMAL + 0xb8400
    rows = [locked(a, 2, mz.MIGRATE_RECLAIMABLE), extfrag(b, 2, 10, mz.MIGRATE_RECLAIMABLE, mz.MIGRATE_UNMOVABLE),
            alloc(a, 2, mz.MIGRATE_RECLAIMABLE), alloc(b, 2, mz.MIGRATE_RECLAIMABLE)]
    lists = infer_pcp_lists(chunks(*rows), snap, POL, {})
    assert POL.pcp_pindex[2][mz.MIGRATE_RECLAIMABLE] not in lists[(2, 0)]
    # a claim below pageblock order goes through __rmqueue_smallest(): zone_locked of the same
    # pfn, then extfrag; that block is counted once
    rows = [locked(a, 2, mz.MIGRATE_RECLAIMABLE), locked(b, 2, mz.MIGRATE_RECLAIMABLE),
            extfrag(b, 2, 3, mz.MIGRATE_RECLAIMABLE, mz.MIGRATE_UNMOVABLE),
            alloc(a, 2, mz.MIGRATE_RECLAIMABLE), alloc(b, 2, mz.MIGRATE_RECLAIMABLE),
            alloc(b + 4, 2, mz.MIGRATE_RECLAIMABLE)]
    lists = infer_pcp_lists(chunks(*rows), snap, POL, {})
    assert lists[(2, 0)][POL.pcp_pindex[2][mz.MIGRATE_RECLAIMABLE]] == 4


def test_a_page_freed_twice_was_taken_by_alloc_pages_bulk():
    """thp-mix lines 7969 and 17599: a stack page freed, then freed again with no mm_page_alloc
    in between. alloc_pages_bulk() (vmalloc) took it off the list untraced; it leaves the list
    just before the second free, and the flows count it (no page needed at trace start)."""
    snap = load_snapshot(PYBUILD)
    p, q = NORMAL + 0x1000, NORMAL + 0x1001
    kpb = {p >> mz.PAGEBLOCK_ORDER: mz.MIGRATE_UNMOVABLE}
    first, second = free(p, 0), free(p, 0)
    untraced: dict = {}
    lists = infer_pcp_lists(chunks(free(q, 0), first, second, alloc(q, 0, mz.MIGRATE_UNMOVABLE),
                                   alloc(p, 0, mz.MIGRATE_UNMOVABLE), alloc(NORMAL, 0, mz.MIGRATE_UNMOVABLE)),
                            snap, POL, kpb, untraced)
    assert untraced == {int(second[P.C_LINE]): [(p, 0, mz.MIGRATE_UNMOVABLE, 0)]}
    # flows +q +p -p(bulk) +p -q -p -1 reach -1: the UNMOVABLE list held a page at trace start
    # (without the bulk allocation they never go below 0), so it is the list that was never
    # seen empty with the largest lower bound and takes the rest of the pageset's count
    assert lists[(2, 0)] == {POL.pcp_pindex[0][mz.MIGRATE_UNMOVABLE]: snap.zones[2].pcp[0]["count"]}


def test_a_refilled_page_left_on_an_emptied_list_was_taken_by_alloc_pages_bulk():
    """thp-mix lines 8473-8476 refilled four pages that no event shows again before the list's
    next refill: the list was empty then, so they were taken untraced, before that refill."""
    snap = load_snapshot(PYBUILD)
    a, b, c = NORMAL + 0x2000, NORMAL + 0x2001, NORMAL + 0x3000
    r1, r2 = locked(a, 0, mz.MIGRATE_UNMOVABLE), locked(b, 0, mz.MIGRATE_UNMOVABLE)
    refill2 = locked(c, 0, mz.MIGRATE_UNMOVABLE)
    untraced: dict = {}
    lists = infer_pcp_lists(chunks(r1, r2, alloc(a, 0, mz.MIGRATE_UNMOVABLE), refill2,
                                   locked(c + 1, 0, mz.MIGRATE_UNMOVABLE), alloc(c, 0, mz.MIGRATE_UNMOVABLE)),
                            snap, POL, {}, untraced)
    assert untraced == {int(refill2[P.C_LINE]): [(b, 0, mz.MIGRATE_UNMOVABLE, 0)]}
    assert POL.pcp_pindex[0][mz.MIGRATE_UNMOVABLE] not in lists[(2, 0)]
    # one block under the zone lock, then its allocation: possibly rmqueue_buddy() after a
    # failed pcp_spin_trylock(), which does not need an empty list; nothing is inferred
    untraced = {}
    infer_pcp_lists(chunks(r1, r2, alloc(a, 0, mz.MIGRATE_UNMOVABLE), locked(c, 0, mz.MIGRATE_UNMOVABLE),
                           alloc(c, 0, mz.MIGRATE_UNMOVABLE)), snap, POL, {}, untraced)
    assert untraced == {}


PFX = "            bash-5857    [000] ..... "


def test_replay_makes_the_untraced_bulk_allocation(tmp_path):
    """The replay allocates the page again where alloc_pages_bulk() did, so its second free is
    of a live block and not of a page "from before the trace"; the bulk allocation itself is
    not counted as an mm_page_alloc (the kernel traced none)."""
    THP = PYBUILD.parent / "thp-mix"
    f = tmp_path / "t.txt"
    f.write_text("\n".join([
        PFX + "1.000001: mm_page_alloc: page=00 pfn=0x1bb74d order=0 migratetype=0 gfp_flags=GFP_KERNEL",
        PFX + "1.000002: mm_page_free: page=00 pfn=0x1bb74d order=0",
        PFX + "1.000003: mm_page_free: page=00 pfn=0x1bb74d order=0",
    ]) + "\n")
    res = replay(f, POL, load_snapshot(THP))
    assert res.replayed["untraced_bulk_allocs"] == 1
    assert res.anomalies.count["untraced_bulk_alloc"] == 1 and res.anomalies.lines["untraced_bulk_alloc"] == [3]
    assert res.replayed["frees"] == 2 and res.replayed["pretrace_frees"] == 0
    assert res.sim.allocs == res.kernel.allocs == 1 and res.sim.frees == 2


def test_free_drain_windows_span_the_run_of_frees_before_a_drain():
    """A batch of frees (mm_page_free, then mm_page_free_batched at the commit) sets off a drain
    after its last commit; the replay frees at mm_page_free times, so the window is the run."""
    from cmasim.trace.replay import free_drain_windows

    rows = [rec(P.K_PAGE_ALLOC, NORMAL, 0, 1, 0, t=1000), rec(P.K_PAGE_FREE, NORMAL, 0, t=1100),
            rec(P.K_PAGE_FREE, NORMAL + 1, 0, t=1110), rec(P.K_FREE_BATCHED, NORMAL, 0, t=1120),
            rec(P.K_FREE_BATCHED, NORMAL + 1, 0, t=1130), rec(P.K_PCPU_DRAIN, NORMAL + 5, 0, 1, t=1131),
            rec(P.K_PCPU_DRAIN, NORMAL + 6, 0, 1, t=1131),  # the same burst
            rec(P.K_PAGE_ALLOC, NORMAL + 7, 0, 1, 0, t=1200), rec(P.K_PCPU_DRAIN, NORMAL + 8, 0, 1, t=1201),  # not a free's
            rec(P.K_PAGE_FREE, NORMAL + 9, 0, cpu=1, t=1300), rec(P.K_PCPU_DRAIN, NORMAL + 9, 0, 1, cpu=1, t=1301)]
    assert free_drain_windows(chunks(*rows), 1000) == [(100, 130, 0), (300, 300, 1)]


def test_decay_phase_from_the_first_drain_only_a_decay_explains(monkeypatch):
    """thp-mix: no background drain gives the worker's phase away, but at 0.753 s the kernel
    drains on CPU 0 where the simulation without the worker does not (its count is below its
    high; decay_pcp_high() would have lowered high by an eighth). The worker is put just before
    that run of frees, if a replay with it there makes the drain; else no phase is inferred."""
    import cmasim.trace.replay as R

    rows = [rec(P.K_PAGE_ALLOC, NORMAL, 0, 1, 0, t=1000),
            rec(P.K_PAGE_FREE, NORMAL, 0, t=1100), rec(P.K_PCPU_DRAIN, NORMAL + 5, 0, 1, t=1101),
            rec(P.K_PAGE_FREE, NORMAL + 1, 0, t=1200), rec(P.K_PAGE_FREE, NORMAL + 2, 0, t=1210),
            rec(P.K_PCPU_DRAIN, NORMAL + 6, 0, 1, t=1211)]
    info = {"t0": 1000, "bg_drains": []}
    calls = []

    def run(sim_without, sim_with):
        def fake(*a, vmstat_phase_ns=None, _drains=None, **k):
            calls.append(vmstat_phase_ns)
            _drains.extend(sim_without if vmstat_phase_ns == R.NO_WORKER else sim_with)
        monkeypatch.setattr(R, "replay", fake)
        calls.clear()
        return R.decay_phase("t", POL, None, "mainline", None, 1, None, lambda: chunks(*rows), info)

    assert run([(100, 0)], [(100, 0), (210, 0)]) == (200, 210, 0)
    assert calls == [R.NO_WORKER, 1000 + 200]
    assert run([(100, 0)], [(100, 0)]) is None  # the decay does not make that drain either
    assert run([(50, 1), (100, 0)], [(100, 0), (210, 0)]) is None  # the simulation drained first
    assert run([(100, 0), (210, 0)], []) is None  # nothing to explain


def test_a_movable_round_trip_says_movable_only_without_cma_or_highatomic_pageblocks():
    """CMA and HIGHATOMIC pageblocks free to the MOVABLE list (free_frozen_pages()), so a
    MOVABLE round trip proves "MOVABLE or above": it is learned only when the snapshot has no
    pageblock of those types. An UNMOVABLE round trip is exact either way."""
    a, b = NORMAL + 0x10000, NORMAL + 0x20000
    ev = np.array([free(a, 0), alloc(a, 0, mz.MIGRATE_MOVABLE), free(b, 0), alloc(b, 0, mz.MIGRATE_UNMOVABLE)],
                  dtype=np.int64)
    cols = np.column_stack([ev[:, P.C_KIND], ev[:, P.C_CPU], ev[:, P.C_PFN], ev[:, P.C_F0], ev[:, P.C_F0 + 1]])
    kpb: dict[int, int] = {}
    assert learn_pageblock_types(cols, kpb, movable_exact=False) == 1
    assert kpb == {b >> mz.PAGEBLOCK_ORDER: mz.MIGRATE_UNMOVABLE}
    kpb = {}
    assert learn_pageblock_types(cols, kpb) == 2


def test_a_high_order_page_left_on_a_refilled_list_is_not_a_bulk_allocation():
    """alloc_pages_bulk_noprof() takes order-0 pages only: an order-3 page still on its list at
    the list's next refill left it by no traced path; it leaves the inferred flows (so the list
    needs nothing at trace start), is not allocated by the replay, and its line is reported."""
    snap = load_snapshot(PYBUILD)
    a, b, c = NORMAL + 0x4000, NORMAL + 0x4008, NORMAL + 0x5000
    refill2 = locked(c, 3, mz.MIGRATE_UNMOVABLE)
    untraced: dict = {}
    unexplained: list = []
    lists = infer_pcp_lists(chunks(locked(a, 3, mz.MIGRATE_UNMOVABLE), locked(b, 3, mz.MIGRATE_UNMOVABLE),
                                   alloc(a, 3, mz.MIGRATE_UNMOVABLE), refill2, locked(c + 8, 3, mz.MIGRATE_UNMOVABLE),
                                   alloc(c, 3, mz.MIGRATE_UNMOVABLE)),
                            snap, POL, {}, untraced, unexplained)
    assert untraced == {} and unexplained == [int(refill2[P.C_LINE])]
    assert POL.pcp_pindex[3][mz.MIGRATE_UNMOVABLE] not in lists[(2, 0)]


def test_a_one_block_refill_followed_by_its_allocation_does_not_fix_the_list_content():
    """One block under the zone lock and then its allocation may be rmqueue_buddy() after a
    failed pcp_spin_trylock() (percpu_refill is set by order and type, not by the path): it is
    no evidence that the list was empty, so the list's start content stays a lower bound and
    the list may still take the rest of the pageset's count."""
    snap = load_snapshot(PYBUILD)
    a = NORMAL + 0x6000
    unmov = POL.pcp_pindex[0][mz.MIGRATE_UNMOVABLE]
    # the UNMOVABLE list is drawn on before the one-block "refill": at least 1 page at start
    lists = infer_pcp_lists(chunks(alloc(NORMAL + 0x7000, 0, mz.MIGRATE_UNMOVABLE),
                                   locked(a, 0, mz.MIGRATE_UNMOVABLE), alloc(a, 0, mz.MIGRATE_UNMOVABLE)),
                            snap, POL, {})
    # not pinned to exactly 1: it is the only list seen drawn on, so it takes the whole count
    assert lists[(2, 0)] == {unmov: snap.zones[2].pcp[0]["count"]}
# The compiled passes (replay_core.learn_round_trips, next_on_cpu, pcp_flows) against the Python
# loops they replaced, kept here verbatim as the reference (they return net, low and exact).

def _ref_learn(ev: np.ndarray, kpb_type: dict[int, int], movable_exact: bool = True) -> int:
    pending: dict[int, int] = {}
    added = 0
    for kind, pfn, order, mt in zip(ev[:, 0].tolist(), ev[:, 2].tolist(), ev[:, 3].tolist(), ev[:, 4].tolist()):
        if pfn < 0:
            continue
        if kind == P.K_PAGE_FREE:
            pending[pfn] = order
        elif kind in (P.K_PAGE_ALLOC, P.K_ZONE_LOCKED, P.K_PCPU_DRAIN, P.K_EXTFRAG):
            fo = pending.pop(pfn, None)
            if (fo is not None and kind == P.K_PAGE_ALLOC and order == fo and 0 <= mt < mz.MIGRATE_PCPTYPES
                    and (movable_exact or mt != mz.MIGRATE_MOVABLE)):
                pb = pfn >> mz.PAGEBLOCK_ORDER
                if pb not in kpb_type:
                    kpb_type[pb] = mt
                    added += 1
    return added


def _ref_flows(chunks, snap, policy, kpb_type: dict[int, int],
               untraced: dict[int, list] | None = None, unexplained: list | None = None) -> dict:
    pind = policy.pcp_pindex
    parts = []
    for a in chunks:
        if len(a):
            parts.append(np.column_stack([a[:, P.C_KIND], a[:, P.C_CPU], a[:, P.C_PFN], a[:, P.C_F0],
                                          a[:, P.C_F0 + 1], a[:, P.C_F0 + 2], a[:, P.C_F0 + 3],
                                          snap.zones_of_kernel_pfns(a[:, P.C_PFN]), a[:, P.C_LINE]]))
    ev = np.concatenate(parts) if parts else np.zeros((0, 9), dtype=np.int64)
    above = [t for t in range(mz.MIGRATE_PCPTYPES, mz.MIGRATE_TYPES) if t != mz.MIGRATE_ISOLATE]
    _ref_learn(ev, kpb_type, not any(zs.blocks[t] for zs in snap.zones for t in above))
    # the next event of the same CPU, for each record (kind, pfn): a one-block "refill" that is
    # followed by the allocation of that block may be rmqueue_buddy() after a failed
    # pcp_spin_trylock() (percpu_refill is set by order and type, not by the path)
    nxt_kind = np.full(len(ev), -1, dtype=np.int64)
    nxt_pfn = np.full(len(ev), -1, dtype=np.int64)
    seen: dict[int, int] = {}
    for i in range(len(ev) - 1, -1, -1):
        c = int(ev[i, 1])
        j = seen.get(c)
        if j is not None:
            nxt_kind[i], nxt_pfn[i] = ev[j, 0], ev[j, 2]
        seen[c] = i
    nxt_kind, nxt_pfn = nxt_kind.tolist(), nxt_pfn.tolist()
    net: dict[tuple, int] = {}
    low: dict[tuple, int] = {}
    exact: dict[tuple, int] = {}
    last_kind: dict[int, int] = {}
    last_pfn: dict[int, int] = {}
    last_buddy: dict[int, int] = {}
    alloc_mt: dict[int, int] = {}
    taken = (P.K_ZONE_LOCKED, P.K_EXTFRAG)  # a block taken under the zone lock
    on_list: dict[int, tuple] = {}  # pfn -> (key, order, mt) while it sits on a per-CPU list
    members: dict[tuple, set] = {}  # key -> pfns on that list (those the trace put there)

    def leave(pfn):
        k = on_list.pop(pfn, None)
        if k is not None:
            members[k[0]].discard(pfn)

    def bulk(pfns, line):
        for q in sorted(pfns):
            k, o, m = on_list.pop(q)
            members[k].discard(q)
            flow(k, -(1 << o))  # it left the list with no event
            if o != 0:  # alloc_pages_bulk() takes order 0 only
                if unexplained is not None:
                    unexplained.append(line)
            elif untraced is not None:
                untraced.setdefault(line, []).append((q, o, m, k[1]))

    def flow(key, d):
        v = net.get(key, 0) + d
        net[key] = v
        if -v > low.get(key, 0):
            low[key] = -v

    for i, (kind, cpu, pfn, f0, f1, f2, f3, z, line) in enumerate(zip(*(ev[:, j].tolist() for j in range(9)))):
        prev = last_kind.get(cpu)
        prev_pfn = last_pfn.get(cpu)
        last_kind[cpu] = kind
        last_pfn[cpu] = pfn
        if pfn < 0 or kind not in (P.K_PAGE_ALLOC, P.K_PAGE_FREE, P.K_ZONE_LOCKED, P.K_PCPU_DRAIN, P.K_EXTFRAG):
            continue
        if kind == P.K_EXTFRAG:
            if prev == P.K_ZONE_LOCKED and prev_pfn == pfn:
                continue  # try_to_claim_block() then __rmqueue_smallest(): zone_locked counted it
            f0, f1, f2 = f0, f3, 1  # alloc_order, alloc_migratetype; a refill if per-CPU eligible
        order = f0
        if z < 0 or order < 0 or order >= len(pind):
            continue
        if kind == P.K_PAGE_FREE:
            # The list of the pageblock's type: known where the trace drained or refilled from
            # that pageblock or reallocated a page of it from a per-CPU list, else most likely
            # the type the page was allocated as.
            mt = kpb_type.get(pfn >> mz.PAGEBLOCK_ORDER, alloc_mt.pop(pfn, mz.MIGRATE_MOVABLE))
        else:
            mt = f1
            if kind == P.K_PAGE_ALLOC:
                alloc_mt[pfn] = mt
        if mt < 0 or mt >= mz.MIGRATE_TYPES or mt == mz.MIGRATE_ISOLATE:
            continue
        if mt >= mz.MIGRATE_PCPTYPES:
            mt = mz.MIGRATE_MOVABLE
        pi = pind[order][mt]
        if pi < 0:
            continue
        key = (z, cpu, pi)
        n = 1 << order
        if kind in taken:
            if f2 == 1:
                if prev not in taken:
                    one_block = nxt_kind[i] == P.K_PAGE_ALLOC and nxt_pfn[i] == pfn
                    if members.get(key) and not one_block:
                        bulk(members[key], line)
                    if key not in exact and not one_block:
                        exact[key] = -net.get(key, 0)
                flow(key, n)
                leave(pfn)
                on_list[pfn] = (key, order, mt)
                members.setdefault(key, set()).add(pfn)
            else:
                last_buddy[cpu] = pfn
        elif kind == P.K_PAGE_ALLOC:
            leave(pfn)
            if last_buddy.pop(cpu, -1) == pfn:
                continue
            flow(key, -n)
        elif kind == P.K_PAGE_FREE:
            if pfn in on_list:
                bulk((pfn,), line)
            flow(key, n)
            on_list[pfn] = (key, order, mt)
            members.setdefault(key, set()).add(pfn)
        else:
            leave(pfn)
            flow(key, -n)
    return net, low, exact


def _lists_from(snap, policy, low, exact):
    """infer_pcp_lists()' conclusion from (low, exact), as in cmasim.trace.replay."""
    import inspect

    import cmasim.trace.replay as R

    body = inspect.getsource(R.infer_pcp_lists)
    tail = body[body.index("    out: dict = {}"):]
    ns = {"snap": snap, "low": low, "exact": exact, "pind": policy.pcp_pindex, "mz": mz}
    exec("def f():\n" + tail, ns)
    return ns["f"]()


def _synthetic_rows():
    """Refills (zone_locked and extfrag-only), buddy allocations, drains, frees to learned
    pageblock types, round trips, double frees and refills of lists still holding traced pages
    (alloc_pages_bulk()), on two CPUs, then random traffic over a small pfn pool."""
    u, m, r = mz.MIGRATE_UNMOVABLE, mz.MIGRATE_MOVABLE, mz.MIGRATE_RECLAIMABLE
    pb1, pb2 = NORMAL + 0x4000, NORMAL + 0x4200
    rows = [free(pb1 + 1, 0), alloc(pb1 + 1, 0, u),  # round trip: pb1 is UNMOVABLE
            free(pb1 + 2, 0), free(pb1 + 5, 0, cpu=1),  # frees to the learned type
            locked(pb2 + 8, 0, u),  # a refill: pb1+2 was taken untraced
            locked(pb2 + 6, 0, u), locked(pb2 + 3, 0, u), locked(pb2 + 9, 0, u), alloc(pb2 + 8, 0, u),
            locked(pb2 + 16, 0, u), alloc(pb2 + 16, 0, u),  # one block: no bulk
            locked(pb2 + 20, 0, u),  # a refill: pb2+3, 6 and 9 were taken untraced, in pfn order
            extfrag(pb2 + 64, 2, 10, r, u),  # extfrag-only refill
            locked(pb2 + 68, 2, r), extfrag(pb2 + 68, 2, 3, r, u),  # counted once
            alloc(pb2 + 64, 2, r), alloc(pb2 + 68, 2, r), alloc(pb2 + 72, 2, r),
            free(pb1 + 5, 0, cpu=1),  # freed twice: bulk of one page
            rec(P.K_ZONE_LOCKED, pb2 + 128, 0, m, 0), alloc(pb2 + 128, 0, m),  # rmqueue_buddy()
            rec(P.K_PCPU_DRAIN, pb1 + 2, 0, u, cpu=1), rec(P.K_PCPU_DRAIN, pb2 + 300, 0, m),
            free(pb2 + 256, 9), alloc(pb2 + 256, 9, m), rec(P.K_CMA_RELEASE, -1, 0)]
    rng = np.random.default_rng(13)
    pool = [NORMAL + 0x8000 + i for i in range(0, 96, 4)] + [NORMAL + 0x8400 + i for i in range(0, 32, 4)]
    mts = [u, m, r, mz.MIGRATE_HIGHATOMIC, mz.MIGRATE_CMA, mz.MIGRATE_ISOLATE]
    for _ in range(3000):
        p = int(rng.choice(pool))
        o = int(rng.choice([0, 0, 0, 1, 2, 9, 11]))
        mt = int(rng.choice(mts, p=[.3, .35, .2, .05, .05, .05]))
        cpu = int(rng.integers(0, 3))
        k = rng.integers(0, 7)
        if k == 0:
            rows.append(free(p, o, cpu=cpu))
        elif k == 1:
            rows.append(alloc(p, o, mt, cpu=cpu))
        elif k == 2:
            rows.append(locked(p, o, mt, cpu=cpu))
        elif k == 3:
            rows.append(rec(P.K_ZONE_LOCKED, p, o, mt, 0, cpu=cpu))
        elif k == 4:
            rows.append(extfrag(p, o, int(rng.choice([3, 10])), mt, int(rng.choice(mts)), cpu=cpu))
        elif k == 5:
            rows.append(rec(P.K_PCPU_DRAIN, p, o, mt, cpu=cpu))
        else:
            rows.append(free(p, o, cpu=cpu))
            rows.append(alloc(p, o, mt, cpu=cpu))
    return rows


def test_compiled_inference_matches_the_python_loops():
    """infer_pcp_lists() (compiled record loops) gives the Python loops' lists, pageblock types
    (and their order) and untraced pages (and their order) on the synthetic records."""
    snap = load_snapshot(PYBUILD)
    rows = _synthetic_rows()
    known = {(NORMAL + 0x8400) >> mz.PAGEBLOCK_ORDER: mz.MIGRATE_RECLAIMABLE}
    kpb_ref, ut_ref, un_ref = dict(known), {}, []
    net, low, exact = _ref_flows(chunks(*rows), snap, POL, kpb_ref, ut_ref, un_ref)
    kpb, ut, un = dict(known), {}, []
    lists = infer_pcp_lists(chunks(*rows), snap, POL, kpb, ut, un)
    assert lists == _lists_from(snap, POL, low, exact)
    assert list(kpb.items()) == list(kpb_ref.items())
    assert list(ut.items()) == [(k, v) for k, v in ut_ref.items()]
    assert un == un_ref and len(un) > 0  # the random traffic leaves high-order pages on lists
    # the cases the records are there for
    pb1, pb2 = NORMAL + 0x4000, NORMAL + 0x4200
    assert kpb[pb1 >> mz.PAGEBLOCK_ORDER] == mz.MIGRATE_UNMOVABLE
    assert ut[int(rows[4][P.C_LINE])] == [(pb1 + 2, 0, 0, 0)]
    assert ut[int(rows[11][P.C_LINE])] == [(pb2 + 3, 0, 0, 0), (pb2 + 6, 0, 0, 0), (pb2 + 9, 0, 0, 0)]
    assert ut[int(rows[18][P.C_LINE])] == [(pb1 + 5, 0, 0, 1)]
    assert len(ut) > 5 and len(exact) > 5 and len(kpb) > len(known) + 1
