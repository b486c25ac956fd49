"""Streaming parser of ftrace text: tracefs `trace`/`trace_pipe` and `trace-cmd report` output.

Kernel: include/trace/events/kmem.h, cma.h, migrate.h, compaction.h, page_isolation.h and the
tracefs line prefix printed by kernel/trace/trace_output.c (`<comm>-<pid> [<cpu>] <flags>
<secs.usecs>: <event>: <fields>`); shared/docs/kernel-model.md §10.6 and §6.4 list the field
layouts.

One pass, constant memory: `TraceParser.iter_records` is a generator of plain tuples
``(kind, time_ns, cpu, pid, pfn, f0, ..., f7, line)`` (`NCOL` int columns, see `COLUMNS` and the
per-kind field table `FIELDS`), and `iter_chunks` packs them into int64 numpy arrays
``[n, NCOL]`` for the columnar cache (`cmasim.trace.columnar`). Strings (CMA area names,
migrate modes and reasons, compaction statuses, unknown event names) are interned into
`TraceParser.strings`; the columns hold their ids.

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
truncated, unknown_event, out_of_order, lost_events, bad_gfp, bad_migratetype). A file
that is not a trace at all raises `NotATraceError`.
"""

from __future__ import annotations

import gzip
import io
import lzma
import re
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
def open_text(path: str | Path) -> IO[str]:
    """Open plain, .gz or .xz text by magic bytes; undecodable bytes become U+FFFD (then: garbled)."""
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(16)
    if magic.startswith(b"\x1f\x8b"):
        raw: IO[bytes] = gzip.open(path, "rb")  # noqa: SIM115 (handed to the caller)
    elif magic.startswith(b"\xfd7zXZ\x00"):
        raw = lzma.open(path, "rb")  # noqa: SIM115
    else:
        raw = open(path, "rb")  # noqa: SIM115
    if magic.startswith(b"\x17\x08\x44tracing"):
        raw.close()
        raise NotATraceError(f"{path}: a trace-cmd binary trace.dat; convert it with `trace-cmd report {path.name} "
                             f"> trace.txt` first")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="\n")


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
        self.stats = ParseStats(max_examples=max_examples)
        self.strings = Strings()
        self._gfp_cache: dict[str, int] = {}
        self._last_ns = -1
        self._seen_event = False
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

    def iter_records(self, lines: Iterable[str]) -> Iterator[tuple]:
        """Yield one record tuple (NCOL ints) per usable event line."""
        st = self.stats
        handlers = self._handlers
        split = self._split
        kinds = _EV_KIND
        t0 = time.perf_counter()
        lineno = 0
        nonevent_before_first = 0
        pads = [(ABSENT,) * (9 - n) for n in range(10)]
        by_event = st.by_event
        last_ns = self._last_ns
        try:
            for line in lines:
                lineno += 1
                if line[-1:] != "\n":
                    # The last line of a file cut short: its fields may be cut too, so it is not used.
                    if line.strip():
                        st.add_bad("truncated", lineno)
                    break
                if line[:1] == "#":
                    st.header_lines += 1
                    continue
                sp = split(line)
                if sp is None:
                    if not line.strip():
                        continue
                    m = _LOST_RE.match(line)
                    if m:
                        st.lost_events += int(m[2])
                        st.add_bad("lost_events", lineno)
                        continue
                    if not self._seen_event:
                        if _HEADER_RE.match(line):
                            st.header_lines += 1
                            continue
                        nonevent_before_first += 1
                        if nonevent_before_first >= 200:
                            raise NotATraceError(
                                f"no ftrace event line in the first {lineno} lines (line 1 reads "
                                f"{self._first_line!r}); expected tracefs `trace` text or `trace-cmd report` output")
                    st.add_bad("garbled", lineno)
                    continue
                self._seen_event = True
                pid, cpu, ts, ev, toks = sp
                h = handlers.get(ev)
                try:
                    a, _, b = ts.partition(".")
                    t_ns = int(a) * 1_000_000_000 + (int(b) * 1000 if len(b) == 6 else int((b + "000000000")[:9]))
                    if h is not None:
                        vals = h(toks)
                        kind = kinds[ev]
                    elif ev.startswith("mm_compaction_"):
                        vals = self._compaction_other(ev, toks)
                        kind = K_COMPACTION_OTHER
                    else:
                        st.add_bad("unknown_event", lineno)
                        if len(st.unknown_events) < 64 or ev in st.unknown_events:
                            st.unknown_events[ev] = st.unknown_events.get(ev, 0) + 1
                        continue
                except _Bad as e:
                    st.add_bad(e.kind, lineno)
                    continue
                except (ValueError, KeyError, IndexError):
                    st.add_bad("garbled", lineno)
                    continue
                if t_ns < last_ns:
                    # Kept (the simulated clock never runs backwards), but counted.
                    st.add_bad("out_of_order", lineno)
                else:
                    last_ns = t_ns
                if st.first_ns < 0:
                    st.first_ns = t_ns
                by_event[ev] = by_event.get(ev, 0) + 1
                yield (kind, t_ns, cpu, pid) + vals + pads[len(vals)] + (lineno,)
        except (EOFError, lzma.LZMAError, gzip.BadGzipFile, zlib.error) as e:  # compressed stream cut short
            st.add_bad("truncated", lineno + 1)
            self.stream_error = str(e)
        finally:
            self._last_ns = last_ns
            st.events = sum(by_event.values())
            st.lines += lineno
            st.last_ns = last_ns
            st.wall_s += time.perf_counter() - t0
        if not self._seen_event and nonevent_before_first:
            raise NotATraceError(f"no ftrace event line in {lineno} lines (line 1 reads {self._first_line!r}); "
                                 f"expected tracefs `trace` text or `trace-cmd report` output")

    _first_line = ""

    def iter_file(self, path: str | Path) -> Iterator[tuple]:
        f = open_text(path)
        try:
            first = f.readline()
            if "\x00" in first or "\ufffd" in first[:64]:
                raise NotATraceError(f"{path}: binary data, not ftrace text")
            self._first_line = first[:80].rstrip("\n")
            yield from self.iter_records(_chain_first(first, f))
        finally:
            f.close()

    def iter_chunks(self, path_or_lines, chunk: int = 1 << 16) -> Iterator[np.ndarray]:
        """Records packed into int64 arrays [<=chunk, NCOL]; constant memory in the trace length."""
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


def parse_file(path: str | Path, flavour: str = "mainline") -> tuple[np.ndarray, TraceParser]:
    """Convenience for small files and tests: all records as one array, and the parser (stats)."""
    p = TraceParser(flavour)
    chunks = list(p.iter_chunks(path))
    arr = np.concatenate(chunks) if chunks else np.zeros((0, NCOL), dtype=np.int64)
    return arr, p


def parse_lines(lines: Iterable[str], flavour: str = "mainline") -> tuple[np.ndarray, TraceParser]:
    p = TraceParser(flavour)
    chunks = list(p.iter_chunks(lines))
    arr = np.concatenate(chunks) if chunks else np.zeros((0, NCOL), dtype=np.int64)
    return arr, p


def benchmark(path: str | Path, flavour: str = "mainline", max_lines: int | None = None) -> dict:
    """Parse `path` (optionally only its first `max_lines` lines) and report lines/s.

    Two figures: end to end (decompression + decoding + parsing + packing into numpy) and
    the parse alone on lines already in memory.
    """
    import itertools

    t0 = time.perf_counter()
    p = TraceParser(flavour)
    f = open_text(path)
    try:
        lines = list(itertools.islice(f, max_lines) if max_lines else f)
    finally:
        f.close()
    t_read = time.perf_counter() - t0
    t1 = time.perf_counter()
    n_rec = sum(len(c) for c in p.iter_chunks(lines))
    t_parse = time.perf_counter() - t1
    return {"lines": len(lines), "records": n_rec, "read_s": round(t_read, 3), "parse_s": round(t_parse, 3),
            "parse_lines_per_s": round(len(lines) / t_parse) if t_parse else None,
            "end_to_end_lines_per_s": round(len(lines) / (t_read + t_parse)) if t_read + t_parse else None}
