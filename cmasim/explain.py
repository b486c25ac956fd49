"""`cmasim explain`: why each `alloc_contig_range()` range of a run was busy.

A kernel developer answers "why did this cma_alloc() fail" with `page_owner` and the
`cma_alloc_busy_retry` / `test_pages_isolated` / `mm_migrate_pages` tracepoints: which pfn
`test_pages_isolated()` stopped at (mm/page_isolation.c), whose page it was and who held a
pin on it. `attribute_busy()` collects the same facts at the moment the range fails (the
simulated clock has not moved since `alloc_contig_range()` returned): the first busy pfn, the
block covering it (head, order, allocated or free), its owner kind, its pageblock's
migratetype, its pin count and whether the pin is FOLL_LONGTERM, the pinner that holds it and
until when (from the pending unpin timer, cmasim.mm.gup pin_user_page), and why the range gave
up — "migration gave up" (a batch still failed after 5 migrate_pages() calls), "skipped at
the isolation scan" (test_pages_isolated() met a page the scan skipped, e.g. pinned
anonymous memory) or "isolation failed" (start_isolate_page_range() refused a pageblock) —
plus which policy rule of this project would have avoided it. `cmasim run` writes one JSON
line per busy range to `explain.jsonl`; `summarize()` counts them by cause. Never prints.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from cmasim.mm import mmzone as mz

OWNER_KINDS = {mz.OW_NONE: "none", mz.OW_ANON: "anon", mz.OW_FILE: "file", mz.OW_FILE_DIRTY: "file (dirty)",
               mz.OW_SLAB: "unmovable (slab)", mz.OW_SLAB_RECLAIMABLE: "reclaimable (slab)",
               mz.OW_PGTABLE: "unmovable (page table)", mz.OW_DEVICE: "device (cma_alloc buffer)"}
STATES = {mz.PG_TAIL: "tail", mz.PG_BUDDY: "free (buddy)", mz.PG_PCP: "free (per-CPU list)", mz.PG_ALLOC: "allocated"}
CAUSES = {1: "migration gave up", 2: "skipped at the isolation scan", 0: "isolation failed"}


def _pin_holder(m, head: int) -> tuple[int | None, float | None]:
    """(pinner index, unpin time in ms) of the pending unpin timer of `head`, if any."""
    C = m.C
    b, n = int(C[mz.H_HEAP]), int(C[mz.H_HEAP_N])
    heap = C[b:b + 3 * n].reshape(n, 3)
    for t, _seq, payload in heap.tolist():
        if payload >> 56 == mz.TIMER_UNPIN and payload & 0xFFFFFFFF == head:
            tag = (payload >> 32) & 0xFFFFFF
            return (tag - 1 if tag else None), round(t / 1e6, 3)
    return None, None


def _avoided_by(page: dict, cause: str) -> str:
    """Which rule of this project's policies would have kept the range from being busy."""
    if page.get("pinned"):
        if page["longterm"]:
            return ("FOLL_LONGTERM must migrate the page out of CMA before pinning (mainline "
                    "check_and_migrate_movable_folios(); the longterm-pin-on-cma-bug record skips it)")
        return ("+pin-pending-migration would have made this short-term pin wait for the migration; "
                "+short-pin-migrates-cma would have moved the page out of CMA before pinning it")
    kind = page.get("owner", "")
    if kind.startswith("unmovable") or kind.startswith("reclaimable"):
        return "nothing but keeping non-movable allocations out of CMA (a contract violation of the policy)"
    if cause == "skipped at the isolation scan":
        return ("the page was most likely pinned when the isolation scan passed it (skipped, never migrated) and "
                "the pin ended before the range gave up: +pin-pending-migration would have made that pin wait")
    if cause == "migration gave up":
        return ("a pin or reference that came and went during migration (short holds: +pin-pending-migration; "
                "transient -EAGAIN: none of the policies)")
    if cause == "isolation failed":
        return "an unmovable page inside a CMA pageblock: none of the policies"
    return "none of the modelled policies (the page was not pinned when the range gave up)"


def attribute_busy(m, area: str, start: int, count: int, fin_pfn: int, cause: int, t_ns: int) -> dict:
    """One busy range, explained from the machine's state right after it failed."""
    S, C = m.S, m.C
    rec: dict = {"t_ms": round(t_ns / 1e6, 3), "area": area, "pfn": start, "count": count,
                 "cause": CAUSES.get(cause, "unknown"), "first_busy_pfn": None}
    if not (start <= fin_pfn < start + count):
        return rec
    rec["first_busy_pfn"] = fin_pfn
    pinfo = mz.node_field(S, mz.F_PINFO, int(C[mz.H_N]))
    head = fin_pfn
    order = 0
    while (int(pinfo[head]) >> mz.PI_STATE_SHIFT) & 3 == mz.PG_TAIL and order < mz.MAX_PAGE_ORDER:
        order += 1
        head = fin_pfn & ~((1 << order) - 1)
    w = int(pinfo[head])
    state = (w >> mz.PI_STATE_SHIFT) & 3
    pb = int(S[int(C[mz.H_PB]) + (fin_pfn >> mz.PAGEBLOCK_ORDER)])
    mt = mz.MIGRATE_ISOLATE if pb & mz.PB_ISOLATE else pb & mz.PB_MT_MASK
    page = {"head": head, "order": w & mz.PI_ORDER_MASK, "state": STATES.get(state, "?"),
            "pageblock": mz.MIGRATETYPE_NAMES[mt] if mt < len(mz.MIGRATETYPE_NAMES) else "Isolate"}
    if state == mz.PG_ALLOC:
        ow = int(S[mz.NODE_W * head + mz.F_OWNER])
        pins = (ow >> mz.OW_PIN_SHIFT) & mz.OW_PIN_MASK
        page.update(owner=OWNER_KINDS.get(ow & mz.OW_KIND_MASK, "?"), pinned=pins > 0, pin_count=pins,
                    longterm=bool(ow & mz.OW_LONGTERM))
        if pins:
            pinner, until = _pin_holder(m, head)
            page.update(pinner=pinner, pinned_until_ms=until)
    rec["page"] = page
    rec["avoided_by"] = _avoided_by(page, rec["cause"])
    return rec


class ExplainError(ValueError):
    """A broken explain.jsonl; the message names the file and line."""


def write_jsonl(records: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def read_jsonl(folder: Path) -> list[dict]:
    f = Path(folder) / "explain.jsonl"
    if not f.is_file():
        raise FileNotFoundError(f"{folder}: no explain.jsonl (made by cmasim run; this folder is not a run's, or "
                                f"predates it)")
    out = []
    for n, line in enumerate(f.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ExplainError(f"{f}:{n}: not a JSON record ({e.msg}, column {e.colno})") from None
    return out


def summarize(records: list[dict]) -> dict:
    """Busy ranges by cause, by what held the first busy page, and by the rule that would have helped."""
    def what(r: dict) -> str:
        p = r.get("page")
        if p is None:
            return "no busy page found in the range"
        if p.get("pinned"):
            return f"{p['owner']} page pinned ({'FOLL_LONGTERM' if p['longterm'] else 'short-term'})"
        return f"{p.get('owner', p['state'])} page, not pinned"
    return {"busy_ranges": len(records), "by_cause": dict(Counter(r["cause"] for r in records).most_common()),
            "by_page": dict(Counter(what(r) for r in records).most_common()),
            "avoided_by": dict(Counter(r.get("avoided_by", "—") for r in records).most_common())}
