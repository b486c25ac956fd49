"""ftrace text output of the core's tracepoint records, in the kernel's field layouts.

Kernel: include/trace/events/kmem.h (mm_page_alloc, mm_page_free,
mm_page_alloc_zone_locked, mm_page_pcpu_drain, mm_page_alloc_extfrag) and the tracefs
`trace` line prefix `<comm>-<pid> [<cpu>] <flags> <secs.usecs>: `. `page=` is the
kernel's hashed pointer; here it is a deterministic stand-in derived from the pfn.
"""

from __future__ import annotations

from typing import Iterable, TextIO

import numpy as np

from cmasim.gfp import format_gfp
from cmasim.mm import mmzone as mz

EVENT_NAMES = {
    mz.TR_MM_PAGE_ALLOC: "mm_page_alloc",
    mz.TR_MM_PAGE_FREE: "mm_page_free",
    mz.TR_MM_PAGE_ALLOC_ZONE_LOCKED: "mm_page_alloc_zone_locked",
    mz.TR_MM_PAGE_PCPU_DRAIN: "mm_page_pcpu_drain",
    mz.TR_MM_PAGE_ALLOC_EXTFRAG: "mm_page_alloc_extfrag",
    mz.TR_MM_MIGRATE_PAGES: "mm_migrate_pages",
    mz.TR_TEST_PAGES_ISOLATED: "test_pages_isolated",
    mz.TR_COMPACTION_BEGIN: "mm_compaction_begin",
    mz.TR_COMPACTION_END: "mm_compaction_end",
}
MIGRATE_MODES = {mz.MIGRATE_ASYNC: "MIGRATE_ASYNC", mz.MIGRATE_SYNC_LIGHT: "MIGRATE_SYNC_LIGHT",
                 mz.MIGRATE_SYNC: "MIGRATE_SYNC"}
MIGRATE_REASONS = {mz.MR_COMPACTION: "compaction", mz.MR_CONTIG_RANGE: "contig_range",
                   mz.MR_LONGTERM_PIN: "longterm_pin"}
COMPACT_STATUS = {1: "skipped", 2: "continue", 3: "complete", 4: "success"}
_LOCKED = {mz.TR_MM_PAGE_ALLOC_ZONE_LOCKED, mz.TR_MM_PAGE_PCPU_DRAIN, mz.TR_MM_PAGE_ALLOC_EXTFRAG}


def prefix(t_ns: int, cpu: int, flags: str = ".....", comm: str = "cmasim", pid: int = 1) -> str:
    secs = f"{t_ns // 1_000_000_000}.{(t_ns // 1000) % 1_000_000:06d}"
    return f"{comm:>16}-{pid:<7d} [{cpu:03d}] {flags} {secs:>12}: "


def hashed_page(pfn: int) -> str:
    """A stand-in for %p of struct page: 16 hex digits, stable per pfn."""
    return f"{(pfn * 0x9E3779B97F4A7C15 + 0x1234567) & 0xFFFFFFFF:016x}" if pfn >= 0 else "0000000000000000"


def format_fields(kind: int, pfn: int, f: list[int]) -> str:
    if kind == mz.TR_MM_PAGE_ALLOC:
        shown = pfn if pfn >= 0 else 0
        return (f"page={hashed_page(pfn)} pfn=0x{shown:x} order={f[0]} migratetype={f[1]} "
                f"gfp_flags={format_gfp(f[2])}")
    if kind == mz.TR_MM_PAGE_FREE:
        return f"page={hashed_page(pfn)} pfn=0x{pfn:x} order={f[0]}"
    if kind == mz.TR_MM_PAGE_ALLOC_ZONE_LOCKED:
        return f"page={hashed_page(pfn)} pfn=0x{pfn:x} order={f[0]} migratetype={f[1]} percpu_refill={f[2]}"
    if kind == mz.TR_MM_PAGE_PCPU_DRAIN:
        return f"page={hashed_page(pfn)} pfn=0x{pfn:x} order={f[0]} migratetype={f[1]}"
    if kind == mz.TR_MM_PAGE_ALLOC_EXTFRAG:
        fragmenting = 1 if f[1] < mz.PAGEBLOCK_ORDER else 0
        return (f"page={hashed_page(pfn)} pfn=0x{pfn:x} alloc_order={f[0]} fallback_order={f[1]} "
                f"pageblock_order={mz.PAGEBLOCK_ORDER} alloc_migratetype={f[2]} fallback_migratetype={f[3]} "
                f"fragmenting={fragmenting} change_ownership={f[4]}")
    if kind == mz.TR_MM_MIGRATE_PAGES:
        return (f"nr_succeeded={f[0]} nr_failed={f[1]} nr_thp_succeeded=0 nr_thp_failed=0 nr_thp_split=0 "
                f"nr_split=0 mode={MIGRATE_MODES[f[2]]} reason={MIGRATE_REASONS.get(f[3], 'contig_range')}")
    if kind == mz.TR_TEST_PAGES_ISOLATED:
        return (f"start_pfn=0x{pfn:x} end_pfn=0x{f[0]:x} fin_pfn=0x{f[1]:x} "
                f"ret={'success' if f[1] >= f[0] else 'fail'}")
    if kind in (mz.TR_COMPACTION_BEGIN, mz.TR_COMPACTION_END):
        mode = "sync" if f[3] else "async"
        text = (f"zone_start=0x{pfn:x} migrate_pfn=0x{f[0]:x} free_pfn=0x{f[1]:x} zone_end=0x{f[2]:x}, "
                f"mode={mode}")
        if kind == mz.TR_COMPACTION_END:
            text += f" status={COMPACT_STATUS.get(f[4], 'complete')}"
        return text
    raise ValueError(f"unknown trace record kind {kind}")


def format_records(records: np.ndarray, comm: str = "cmasim", pid: int = 1) -> Iterable[str]:
    """Yield one ftrace line per record (rows of TR_SIZE int64)."""
    for r in records.tolist():
        kind, t_ns, cpu, pfn = r[0], r[1], r[2], r[3]
        flags = "d..2." if kind in _LOCKED else "....."
        yield f"{prefix(t_ns, cpu, flags, comm, pid)}{EVENT_NAMES[kind]}: {format_fields(kind, pfn, r[4:])}\n"


class TraceSink:
    """Drains the core's trace buffer into a text file (or counts records when no file)."""

    def __init__(self, out: TextIO | None):
        self.out = out
        self.written = 0

    def flush(self, machine) -> None:
        C = machine.C
        n = int(C[mz.H_TRACE_N])
        if n == 0:
            return
        base = int(C[mz.H_TRACE_BASE])
        recs = C[base:base + n * mz.TR_SIZE].reshape(n, mz.TR_SIZE)
        if self.out is not None:
            self.out.writelines(format_records(recs))
        self.written += n
        C[mz.H_TRACE_N] = 0

    def line(self, machine, event: str, fields: str, cpu: int = 0) -> None:
        """A tracepoint emitted by Python-side kernel code (cma_*), after the core's records."""
        if self.out is not None:
            self.out.write(f"{prefix(machine.now_ns, cpu)}{event}: {fields}\n")
        self.written += 1

    @staticmethod
    def lost(machine) -> int:
        return int(machine.C[mz.H_TRACE_LOST])
