"""ftrace text output of the core's tracepoint records, in the kernel's field layouts.

Kernel: include/trace/events/kmem.h (mm_page_alloc, mm_page_free,
mm_page_alloc_zone_locked, mm_page_pcpu_drain, mm_page_alloc_extfrag) and the tracefs
`trace` line prefix `<comm>-<pid> [<cpu>] <flags> <secs.usecs>: `. `page=` is the
kernel's hashed pointer; here it is a deterministic stand-in derived from the pfn.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
from pathlib import Path
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


PY_EVENTS = ("cma_alloc_start", "cma_alloc_busy_retry", "cma_alloc_finish", "cma_release")
ALL_EVENTS = tuple(EVENT_NAMES.values()) + PY_EVENTS


class TraceEventError(ValueError):
    """An event name given to --trace-events is not one the simulator writes."""


def parse_events(spec: str | list[str] | None) -> tuple[int, set[str]]:
    """`--trace-events` (comma-separated names, `all`, or None for all) -> (core kind mask, names).

    The core's trace switch `H_TRACE_ON` is a bit mask of record kinds (cmasim.mm.freelist
    trace_emit), so events left out are never stored and cannot fill the buffer.
    """
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec or []) if n.strip()]
    if not names or names == ["all"]:
        names = list(ALL_EVENTS)
    bad = [n for n in names if n not in ALL_EVENTS]
    if bad:
        raise TraceEventError(f"--trace-events: unknown event {bad[0]!r}; known: {', '.join(ALL_EVENTS)}")
    kinds = {v: k for k, v in EVENT_NAMES.items()}
    mask = 0
    for n in names:
        if n in kinds:
            mask |= 1 << kinds[n]
    return mask, set(names)


def open_text(path: Path) -> TextIO:
    """A text file for writing, compressed when its name ends in .xz or .gz."""
    if path.suffix == ".xz":
        return lzma.open(path, "wt", preset=1)
    if path.suffix == ".gz":
        return gzip.open(path, "wt", compresslevel=4)
    return open(path, "w")


def header_lines(written: int, lost: int, nr_cpus: int) -> str:
    """The comment header a tracefs `trace` file starts with (kernel/trace/trace.c print_trace_header,
    print_func_help_header_irq for the nop tracer)."""
    return (f"# tracer: nop\n#\n# entries-in-buffer/entries-written: {written}/{written + lost}   #P:{nr_cpus}\n#\n"
            "#                                _-----=> irqs-off/BH-disabled\n"
            "#                               / _----=> need-resched\n"
            "#                              | / _---=> hardirq/softirq\n"
            "#                              || / _--=> preempt-depth\n"
            "#                              ||| / _-=> migrate-disable\n"
            "#                              |||| /     delay\n"
            "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
            "#              | |         |   |||||     |         |\n")


class TraceSink:
    """Drains the core's trace buffer into a text file (or counts records when no file).

    Records the core could not store because its buffer was full are marked where they were
    lost, as ftrace marks ring-buffer overruns: a line `CPU:N [LOST M EVENTS]` after the last
    record that made it (N: the CPU the simulation was on when the buffer was drained; the
    core keeps one buffer, not one per CPU). With `path`, the body goes to a temporary file
    and `close()` writes the tracefs header (which needs the final counts) and the body into
    `path`, compressed when it ends in .xz or .gz. `events` restricts the Python-side events
    (cma_*); the core's kinds are restricted by the machine's trace mask.
    """

    def __init__(self, path: Path | None = None, events: set[str] | None = None):
        self.path = path
        self.events = events
        self.body_path = path.with_name("." + path.name + ".body") if path is not None else None
        self.out = open(self.body_path, "w") if self.body_path is not None else None
        self.written = 0
        self.lost_marked = 0

    def _mark_lost(self, machine) -> None:
        lost = self.lost(machine)
        if lost > self.lost_marked:
            if self.out is not None:
                self.out.write(f"CPU:{int(machine.C[mz.H_CPU])} [LOST {lost - self.lost_marked} EVENTS]\n")
            self.lost_marked = lost

    def flush(self, machine) -> None:
        C = machine.C
        n = int(C[mz.H_TRACE_N])
        if n:
            base = int(C[mz.H_TRACE_BASE])
            recs = C[base:base + n * mz.TR_SIZE].reshape(n, mz.TR_SIZE)
            if self.out is not None:
                self.out.writelines(format_records(recs))
            self.written += n
            C[mz.H_TRACE_N] = 0
        self._mark_lost(machine)

    def line(self, machine, event: str, fields: str, cpu: int = 0) -> None:
        """A tracepoint emitted by Python-side kernel code (cma_*), after the core's records."""
        if self.events is not None and event not in self.events:
            return
        if self.out is not None:
            self.out.write(f"{prefix(machine.now_ns, cpu)}{event}: {fields}\n")
        self.written += 1

    def close(self, machine) -> None:
        """Finish the file: header with the final counts, then the body (see the class docstring)."""
        if self.out is None:
            return
        self.out.close()
        self.out = None
        with open_text(self.path) as f, open(self.body_path) as body:
            f.write(header_lines(self.written, self.lost(machine), machine.cfg.nr_cpus))
            shutil.copyfileobj(body, f, 1 << 20)
        self.body_path.unlink()

    def discard(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
        if self.body_path is not None:
            self.body_path.unlink(missing_ok=True)

    @staticmethod
    def lost(machine) -> int:
        return int(machine.C[mz.H_TRACE_LOST])
