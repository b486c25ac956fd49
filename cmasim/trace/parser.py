"""Streaming parser of ftrace text: tracefs `trace`/`trace_pipe` and `trace-cmd report` output.

Kernel: include/trace/events/kmem.h, cma.h, migrate.h, compaction.h, page_isolation.h and the
tracefs line prefix printed by kernel/trace/trace_output.c (`<comm>-<pid> [<cpu>] <flags>
<secs.usecs>: <event>: <fields>`); shared/docs/kernel-model.md §10.6 and §6.4 list the field
layouts.

One pass, constant memory: `TraceParser.iter_chunks` yields int64 numpy arrays ``[n, NCOL]`` of
records ``(kind, time_ns, cpu, pid, pfn, f0, ..., f7, line)`` (see `COLUMNS` and the per-kind
field table `FIELDS`) for the columnar cache (`cmasim.trace.columnar`). Strings (CMA area
names, migrate modes and reasons, compaction statuses, unknown event names) are interned into
`TraceParser.strings`; the columns hold their ids.

Two paths give the same records and statistics. The reference, `iter_records`, decodes one
line at a time in Python (about 250,000 lines/s). The fast path (`iter_chunks`, the default)
takes about 1 MiB of text at a time: one numpy pass over the bytes finds the lines and their
space-separated tokens, and the six kmem formats (the bulk of any allocator trace) are decoded
for all lines at once, reading each value eight bytes at a time as a uint64 (SWAR digit
arithmetic); it only takes lines where that decoding provably agrees with the reference
(printable ASCII, the layouts the reference's `str.split()` path takes, values that fit), and
every other line (other events, headers, bad lines, unusual values) goes through the reference
code in line order. Compressed input is decompressed in a reader thread in large steps, which
overlaps the parse when a second core is free. docs/fidelity.md records the speeds; the tests
compare the two paths on the shared traces, on synthetic and mutated lines and on damaged files.

Accepted inputs: plain, gzip or xz files (detected by their magic bytes); with or without
`#` header comments, with or without the irqs-off/need-resched flags column, with or without
the `(tgid)` column; timestamps with any number of decimals (or none, for counter clocks);
`trace-cmd report`'s padded event names and its header lines (`version = 6`, `cpus=2`,
`CPU 0 is empty`).

Migratetype numbers are decoded per kernel flavour into the simulator's numbering (mainline
with CMA: 0 Unmovable, 1 Movable, 2 Reclaimable, 3 HighAtomic, 4 CMA, 5 Isolate):
``mainline`` (CONFIG_CMA=y) is the identity, ``mainline-nocma`` maps 4 to Isolate, ``android``
swaps CMA (3) and HighAtomic (4). GFP strings decode with `cmasim.gfp.parse_gfp`, extended
here with the flag names newer kernels print that the core does not model.

Bad input never stops the parse and is never silently dropped: every line that cannot be
used is counted per kind in `TraceParser.stats` with its first line numbers (garbled,
truncated, unknown_event, out_of_order, lost_events, bad_gfp, bad_migratetype; a number too
large for the int64 columns makes its line garbled). A file that is not a trace at all raises
`NotATraceError`.
"""

from __future__ import annotations

import gzip
import io
import itertools
import lzma
import queue
import re
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from cmasim import gfp as gfpmod
from cmasim.mm import mmzone as mz

# --- record layout --------------------------------------------------------------------------------
# Kinds 1..5 use the core's TR_* numbers so that simulated and kernel records compare directly.
K_PAGE_ALLOC = mz.TR_MM_PAGE_ALLOC  # 1
K_PAGE_FREE = mz.TR_MM_PAGE_FREE  # 2
K_ZONE_LOCKED = mz.TR_MM_PAGE_ALLOC_ZONE_LOCKED  # 3
K_PCPU_DRAIN = mz.TR_MM_PAGE_PCPU_DRAIN  # 4
K_EXTFRAG = mz.TR_MM_PAGE_ALLOC_EXTFRAG  # 5
K_FREE_BATCHED = 6
K_CMA_ALLOC_START = 10
K_CMA_ALLOC_FINISH = 11
K_CMA_BUSY_RETRY = 12
K_CMA_RELEASE = 13
K_MIGRATE_PAGES = 20
K_COMPACTION_BEGIN = 30
K_COMPACTION_END = 31
K_COMPACTION_OTHER = 32
K_TEST_PAGES_ISOLATED = 40

COLUMNS = ("kind", "time_ns", "cpu", "pid", "pfn", "f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "line")
NCOL = len(COLUMNS)
C_KIND, C_TIME, C_CPU, C_PID, C_PFN = 0, 1, 2, 3, 4
C_F0 = 5
C_LINE = 13  # line number in the input (1-based), for reports
ABSENT = -1  # a field the line's format version does not print

# What f0..f7 hold for each kind (pfn is -1 where the event has none).
FIELDS = {
    K_PAGE_ALLOC: ("order", "migratetype", "gfp"),  # pfn -1: failed allocation (printed pfn=0x0)
    K_PAGE_FREE: ("order",),
    K_FREE_BATCHED: ("order",),
    K_ZONE_LOCKED: ("order", "migratetype", "percpu_refill"),
    K_PCPU_DRAIN: ("order", "migratetype"),
    K_EXTFRAG: ("alloc_order", "fallback_order", "pageblock_order", "alloc_migratetype",
                "fallback_migratetype", "fragmenting", "change_ownership"),
    K_CMA_ALLOC_START: ("name", "count", "align", "available_count", "total_count"),
    K_CMA_ALLOC_FINISH: ("name", "count", "align", "errorno", "has_errorno"),
    K_CMA_BUSY_RETRY: ("name", "count", "align"),
    K_CMA_RELEASE: ("name", "count"),
    K_MIGRATE_PAGES: ("nr_succeeded", "nr_failed", "nr_thp_succeeded", "nr_thp_failed", "nr_thp_split",
                      "nr_split", "mode", "reason"),
    K_COMPACTION_BEGIN: ("migrate_pfn", "free_pfn", "zone_end", "sync"),  # pfn = zone_start
    K_COMPACTION_END: ("migrate_pfn", "free_pfn", "zone_end", "sync", "status"),
    K_COMPACTION_OTHER: ("event", "v0", "v1", "v2", "v3", "v4", "v5", "v6"),  # key=value numbers in order
    K_TEST_PAGES_ISOLATED: ("end_pfn", "fin_pfn", "ret"),  # pfn = start_pfn; ret 1 success, 0 fail
}
KIND_NAMES = {
    K_PAGE_ALLOC: "mm_page_alloc", K_PAGE_FREE: "mm_page_free", K_FREE_BATCHED: "mm_page_free_batched",
    K_ZONE_LOCKED: "mm_page_alloc_zone_locked", K_PCPU_DRAIN: "mm_page_pcpu_drain",
    K_EXTFRAG: "mm_page_alloc_extfrag", K_CMA_ALLOC_START: "cma_alloc_start",
    K_CMA_ALLOC_FINISH: "cma_alloc_finish", K_CMA_BUSY_RETRY: "cma_alloc_busy_retry",
    K_CMA_RELEASE: "cma_release", K_MIGRATE_PAGES: "mm_migrate_pages",
    K_COMPACTION_BEGIN: "mm_compaction_begin", K_COMPACTION_END: "mm_compaction_end",
    K_COMPACTION_OTHER: "compaction:*", K_TEST_PAGES_ISOLATED: "test_pages_isolated",
}

# --- migratetype flavours ------------------------------------------------------------------------------
# Printed number -> simulator number (mainline with CMA). -1: not a migratetype of that flavour.
FLAVOURS = {
    "mainline": (0, 1, 2, 3, 4, 5),
    "mainline-nocma": (0, 1, 2, 3, 5, -1),  # no CONFIG_CMA: 4 is Isolate
    "android": (0, 1, 2, 4, 3, 5),  # ACK: CMA before MIGRATE_PCPTYPES
}
FLAVOUR_TYPE_NAMES = {
    "mainline": ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate"),
    "mainline-nocma": ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate"),
    "android": ("Unmovable", "Movable", "Reclaimable", "CMA", "HighAtomic", "Isolate"),
}


def flavour_from_type_names(names: list[str]) -> str:
    """The flavour whose migratetype_names[] order matches a /proc/pagetypeinfo header."""
    for fl, tn in FLAVOUR_TYPE_NAMES.items():
        if tuple(names) == tn:
            return fl
    if "CMA" not in names:
        return "mainline-nocma"
    return "android" if names.index("CMA") < names.index("HighAtomic") else "mainline"


# --- GFP names the core's table lacks (newer kernels; bits above the modelled ones) ------------------
EXTRA_GFP = {
    "GFP_DMA": mz.GFP_DMA_, "GFP_DMA32": mz.GFP_DMA32_,
    "__GFP_ZEROTAGS": 1 << 32, "__GFP_SKIP_ZERO": 1 << 33, "__GFP_SKIP_KASAN": 1 << 34,
    "__GFP_NOLOCKDEP": 1 << 35, "__GFP_NO_OBJ_EXT": 1 << 36, "__GFP_UNMAPPED": 1 << 37,
}


class NotATraceError(ValueError):
    """The input is not ftrace text (binary data, another format, or no event line at all)."""


# --- opening files --------------------------------------------------------------------------------------
def open_raw(path: str | Path) -> IO[bytes]:
    """Open plain, .gz or .xz data by magic bytes, as a stream of (decompressed) bytes."""
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(16)
    if magic.startswith(b"\x17\x08\x44tracing"):
        raise NotATraceError(f"{path}: a trace-cmd binary trace.dat; convert it with `trace-cmd report {path.name} "
                             f"> trace.txt` first")
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")
    return open(path, "rb")


def open_text(path: str | Path) -> IO[str]:
    """Open plain, .gz or .xz text by magic bytes; undecodable bytes become U+FFFD (then: garbled)."""
    return io.TextIOWrapper(open_raw(path), encoding="utf-8", errors="replace", newline="\n")


# Errors of a compressed stream cut short (the lines before it are kept; the rest counts as truncated).
STREAM_ERRORS = (EOFError, lzma.LZMAError, gzip.BadGzipFile, zlib.error)
BLOCK_BYTES = 1 << 20  # text handed to the vectorized path at a time (about 7,500 lines)


def read_blocks(path: str | Path, size: int = BLOCK_BYTES, errors: list | None = None) -> Iterator[bytes]:
    """The (decompressed) bytes of a plain, .gz or .xz file in pieces of about `size`.

    Read through `open_raw` in large steps (a decompression step releases the GIL, so a
    reader thread overlaps the parse). A stream cut short or damaged ends the pieces, and its
    error is appended to `errors` (raised if `errors` is None); the data before the damage is
    then exactly what the text reader of the reference path (`open_text`, 8 KiB steps) gives.
    """
    yielded = 0
    raw = open_raw(path)
    try:
        parts: list[bytes] = []
        n = 0
        try:
            while b := raw.read1(size):
                parts.append(b)
                n += len(b)
                if n >= size:
                    block = b"".join(parts)
                    parts, n = [], 0
                    yielded += len(block)
                    yield block
        except STREAM_ERRORS as e:
            if errors is None:
                raise
            err = e
        else:
            if parts:
                yield b"".join(parts)
            return
    finally:
        raw.close()
    # A large step that meets the damage loses what it had decoded: decode again in the text
    # reader's steps, from where the pieces given so far end.
    with open_raw(path) as raw:
        parts, skip = [], yielded
        try:
            while b := raw.read1(1 << 13):
                if skip >= len(b):
                    skip -= len(b)
                    continue
                parts.append(b[skip:])
                skip = 0
        except STREAM_ERRORS as e:
            err = e
    errors.append(err)
    rest = b"".join(parts)
    for i in range(0, len(rest), size):
        yield rest[i:i + size]


def prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run the iterator `it` in a thread, `depth` items ahead (decompression overlaps parsing:
    lzma, zlib and numpy release the GIL). Exceptions are re-raised in the consumer."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for x in it:
                if not put((0, x)):
                    return
            put((1, None))
        except BaseException as e:  # noqa: BLE001 (handed to the consumer)
            put((2, e))

    th = threading.Thread(target=run, name="trace-reader", daemon=True)
    th.start()
    try:
        while True:
            tag, x = q.get()
            if tag == 0:
                yield x
            elif tag == 1:
                return
            else:
                raise x
    finally:
        stop.set()
        th.join()


# --- statistics -------------------------------------------------------------------------------------------
BAD_KINDS = ("garbled", "truncated", "unknown_event", "out_of_order", "lost_events", "bad_gfp",
             "bad_migratetype")


@dataclass
class ParseStats:
    """What the parser saw: line and event counts, and bad lines per kind with first line numbers."""

    max_examples: int = 5
    lines: int = 0
    header_lines: int = 0
    events: int = 0
    by_event: dict[str, int] = field(default_factory=dict)
    bad: dict[str, int] = field(default_factory=dict)
    bad_lines: dict[str, list[int]] = field(default_factory=dict)
    unknown_events: dict[str, int] = field(default_factory=dict)
    lost_events: int = 0  # events the ring buffer lost ([LOST n EVENTS] markers)
    first_ns: int = -1
    last_ns: int = -1
    wall_s: float = 0.0

    def add_bad(self, kind: str, lineno: int) -> None:
        self.bad[kind] = self.bad.get(kind, 0) + 1
        ex = self.bad_lines.setdefault(kind, [])
        if len(ex) < self.max_examples:
            ex.append(lineno)

    def add_bad_many(self, kind: str, linenos: np.ndarray) -> None:
        """add_bad for each of `linenos` (ascending), in one step."""
        if len(linenos) == 0:
            return
        self.bad[kind] = self.bad.get(kind, 0) + len(linenos)
        ex = self.bad_lines.setdefault(kind, [])
        room = self.max_examples - len(ex)
        if room > 0:
            ex.extend(int(x) for x in linenos[:room])

    def to_dict(self) -> dict:
        return {"lines": self.lines, "header_lines": self.header_lines, "events": self.events,
                "by_event": dict(sorted(self.by_event.items())), "bad": dict(sorted(self.bad.items())),
                "bad_first_lines": {k: v for k, v in sorted(self.bad_lines.items())},
                "unknown_events": dict(sorted(self.unknown_events.items())), "lost_events": self.lost_events,
                "first_ns": self.first_ns, "last_ns": self.last_ns,
                "lines_per_s": round(self.lines / self.wall_s) if self.wall_s > 0 else None}


class Strings:
    """Interned strings; ids are stable for one parse."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.names: list[str] = []

    def id(self, s: str) -> int:
        i = self.ids.get(s)
        if i is None:
            i = self.ids[s] = len(self.names)
            self.names.append(s)
        return i


class _Bad(Exception):
    def __init__(self, kind: str):
        self.kind = kind


# --- the line prefix -----------------------------------------------------------------------------------------
# Slow path (the fast path in TraceParser.parse_line handles the usual layouts with str methods).
_PREFIX_RE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[-\d]*\)\s+)?\[(?P<cpu>\d+)\]\s+(?:[^\s:]{1,8}\s+)?"
    r"(?P<ts>\d+(?:\.\d+)?):\s+(?:\w+:)?(?P<ev>\w+):(?P<rest>.*)$")
_LOST_RE = re.compile(r"^\s*CPU:\s*(\d+)\s+\[LOST\s+(\d+)\s+EVENTS\]")
_HEADER_RE = re.compile(r"^(version = |cpus=|CPU \d+ is empty|trace-cmd|\s*tracer:|\s*entries-in-buffer)")


def _ts_ns(ts: str) -> int:
    dot = ts.find(".")
    if dot < 0:
        return int(ts)
    frac = ts[dot + 1:]
    return int(ts[:dot]) * 1_000_000_000 + int((frac + "000000000")[:9])


def _hex(s: str) -> int:
    v = int(s, 16)
    return v - (1 << 64) if v >= 1 << 63 else v


# --- field parsers ------------------------------------------------------------------------------------------------
# Each returns the tuple (pfn, f0..f7) padded by the caller; raises ValueError/IndexError/_Bad on bad input.
_KV_RE = re.compile(r"(\w+)=(\S*)")


class TraceParser:
    """Parse ftrace text lines into records. One instance per input (holds stats and strings)."""

    def __init__(self, flavour: str = "mainline", max_examples: int = 5):
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown kernel flavour {flavour!r}; known: {', '.join(FLAVOURS)}")
        self.flavour = flavour
        self._mt = FLAVOURS[flavour]
        self._mt_table = np.array(self._mt + (-1,), dtype=np.int64)  # for the fast path; -1: invalid
        self.stats = ParseStats(max_examples=max_examples)
        self.strings = Strings()
        self._gfp_cache: dict[str, int] = {}
        self._gfp_bytes: dict[bytes, int] = {}  # the fast path's: -1 where `gfp` raises
        self._last_ns = -1
        self._seen_event = False
        self._nonevent = 0  # non-event lines before the first event line
        self.stream_error: str | None = None
        self._handlers = {
            "mm_page_alloc": self._page_alloc,
            "mm_page_free": self._page_free,
            "mm_page_free_batched": self._page_free_batched,
            "mm_page_alloc_zone_locked": self._zone_locked,
            "mm_page_pcpu_drain": self._pcpu_drain,
            "mm_page_alloc_extfrag": self._extfrag,
            "cma_alloc_start": self._cma_alloc_start,
            "cma_alloc_finish": self._cma_alloc_finish,
            "cma_alloc_busy_retry": self._cma_busy_retry,
            "cma_release": self._cma_release,
            "mm_migrate_pages": self._migrate_pages,
            "mm_compaction_begin": self._compaction_begin,
            "mm_compaction_end": self._compaction_end,
            "test_pages_isolated": self._test_pages_isolated,
        }

    # --- value decoding -------------------------------------------------------------------------------
    def mt(self, s: str) -> int:
        n = int(s)
        m = self._mt[n] if 0 <= n < len(self._mt) else -1
        if m < 0:
            raise _Bad("bad_migratetype")
        return m

    def gfp(self, s: str) -> int:
        v = self._gfp_cache.get(s)
        if v is not None:
            return v
        mask = 0
        if s not in ("none", "0", ""):
            for part in s.split("|"):
                if part in gfpmod.NAMES:
                    mask |= gfpmod.NAMES[part]
                elif part in EXTRA_GFP:
                    mask |= EXTRA_GFP[part]
                elif part.startswith("0x"):
                    mask |= int(part, 16)
                else:
                    raise _Bad("bad_gfp")
        self._gfp_cache[s] = mask
        return mask

    @staticmethod
    def _kv(toks: list[str], keys: tuple[str, ...]) -> list[str]:
        """Values of `keys`, which must appear in this order as the tokens."""
        if len(toks) != len(keys):
            raise _Bad("garbled")
        out = []
        for k, t in zip(keys, toks):
            if not t.startswith(k) or t[len(k):len(k) + 1] != "=":
                raise _Bad("garbled")
            out.append(t[len(k) + 1:])
        return out

    # --- kmem ---------------------------------------------------------------------------------------------
    def _page_alloc(self, t: list[str]):
        if len(t) != 5 or not (t[1].startswith("pfn=0x") and t[2].startswith("order=")
                               and t[3].startswith("migratetype=") and t[4].startswith("gfp_flags=")):
            raise _Bad("garbled")
        pfn = int(t[1][6:], 16)
        return (pfn if pfn else -1, int(t[2][6:]), self.mt(t[3][12:]), self.gfp(t[4][10:]))

    def _page_free(self, t: list[str]):
        if len(t) != 3 or not (t[1].startswith("pfn=0x") and t[2].startswith("order=")):
            raise _Bad("garbled")
        return (int(t[1][6:], 16), int(t[2][6:]))

    _page_free_batched = _page_free

    def _zone_locked(self, t: list[str]):
        if len(t) != 5 or not (t[1].startswith("pfn=0x") and t[2].startswith("order=")
                               and t[3].startswith("migratetype=") and t[4].startswith("percpu_refill=")):
            raise _Bad("garbled")
        return (int(t[1][6:], 16), int(t[2][6:]), self.mt(t[3][12:]), int(t[4][14:]))

    def _pcpu_drain(self, t: list[str]):
        if len(t) != 4 or not (t[1].startswith("pfn=0x") and t[2].startswith("order=")
                               and t[3].startswith("migratetype=")):
            raise _Bad("garbled")
        return (int(t[1][6:], 16), int(t[2][6:]), self.mt(t[3][12:]))

    _EXTFRAG_KEYS = ("page", "pfn", "alloc_order", "fallback_order", "pageblock_order", "alloc_migratetype",
                     "fallback_migratetype", "fragmenting", "change_ownership")

    def _extfrag(self, t: list[str]):
        v = self._kv(t, self._EXTFRAG_KEYS)
        return (_hex(v[1]), int(v[2]), int(v[3]), int(v[4]), self.mt(v[5]), self.mt(v[6]), int(v[7]), int(v[8]))

    # --- cma ---------------------------------------------------------------------------------------------------
    def _cma_alloc_start(self, t: list[str]):
        d = dict(_KV_RE.findall(" ".join(t)))
        name = self.strings.id(d["name"])
        if "request_count" in d:  # [Aug 2025 patch] name request_count available_count total_count align
            return (-1, name, int(d["request_count"]), int(d["align"]), int(d["available_count"]),
                    int(d["total_count"]))
        return (-1, name, int(d["count"]), int(d["align"]), ABSENT, ABSENT)

    def _cma_alloc_finish(self, t: list[str]):
        d = dict(_KV_RE.findall(" ".join(t)))
        has = "errorno" in d
        return (_hex(d["pfn"]), self.strings.id(d["name"]), int(d["count"]), int(d["align"]),
                int(d["errorno"]) if has else 0, 1 if has else 0)

    def _cma_busy_retry(self, t: list[str]):
        d = dict(_KV_RE.findall(" ".join(t)))
        return (_hex(d["pfn"]), self.strings.id(d["name"]), int(d["count"]), int(d["align"]))

    def _cma_release(self, t: list[str]):
        d = dict(_KV_RE.findall(" ".join(t)))
        return (_hex(d["pfn"]), self.strings.id(d["name"]), int(d["count"]))

    # --- migrate, compaction, isolation ---------------------------------------------------------------------
    def _migrate_pages(self, t: list[str]):
        d = dict(_KV_RE.findall(" ".join(t)))
        return (-1, int(d["nr_succeeded"]), int(d["nr_failed"]), int(d["nr_thp_succeeded"]),
                int(d["nr_thp_failed"]), int(d["nr_thp_split"]), int(d["nr_split"]) if "nr_split" in d else ABSENT,
                self.strings.id(d["mode"]), self.strings.id(d["reason"]))

    def _compaction_range(self, t: list[str]):
        d = dict(_KV_RE.findall(" ".join(t).replace(",", " ")))
        mode = d["mode"]
        return d, (_hex(d["zone_start"]), _hex(d["migrate_pfn"]), _hex(d["free_pfn"]), _hex(d["zone_end"]),
                   1 if mode == "sync" else 0 if mode == "async" else int(mode))

    def _compaction_begin(self, t: list[str]):
        return self._compaction_range(t)[1]

    def _compaction_end(self, t: list[str]):
        d, v = self._compaction_range(t)
        return v + (self.strings.id(d["status"]),)

    def _compaction_other(self, ev: str, t: list[str]):
        vals = [self.strings.id(ev)]
        for _k, s in _KV_RE.findall(" ".join(t).replace(",", " ")):
            if len(vals) == 8:
                break
            try:
                vals.append(int(s, 0))
            except ValueError:
                vals.append(self.strings.id(s))
        return (-1, *vals)

    def _test_pages_isolated(self, t: list[str]):
        d = dict(_KV_RE.findall(" ".join(t)))
        return (_hex(d["start_pfn"]), _hex(d["end_pfn"]), _hex(d["fin_pfn"]), 1 if d["ret"] == "success" else 0)

    # --- lines -----------------------------------------------------------------------------------------------------
    @staticmethod
    def _split(line: str):
        """(pid, cpu, ts, event, field tokens) or None if this is not an event line.

        Fast path: whitespace tokens with the timestamp at index 2 (no flags column) or 3
        (flags column), the usual tracefs and trace-cmd layouts. Anything else (a comm with
        spaces, a tgid column, an event name glued to its first field) goes through a regex.
        """
        t = line.split()
        if len(t) > 4:
            ts = t[3]
            if ts[-1:] == ":" and ts[:1].isdigit():
                k = 3
            else:
                ts = t[2]
                k = 2 if (ts[-1:] == ":" and ts[:1].isdigit()) else 0
            if k:
                c = t[k - 1] if k == 2 else t[1]
                ev = t[k + 1]
                if c[:1] == "[" and c[-1:] == "]" and ev[-1:] == ":":
                    pid = t[0].rpartition("-")[2]
                    if pid.isdigit() and c[1:-1].isdigit():
                        ev = ev[:-1]
                        if ":" in ev:
                            ev = ev.rpartition(":")[2]
                        return int(pid), int(c[1:-1]), ts[:-1], ev, t[k + 2:]
        m = _PREFIX_RE.match(line)
        if m is None:
            return None
        return int(m["pid"]), int(m["cpu"]), m["ts"], m["ev"], m["rest"].split()

    # --- the reference path: one line at a time ---------------------------------------------------------------
    def _line(self, line: str, lineno: int):
        """Decode one line: ``(event name, record)`` for a usable event line, None for a line that
        yields nothing (header, blank, bad: counted here), `_STOP` for a last line cut short.

        Order statistics (out_of_order, first/last time) and `by_event` are the caller's.
        """
        st = self.stats
        if line[-1:] != "\n":
            # The last line of a file cut short: its fields may be cut too, so it is not used.
            if line.strip():
                st.add_bad("truncated", lineno)
            return _STOP
        if line[:1] == "#":
            st.header_lines += 1
            return None
        sp = self._split(line)
        if sp is None:
            if not line.strip():
                return None
            m = _LOST_RE.match(line)
            if m:
                st.lost_events += int(m[2])
                st.add_bad("lost_events", lineno)
                return None
            if not self._seen_event:
                if _HEADER_RE.match(line):
                    st.header_lines += 1
                    return None
                self._nonevent += 1
                if self._nonevent >= 200:
                    raise NotATraceError(
                        f"no ftrace event line in the first {lineno} lines (line 1 reads "
                        f"{self._first_line!r}); expected tracefs `trace` text or `trace-cmd report` output")
            st.add_bad("garbled", lineno)
            return None
        self._seen_event = True
        pid, cpu, ts, ev, toks = sp
        h = self._handlers.get(ev)
        try:
            a, _, b = ts.partition(".")
            t_ns = int(a) * 1_000_000_000 + (int(b) * 1000 if len(b) == 6 else int((b + "000000000")[:9]))
            if h is not None:
                vals = h(toks)
                kind = _EV_KIND[ev]
            elif ev.startswith("mm_compaction_"):
                vals = self._compaction_other(ev, toks)
                kind = K_COMPACTION_OTHER
            else:
                st.add_bad("unknown_event", lineno)
                if len(st.unknown_events) < 64 or ev in st.unknown_events:
                    st.unknown_events[ev] = st.unknown_events.get(ev, 0) + 1
                return None
        except _Bad as e:
            st.add_bad(e.kind, lineno)
            return None
        except (ValueError, KeyError, IndexError):
            st.add_bad("garbled", lineno)
            return None
        rec = (kind, t_ns, cpu, pid) + vals + _PADS[len(vals)] + (lineno,)
        if max(rec) > _I64_MAX or min(rec) < -_I64_MAX - 1:  # a number past the int64 columns
            st.add_bad("garbled", lineno)
            return None
        return ev, rec

    def _begin(self) -> float:
        self._nonevent = 0
        self.stream_error = None
        return time.perf_counter()

    def _end(self, t0: float, nlines: int) -> None:
        st = self.stats
        st.events = sum(st.by_event.values())
        st.lines += nlines
        st.last_ns = self._last_ns
        st.wall_s += time.perf_counter() - t0

    def _check_seen(self, nlines: int) -> None:
        if not self._seen_event and self._nonevent:
            raise NotATraceError(f"no ftrace event line in {nlines} lines (line 1 reads {self._first_line!r}); "
                                 f"expected tracefs `trace` text or `trace-cmd report` output")

    def iter_records(self, lines: Iterable[str]) -> Iterator[tuple]:
        """Yield one record tuple (NCOL ints) per usable event line: the reference path, one line
        at a time in Python. `iter_chunks` gives the same records, faster."""
        st = self.stats
        by_event = st.by_event
        t0 = self._begin()
        lineno = 0
        last_ns = self._last_ns
        try:
            for line in lines:
                lineno += 1
                r = self._line(line, lineno)
                if r is None:
                    continue
                if r is _STOP:
                    break
                ev, rec = r
                t_ns = rec[1]
                if t_ns < last_ns:
                    # Kept (the simulated clock never runs backwards), but counted.
                    st.add_bad("out_of_order", lineno)
                else:
                    last_ns = t_ns
                if st.first_ns < 0:
                    st.first_ns = t_ns
                by_event[ev] = by_event.get(ev, 0) + 1
                yield rec
        except STREAM_ERRORS as e:  # compressed stream cut short
            st.add_bad("truncated", lineno + 1)
            self.stream_error = str(e)
        finally:
            self._last_ns = last_ns
            self._end(t0, lineno)
        self._check_seen(lineno)

    _first_line = ""

    def iter_file(self, path: str | Path) -> Iterator[tuple]:
        """Reference path over a file: record tuples."""
        f = open_text(path)
        try:
            first = f.readline()
            if "\x00" in first or "\ufffd" in first[:64]:
                raise NotATraceError(f"{path}: binary data, not ftrace text")
            self._first_line = first[:80].rstrip("\n")
            yield from self.iter_records(_chain_first(first, f))
        finally:
            f.close()

    # --- the fast path: vectorized over blocks of lines ----------------------------------------------------
    def _order(self, recs: np.ndarray) -> None:
        """Order statistics of records in line order (as iter_records keeps them one by one)."""
        if len(recs) == 0:
            return
        st = self.stats
        t = recs[:, C_TIME]
        run = np.maximum.accumulate(np.concatenate(([self._last_ns], t)))
        late = np.flatnonzero(t < run[:-1])
        if len(late):
            st.add_bad_many("out_of_order", recs[late, C_LINE])
        self._last_ns = int(run[-1])
        if st.first_ns < 0:
            st.first_ns = int(t[0])

    def _block(self, buf: bytes, nbytes: int, base: int, lines: list[str] | None = None) -> tuple[np.ndarray, int]:
        """Records of the `nbytes` first bytes of `buf` (whole lines, the last ending in a newline),
        numbered from `base` + 1. The fast path decodes the lines it can; every other line goes
        through `_line` (the reference), and the two are merged in line order. `lines`: the same
        lines as str (given when the bytes were encoded from them), else decoded from `buf`.
        Returns the records and the number of lines."""
        a = np.frombuffer(buf, np.uint8, count=nbytes)
        nl = np.flatnonzero(a == 10)
        n = len(nl)
        idx, fast = self._fast(buf, a, nl)
        by_event = self.stats.by_event
        if len(idx):
            for k, c in enumerate(np.bincount(fast[:, C_KIND]).tolist()):
                if c:
                    name = KIND_NAMES[k]
                    by_event[name] = by_event.get(name, 0) + c
            fast[:, C_LINE] = idx + (base + 1)
        first_fast = int(idx[0]) if len(idx) else n
        if len(idx) < n:
            slow_mask = np.ones(n, dtype=bool)
            slow_mask[idx] = False
            slow = np.flatnonzero(slow_mask).tolist()
        else:
            slow = []
        recs = []
        for i in slow:
            if i > first_fast:
                self._seen_event = True
            if lines is not None:
                line = lines[i]
            else:
                start = int(nl[i - 1]) + 1 if i else 0
                line = buf[start:int(nl[i]) + 1].decode("utf-8", "replace")
            r = self._line(line, base + i + 1)
            if r is None or r is _STOP:  # (no _STOP: every line here ends in a newline)
                continue
            ev, rec = r
            by_event[ev] = by_event.get(ev, 0) + 1
            recs.append(rec)
        if len(idx):
            self._seen_event = True
        if recs:
            out = np.concatenate((fast, np.array(recs, dtype=np.int64))) if len(fast) else np.array(
                recs, dtype=np.int64)
            out = out[np.argsort(out[:, C_LINE], kind="stable")]
        else:
            out = fast
        self._order(out)
        return out, n

    def _fast(self, buf: bytes, a: np.ndarray, nl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(line indices, records without line numbers) of the lines the vectorized path decodes.

        It takes the lines of the six kmem formats in the layouts `_split` takes without its
        regex (tokens separated by spaces, printable ASCII only), with values in the ranges
        where the reference's decoding is plain arithmetic, and reproduces the reference's
        decisions token for token (`_split`, the timestamp, the field parsers), so that the
        records are the same. Everything else (other events, headers, bad lines, unusual
        values) is left to the reference, which also counts the bad lines. Tokens are found
        by one pass over the bytes; their values are read eight bytes at a time (`_Text`).
        """
        n = len(nl)
        empty = (np.zeros(0, dtype=np.int64), np.zeros((0, NCOL), dtype=np.int64))
        if n == 0:
            return empty
        N = len(a)
        tokc = (a - np.uint8(33)) <= 93  # printable ASCII other than space
        okline = None
        if N - int(np.count_nonzero(tokc)) - int(np.count_nonzero(a == 32)) - n:
            # lines with a control byte, DEL or non-ASCII are not for the fast path
            okline = np.ones(n, dtype=bool)
            okline[np.searchsorted(nl, np.flatnonzero(~tokc & (a != 32) & (a != 10)))] = False
        edges = np.flatnonzero(tokc[1:] != tokc[:-1]) + 1
        if tokc[0]:
            edges = np.concatenate(([0], edges))
        ts_, te_ = edges[0::2], edges[1::2]  # token starts and ends (the block ends in a newline)
        ls = np.empty(n, dtype=np.int64)
        ls[0] = 0
        ls[1:] = nl[:-1] + 1
        tf = np.searchsorted(ts_, ls)  # first token of each line
        nt = np.diff(tf, append=len(ts_))
        cand = (nt >= 7) & (nt <= 15)  # prefix 3 or 4 tokens, the event name, 3 to 9 fields
        if okline is not None:
            cand &= okline
        ci = np.flatnonzero(cand)
        if len(ci) == 0:
            return empty
        tfc = tf[ci]
        tx = _Text(a)
        B = tx.ap
        O = _Text.PAD

        def tok(j):
            i = tfc + j
            return ts_[i], te_[i]

        s0, e0 = tok(0)
        s1, e1 = tok(1)
        s2, e2 = tok(2)
        s3, e3 = tok(3)
        s4, e4 = tok(4)
        # _split: the timestamp is token 3 (flags column) if it ends in ':' and starts with a digit, else token 2
        k3 = (B[e3 + O - 1] == 58) & ((B[s3 + O] - np.uint8(48)) <= 9)
        k2 = (B[e2 + O - 1] == 58) & ((B[s2 + O] - np.uint8(48)) <= 9)
        ok = k3 | k2
        # [cpu]
        k1 = e1 - s1 - 2
        cpu, okv = _dec8(tx.right(e1 - 1), np.clip(k1, 0, 8))
        ok &= (B[s1 + O] == 91) & (B[e1 + O - 1] == 93) & (k1 >= 1) & (k1 <= 8) & okv
        # comm-pid: what follows the last '-' (or the whole token) must be digits
        x0 = tx.right(e0)
        run = _top_run(_in_range(x0 & _M7F, 0x30, 0x39))  # (the byte before a token is a separator)
        pid, _okv = _dec8(x0, run)
        ok &= (run >= 1) & (run < 8) & ((run == e0 - s0) | (B[e0 - run + (O - 1)] == 45))
        # timestamp `secs[.fraction]:`
        t_ns, okv = tx.timestamp(np.where(k3, s3, s2), np.where(k3, e3, e2) - 1)
        ok &= okv
        # event name (`name:` or `kmem:name:`)
        sE = np.where(k3, s4, s3)
        eE = np.where(k3, e4, e3)
        LE = eE - sE
        okE = ok & (B[eE + O - 1] == 58)
        kind = np.zeros(len(ci), dtype=np.int64)
        w0 = tx.left(sE)
        r = np.flatnonzero(okE & (w0 == _MM_PAGE))  # all six start with mm_page_
        if len(r):
            rest = [tx.left(sE[r] + 8), tx.left(sE[r] + 16), tx.left(sE[r] + 24)]
            Lr = LE[r]
            for name, k, _nf in _FAST_EVENTS:
                m = Lr == len(name) + 1
                for i in range(8, len(name), 8):
                    part = name[i:i + 8]
                    m &= (rest[i // 8 - 1] & _LOW[len(part)]) == np.uint64(int.from_bytes(part, "little"))
                kind[r[m]] = k
        r = np.flatnonzero(okE & (w0 == _KMEM_MM))  # kmem:mm_page_...
        for name, k, _nf in _FAST_EVENTS:
            rr = r[LE[r] == len(name) + 6]
            if len(rr):
                kind[rr[tx.starts(sE[rr], b"kmem:" + name)]] = k
        nskip = np.where(k3, 5, 4)
        f0 = tfc + nskip  # first field token
        nf = nt[ci] - nskip
        out = np.full((len(ci), NCOL), ABSENT, dtype=np.int64)
        out[:, C_KIND] = kind
        out[:, C_TIME] = t_ns
        out[:, C_CPU] = cpu
        out[:, C_PID] = pid
        good = np.zeros(len(ci), dtype=bool)
        mt = self._mt_table
        nfk = _FAST_NFIELDS[kind]
        for extfrag in (False, True):
            r = np.flatnonzero((kind == K_EXTFRAG) & (nf == 9) if extfrag else (kind > 0) & (nf == nfk)
                               & (kind != K_EXTFRAG))
            if len(r) == 0:
                continue
            fi = f0[r]
            okr = ok[r]

            def field(j, key, sel=None, fi=fi):
                """(value start, token end) of field j, which must start with `key`."""
                nonlocal okr
                i = fi + j if sel is None else fi[sel] + j
                s, e = ts_[i], te_[i]
                okk = (e - s >= len(key)) & tx.starts(s, key)
                if sel is None:
                    okr &= okk
                else:
                    okr[sel] &= okk
                return s + len(key), e

            def num(j, key, hexa=False, sel=None):
                nonlocal okr
                s, e = field(j, key, sel)
                v, okv = tx.hex(e, e - s) if hexa else tx.dec(e, e - s)
                if sel is None:
                    okr &= okv
                else:
                    okr[sel] &= okv
                return v

            def migratetype(j, key, sel=None):
                nonlocal okr
                v = num(j, key, sel=sel)
                m = mt[np.minimum(v, len(mt) - 1)]  # (the table ends with a -1 for numbers past its end)
                if sel is None:
                    okr &= m >= 0
                else:
                    okr[sel] &= m >= 0
                return m

            if extfrag:
                cols = out[r]
                field(0, b"page=")
                cols[:, C_PFN] = num(1, b"pfn=0x", True)
                for j, key in enumerate(self._EXTFRAG_KEYS[2:5]):
                    cols[:, C_F0 + j] = num(2 + j, key.encode() + b"=")
                cols[:, C_F0 + 3] = migratetype(5, b"alloc_migratetype=")
                cols[:, C_F0 + 4] = migratetype(6, b"fallback_migratetype=")
                cols[:, C_F0 + 5] = num(7, b"fragmenting=")
                cols[:, C_F0 + 6] = num(8, b"change_ownership=")
                out[r] = cols
            else:  # page=... pfn=0x... order=... [migratetype=... [gfp_flags=...|percpu_refill=...]]
                kr = kind[r]
                pfn = num(1, b"pfn=0x", True)
                out[r, C_PFN] = np.where((pfn == 0) & (kr == K_PAGE_ALLOC), -1, pfn)
                out[r, C_F0] = num(2, b"order=")
                sel = np.flatnonzero(nfk[r] >= 4)
                if len(sel):
                    out[r[sel], C_F0 + 1] = migratetype(3, b"migratetype=", sel)
                sel = np.flatnonzero(kr == K_ZONE_LOCKED)
                if len(sel):
                    out[r[sel], C_F0 + 2] = num(4, b"percpu_refill=", sel=sel)
                sel = np.flatnonzero(kr == K_PAGE_ALLOC)
                if len(sel):
                    s, e = field(4, b"gfp_flags=", sel)
                    g = self._gfp_tokens(buf, s, e)
                    okr[sel] &= g >= 0
                    out[r[sel], C_F0 + 2] = g
            good[r] = okr
        if good.all():
            return ci, out
        keep = np.flatnonzero(good)
        return ci[keep], out[keep]

    def _gfp_tokens(self, buf: bytes, s: np.ndarray, e: np.ndarray) -> np.ndarray:
        """GFP masks of the strings buf[s:e], each distinct string decoded once with `gfp`; -1
        where it does not decode (left to the reference, which counts it)."""
        keys = [buf[i:j] for i, j in zip(s.tolist(), e.tolist())]
        cache = self._gfp_bytes
        for k in set(keys).difference(cache):
            try:
                g = self.gfp(k.decode("ascii"))
            except (_Bad, ValueError):
                g = -1
            cache[k] = g if 0 <= g < (1 << 63) else -1
        return np.fromiter(map(cache.__getitem__, keys), dtype=np.int64, count=len(keys))

    def iter_arrays(self, source) -> Iterator[np.ndarray]:
        """Record arrays ([n, NCOL] int64, sizes as they come) from a path (plain, .gz, .xz) or
        from an iterable of lines, by the fast path; the same records and statistics as
        `iter_records`/`iter_file`."""
        if isinstance(source, (str, Path)):
            return self._iter_path(source)
        return self._iter_lines(source)

    def _iter_path(self, path: str | Path) -> Iterator[np.ndarray]:
        errors: list = []
        blocks = prefetch(read_blocks(path, BLOCK_BYTES, errors))
        try:
            first = b""
            for b in blocks:  # the first line, for the binary-data check
                first += b
                if b"\n" in first:
                    break
            line1 = first[:first.find(b"\n") + 1 if b"\n" in first else len(first)].decode("utf-8", "replace")
            if "\x00" in line1 or "\ufffd" in line1[:64]:
                raise NotATraceError(f"{path}: binary data, not ftrace text")
            self._first_line = line1[:80].rstrip("\n")
            yield from self._iter_bytes(itertools.chain((first,) if first else (), blocks), errors)
        finally:
            blocks.close()

    def _iter_bytes(self, blocks: Iterable[bytes], errors: list) -> Iterator[np.ndarray]:
        st = self.stats
        t0 = self._begin()
        lineno = 0
        rest = b""
        try:
            for b in blocks:
                if rest:
                    b = rest + b
                cut = b.rfind(b"\n") + 1
                rest = b[cut:]
                if cut == 0:
                    continue
                arr, nb = self._block(b, cut, lineno)
                lineno += nb
                if len(arr):
                    yield arr
            if errors:  # compressed stream cut short: a partial last line is not used
                st.add_bad("truncated", lineno + 1)
                self.stream_error = str(errors[0])
            elif rest:
                lineno += 1
                self._line(rest.decode("utf-8", "replace"), lineno)  # no newline: truncated (or blank)
        finally:
            self._end(t0, lineno)
        self._check_seen(lineno)

    def _iter_lines(self, lines: Iterable[str], batch: int = 1 << 15) -> Iterator[np.ndarray]:
        st = self.stats
        t0 = self._begin()
        lineno = 0
        it = iter(lines)
        stop = False
        try:
            while not stop:
                group = list(itertools.islice(it, batch))
                if not group:
                    break
                while group:
                    text = "".join(group)
                    if text.count("\n") == len(group) and all(ln[-1:] == "\n" for ln in group):
                        good, odd = len(group), None
                    else:  # the first line that is not one line with its newline (e.g. the last, cut short)
                        good = next(i for i, ln in enumerate(group) if ln[-1:] != "\n" or ln.count("\n") != 1)
                        odd, text = group[good], "".join(group[:good])
                    if good:
                        b = text.encode("utf-8", "surrogatepass")
                        arr, _nb = self._block(b, len(b), lineno, group[:good] if odd is not None else group)
                        lineno += good
                        if len(arr):
                            yield arr
                    if odd is None:
                        break
                    lineno += 1
                    r = self._line(odd, lineno)
                    if r is _STOP:  # a line cut short ends the input, as in iter_records
                        stop = True
                        break
                    if r is not None:
                        ev, rec = r
                        st.by_event[ev] = st.by_event.get(ev, 0) + 1
                        arr = np.array([rec], dtype=np.int64)
                        self._order(arr)
                        yield arr
                    group = group[good + 1:]
        except STREAM_ERRORS as e:
            st.add_bad("truncated", lineno + 1)
            self.stream_error = str(e)
        finally:
            self._end(t0, lineno)
        self._check_seen(lineno)

    def iter_chunks(self, path_or_lines, chunk: int = 1 << 16, fast: bool = True) -> Iterator[np.ndarray]:
        """Records packed into int64 arrays [<=chunk, NCOL] (every array but the last has exactly
        `chunk` rows); constant memory in the trace length. `fast=False`: the reference path."""
        if fast:
            yield from _rechunk(self.iter_arrays(path_or_lines), chunk)
            return
        it = self.iter_file(path_or_lines) if isinstance(path_or_lines, (str, Path)) else self.iter_records(
            path_or_lines)
        buf: list[tuple] = []
        for rec in it:
            buf.append(rec)
            if len(buf) >= chunk:
                yield np.array(buf, dtype=np.int64)
                buf = []
        if buf:
            yield np.array(buf, dtype=np.int64)


_STOP = object()
_I64_MAX = (1 << 63) - 1
_PADS = [(ABSENT,) * (9 - n) for n in range(10)]
# The fast path's events: (name, kind, number of field tokens).
_FAST_EVENTS = ((b"mm_page_alloc", K_PAGE_ALLOC, 5), (b"mm_page_free", K_PAGE_FREE, 3),
                (b"mm_page_free_batched", K_FREE_BATCHED, 3), (b"mm_page_alloc_zone_locked", K_ZONE_LOCKED, 5),
                (b"mm_page_pcpu_drain", K_PCPU_DRAIN, 4), (b"mm_page_alloc_extfrag", K_EXTFRAG, 9))
_MM_PAGE = np.uint64(int.from_bytes(b"mm_page_", "little"))
_KMEM_MM = np.uint64(int.from_bytes(b"kmem:mm_", "little"))
_FAST_NFIELDS = np.full(64, -1, dtype=np.int64)  # kind -> number of field tokens
for _n, _k, _f in _FAST_EVENTS:
    _FAST_NFIELDS[_k] = _f
_P10 = 10 ** np.arange(19, dtype=np.int64)

# --- eight bytes at a time (SWAR): a word holds 8 bytes of text, the first one in its low byte ---------------
_B1 = 0x0101010101010101
_M80 = np.uint64(0x80 * _B1)
_M7F = np.uint64(0x7F * _B1)
_ZEROS = np.uint64(0x30 * _B1)  # '00000000'
_DOTS = np.uint64(0x2E * _B1)
_CASE = np.uint64(0x20 * _B1)
_TOP = np.array([((1 << 64) - 1) ^ ((1 << (8 * (8 - k))) - 1) for k in range(9)], dtype=np.uint64)  # last k bytes
_LOW = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)  # first k bytes


def _in_range(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """0x80 in each byte of x with lo <= byte <= hi (bytes below 0x80)."""
    return (x + np.uint64((0x80 - lo) * _B1)) & ~(x + np.uint64((0x7F - hi) * _B1)) & _M80


def _zero_bytes(x: np.ndarray) -> np.ndarray:
    """0x80 in each byte of x that is zero (any byte values)."""
    return ~(((x & _M7F) + _M7F) | x) & _M80


def _top_run(m: np.ndarray) -> np.ndarray:
    """How many of the last bytes (from the 8th down) are marked 0x80 in m, without a gap."""
    y = ~m & _M80
    y |= y >> np.uint64(8)
    y |= y >> np.uint64(16)
    y |= y >> np.uint64(32)
    return 8 - np.bitwise_count(y).astype(np.int64)


def _dec8(x: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value of the decimal digits in the last k (0..8) bytes of x, and where they are all digits."""
    keep = _TOP[k]
    x = (x & keep) | (_ZEROS & ~keep)
    ok = _in_range(x, 0x30, 0x39) == _M80
    d = x - _ZEROS
    d = (d * np.uint64(10) + (d >> np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    d = (d * np.uint64(100) + (d >> np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    d = (d * np.uint64(10000) + (d >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    return d.astype(np.int64), ok


def _hex8(x: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value of the hex digits (either case) in the last k (0..8) bytes of x, and where valid."""
    keep = _TOP[k]
    x = (x & keep) | (_ZEROS & ~keep)
    c = x | _CASE  # 'A'-'F' -> 'a'-'f'; digits unchanged (bytes below 0x20 are not in a fast line)
    alpha = _in_range(c, 0x61, 0x66)
    ok = (_in_range(c, 0x30, 0x39) | alpha) == _M80
    d = (c & np.uint64(0x0F * _B1)) + (alpha >> np.uint64(7)) * np.uint64(9)
    d = ((d << np.uint64(4)) | (d >> np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    d = ((d << np.uint64(8)) | (d >> np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    d = ((d << np.uint64(16)) | (d >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    return d.astype(np.int64), ok


class _Text:
    """A block of text with word access: `right(e)` is the 8 bytes before offset e, `left(s)`
    the 8 bytes from s, as little-endian uint64 (zero bytes beyond the block's ends)."""

    PAD = 16

    def __init__(self, a: np.ndarray):
        n = len(a)
        self.ap = np.zeros(n + 2 * self.PAD, dtype=np.uint8)
        self.ap[self.PAD:self.PAD + n] = a
        # one (unaligned) word starting at every byte
        self.w = np.ndarray((n + 2 * self.PAD - 7,), dtype="<u8", buffer=self.ap, strides=(1,))

    def left(self, s: np.ndarray) -> np.ndarray:
        return self.w[s + self.PAD]

    def right(self, e: np.ndarray) -> np.ndarray:
        return self.w[e + (self.PAD - 8)]

    def starts(self, s: np.ndarray, lit: bytes) -> np.ndarray:
        """Where the text at s begins with `lit`."""
        ok = np.ones(len(s), dtype=bool)
        for i in range(0, len(lit), 8):
            part = lit[i:i + 8]
            ok &= (self.left(s + i) & _LOW[len(part)]) == np.uint64(int.from_bytes(part, "little"))
        return ok

    def _num(self, f8, e: np.ndarray, k: np.ndarray, maxd: int, scale: int):
        if len(k) and f8 is _dec8 and int(k.max()) <= 2:  # one or two digits (orders, migratetypes, flags)
            d1 = self.ap[e + (self.PAD - 1)] - np.uint8(48)
            d2 = self.ap[e + (self.PAD - 2)] - np.uint8(48)
            two = k == 2
            ok = (k >= 1) & (d1 <= 9) & ((d2 <= 9) | ~two)
            return d1.astype(np.int64) + np.where(two, d2.astype(np.int64) * 10, 0), ok
        v, ok = f8(self.right(e), np.clip(k, 0, 8))
        ok &= (k >= 1) & (k <= maxd)
        big = np.flatnonzero(k > 8)
        if len(big):
            vh, okh = f8(self.right(e[big] - 8), np.minimum(k[big] - 8, 8))
            v[big] += vh * scale
            ok[big] &= okh
        return v, ok

    def dec(self, e: np.ndarray, k: np.ndarray, maxd: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Value of the k decimal digits before e (1 <= k <= maxd <= 16), and where valid."""
        return self._num(_dec8, e, k, maxd, 10 ** 8)

    def hex(self, e: np.ndarray, k: np.ndarray, maxd: int = 15) -> tuple[np.ndarray, np.ndarray]:
        """Value of the k hex digits before e (1 <= k <= maxd <= 15), and where valid."""
        return self._num(_hex8, e, k, maxd, 1 << 32)

    def timestamp(self, s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nanoseconds of `secs[.fraction]` in [s, e): 1-9 digits each side, at most 16 bytes; as
        the reference: the fraction is padded or cut to 9 digits."""
        k = e - s
        lo = self.right(e)
        zl = _zero_bytes(lo ^ _DOTS) & _TOP[np.minimum(k, 8)]
        # usual case: one dot among the last 8 bytes, at most 8 digits before it
        f = 7 - (np.bitwise_count(zl - np.uint64(1)) >> 3).astype(np.int64)  # digits after the dot
        ks = k - f - 1
        frac, ok = _dec8(lo, np.clip(f, 0, 8))
        secs, oks = _dec8(self.right(e - f - 1), np.clip(ks, 0, 8))
        ok &= oks & (zl != 0) & (np.bitwise_count(zl) == 1) & (f >= 1) & (ks >= 1) & (ks <= 8)
        t = secs * 1_000_000_000 + frac * _P10[9 - np.clip(f, 0, 9)]
        other = np.flatnonzero(~ok)
        if len(other):  # a longer fraction or seconds, no fraction, or not a timestamp
            t[other], ok[other] = self._timestamp(s[other], e[other])
        return t, ok

    def _timestamp(self, s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = e - s
        lo, hi = self.right(e), self.right(e - 8)
        zl = _zero_bytes(lo ^ _DOTS) & _TOP[np.minimum(k, 8)]
        zh = _zero_bytes(hi ^ _DOTS) & _TOP[np.clip(k - 8, 0, 8)]
        ndot = np.bitwise_count(zl).astype(np.int64) + np.bitwise_count(zh)
        has = ndot == 1
        # digits after the dot: the bytes above it in its word
        f = np.where(zl != 0, 7 - (np.bitwise_count(zl - np.uint64(1)) >> 3).astype(np.int64),
                     15 - (np.bitwise_count(zh - np.uint64(1)) >> 3).astype(np.int64))
        f = np.where(has, f, 0)
        frac, okf = self.dec(e, f, 9)
        secs, ok = self.dec(np.where(has, e - f - 1, e), np.where(has, k - f - 1, k), 9)
        ok &= (k <= 16) & (ndot <= 1) & (okf | ~has)
        return secs * 1_000_000_000 + np.where(has, frac * _P10[9 - np.minimum(f, 9)], 0), ok


def _rechunk(arrays: Iterable[np.ndarray], chunk: int) -> Iterator[np.ndarray]:
    """Arrays of exactly `chunk` rows (the last one: what is left)."""
    pend: list[np.ndarray] = []
    n = 0
    for arr in arrays:
        pend.append(arr)
        n += len(arr)
        while n >= chunk:
            allr = np.concatenate(pend) if len(pend) > 1 else pend[0]
            yield allr[:chunk]
            rest = allr[chunk:]
            pend, n = ([rest] if len(rest) else []), len(rest)
    if n:
        yield np.concatenate(pend) if len(pend) > 1 else pend[0]


def _chain_first(first: str, f: IO[str]) -> Iterator[str]:
    if first:
        yield first
    yield from f


_EV_KIND = {
    "mm_page_alloc": K_PAGE_ALLOC, "mm_page_free": K_PAGE_FREE, "mm_page_free_batched": K_FREE_BATCHED,
    "mm_page_alloc_zone_locked": K_ZONE_LOCKED, "mm_page_pcpu_drain": K_PCPU_DRAIN,
    "mm_page_alloc_extfrag": K_EXTFRAG, "cma_alloc_start": K_CMA_ALLOC_START,
    "cma_alloc_finish": K_CMA_ALLOC_FINISH, "cma_alloc_busy_retry": K_CMA_BUSY_RETRY,
    "cma_release": K_CMA_RELEASE, "mm_migrate_pages": K_MIGRATE_PAGES,
    "mm_compaction_begin": K_COMPACTION_BEGIN, "mm_compaction_end": K_COMPACTION_END,
    "test_pages_isolated": K_TEST_PAGES_ISOLATED,
}


def parse_file(path: str | Path, flavour: str = "mainline", fast: bool = True) -> tuple[np.ndarray, TraceParser]:
    """Convenience for small files and tests: all records as one array, and the parser (stats).
    `fast=False`: the reference path (one line at a time)."""
    p = TraceParser(flavour)
    chunks = list(p.iter_chunks(path, fast=fast))
    arr = np.concatenate(chunks) if chunks else np.zeros((0, NCOL), dtype=np.int64)
    return arr, p


def parse_lines(lines: Iterable[str], flavour: str = "mainline", fast: bool = True) -> tuple[np.ndarray, TraceParser]:
    p = TraceParser(flavour)
    chunks = list(p.iter_chunks(lines, fast=fast))
    arr = np.concatenate(chunks) if chunks else np.zeros((0, NCOL), dtype=np.int64)
    return arr, p


def benchmark(path: str | Path, flavour: str = "mainline", max_lines: int | None = None, fast: bool = True) -> dict:
    """Parse `path` (optionally only its first `max_lines` lines) and report lines/s.

    Three figures: decompression alone (`read_s`: the whole file into memory with the standard
    `lzma`/`gzip` readers), the parse alone on that text in memory (`parse_s`: splitting into
    lines, decoding, packing into numpy), and end to end from the file as `iter_chunks` runs it
    (`end_to_end_s`: decompression in a reader thread overlapping the parse; without
    `max_lines` only, else estimated as read + parse). `fast=False` measures the reference path.
    """
    t0 = time.perf_counter()
    with open_raw(path) as f:
        if max_lines:
            parts, seen = [], 0
            while seen < max_lines and (b := f.read1(1 << 20)):
                parts.append(b)
                seen += b.count(b"\n")
            data = b"".join(parts)
            cut = -1
            for _ in range(max_lines):
                cut = data.find(b"\n", cut + 1)
                if cut < 0:
                    break
            data = data if cut < 0 else data[:cut + 1]
        else:
            data = f.read()
    t_read = time.perf_counter() - t0
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    p = TraceParser(flavour)
    t1 = time.perf_counter()
    if fast:
        blocks = (data[i:i + BLOCK_BYTES] for i in range(0, len(data), BLOCK_BYTES))
        n_rec = sum(len(c) for c in _rechunk(p._iter_bytes(blocks, []), 1 << 16))
    else:
        text = io.StringIO(data.decode("utf-8", "replace"), newline="\n")
        n_rec = sum(len(c) for c in p.iter_chunks(text, fast=False))
    t_parse = time.perf_counter() - t1
    out = {"lines": n_lines, "records": n_rec, "read_s": round(t_read, 3), "parse_s": round(t_parse, 3),
           "decompress_lines_per_s": round(n_lines / t_read) if t_read else None,
           "parse_lines_per_s": round(n_lines / t_parse) if t_parse else None}
    if max_lines:
        t_e2e = t_read + t_parse
    else:
        t2 = time.perf_counter()
        for _c in TraceParser(flavour).iter_chunks(path, fast=fast):
            pass
        t_e2e = time.perf_counter() - t2
        out["end_to_end_s"] = round(t_e2e, 3)
    out["end_to_end_lines_per_s"] = round(n_lines / t_e2e) if t_e2e else None
    return out
