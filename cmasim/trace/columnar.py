"""Columnar cache of a parsed trace: parse the text once, replay later at core speed.

The cache is an ``.npz`` (a zip of ``.npy`` members) written incrementally: one member per
chunk of records (``c000000``, ``c000001``, ...; int64 ``[n, NCOL]`` as in
`cmasim.trace.parser`), plus ``meta.json`` with the parse statistics, the interned strings, the
kernel flavour and a fingerprint of the source file (name, size, mtime). Writing and reading
are both chunk by chunk, so memory stays constant in the trace's length.

`cached_chunks(trace, cache)` is the entry point: it reuses a cache whose fingerprint and
flavour match, and otherwise parses the trace while writing a new one.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cmasim.outdir import atomic_file
from cmasim.trace.parser import NCOL, TraceParser

CACHE_VERSION = 1


def fingerprint(path: str | Path) -> dict:
    st = os.stat(path)
    return {"name": Path(path).name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_array(zf: zipfile.ZipFile, name: str, arr: np.ndarray) -> None:
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)


def write_cache(trace: str | Path, cache: str | Path, flavour: str, chunk: int = 1 << 16) -> Iterator[np.ndarray]:
    """Parse `trace`, writing the cache while yielding each chunk (one pass over the text)."""
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    parser = TraceParser(flavour)
    n = 0
    # A consumer that stops early closes this generator: the partial cache is removed, not left.
    with atomic_file(cache, cache.with_name(cache.name + ".partial")) as tmp, \
            zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for i, arr in enumerate(parser.iter_chunks(trace, chunk)):
            _write_array(zf, f"c{i:06d}", arr)
            n += 1
            yield arr
        meta = {"version": CACHE_VERSION, "source": fingerprint(trace), "flavour": flavour, "chunks": n,
                "stats": parser.stats.to_dict(), "strings": parser.strings.names}
        zf.writestr("meta.json", json.dumps(meta))


def read_meta(cache: str | Path) -> dict | None:
    try:
        with zipfile.ZipFile(cache) as zf:
            return json.loads(zf.read("meta.json"))
    except (OSError, KeyError, zipfile.BadZipFile, ValueError):
        return None


def _read_stored(f, info: zipfile.ZipInfo) -> np.ndarray:
    """A stored (uncompressed) ``.npy`` member read straight into its array, its CRC-32 checked.

    zipfile's reader hands the data over in pieces that numpy then copies into the array,
    updating the CRC piece by piece: a third of reading a replay's records from the cache
    (docs/performance.md, "Replay: lazy cache set-up"). Here the
    data goes from the file into the array in one read and the CRC is one pass over it. A
    mismatch raises zipfile.BadZipFile, as zipfile's reader does."""
    f.seek(info.header_offset)
    local = f.read(30)  # the member's local header: its name and extra field lengths at 26..29
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"{info.filename}: bad local header")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    f.seek(start)
    version = np.lib.format.read_magic(f)
    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = header(f)
    hdr_len = f.tell() - start
    if fortran or dtype.hasobject or hdr_len + int(np.prod(shape)) * dtype.itemsize != info.file_size:
        raise zipfile.BadZipFile(f"{info.filename}: not a plain C-ordered array member")
    arr = np.empty(shape, dtype)
    got = f.readinto(memoryview(arr).cast("B")) if arr.nbytes else 0
    f.seek(start)
    if got != arr.nbytes or zlib.crc32(arr, zlib.crc32(f.read(hdr_len))) != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
    return arr


class CacheError(zipfile.BadZipFile, ValueError):
    """A columnar cache whose meta is valid but a chunk is damaged or missing (a bad CRC-32, a
    truncated file, a wrong shape): the cache is derived data, so the message says to delete it."""


def read_cache(cache: str | Path) -> Iterator[np.ndarray]:
    """The cached chunks, one at a time; a damaged chunk is a CacheError naming the file."""
    with zipfile.ZipFile(cache) as zf, open(cache, "rb") as raw:
        meta = json.loads(zf.read("meta.json"))
        for i in range(meta["chunks"]):
            try:
                info = zf.getinfo(f"c{i:06d}.npy")
                if info.compress_type == zipfile.ZIP_STORED:
                    arr = _read_stored(raw, info)
                else:
                    with zf.open(info) as f:
                        arr = np.lib.format.read_array(f, allow_pickle=False)
                if arr.ndim != 2 or arr.shape[1] != NCOL:
                    raise ValueError(f"chunk {i} has shape {arr.shape}, expected [n, {NCOL}]")
            except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as e:
                raise CacheError(f"{cache}: columnar cache damaged ({e}); delete it and the trace is "
                                 "parsed again") from e
            yield arr


def cache_valid(trace: str | Path, cache: str | Path, flavour: str) -> bool:
    meta = read_meta(cache) if Path(cache).exists() else None
    return bool(meta and meta.get("version") == CACHE_VERSION and meta.get("flavour") == flavour
                and meta.get("source") == fingerprint(trace))


class CachedTrace:
    """A trace as chunks, from its cache when valid (else parsed once, and the cache written).

    After a full iteration `meta` holds the parse statistics and strings either way.
    """

    def __init__(self, trace: str | Path, cache: str | Path | None, flavour: str, chunk: int = 1 << 16):
        self.trace, self.cache, self.flavour, self.chunk = Path(trace), cache, flavour, chunk
        self.from_cache = cache is not None and cache_valid(trace, cache, flavour)
        self.parsed = False  # set once this object has parsed the text itself
        self.meta: dict | None = read_meta(cache) if self.from_cache else None

    def chunks(self) -> Iterator[np.ndarray]:
        if self.cache is not None and cache_valid(self.trace, self.cache, self.flavour):
            self.from_cache = True
            yield from read_cache(self.cache)
            self.meta = read_meta(self.cache)
        elif self.cache is not None:
            self.parsed = True
            yield from write_cache(self.trace, self.cache, self.flavour, self.chunk)
            self.meta = read_meta(self.cache)
        else:
            self.parsed = True
            p = TraceParser(self.flavour)
            yield from p.iter_chunks(self.trace, self.chunk)
            self.meta = {"stats": p.stats.to_dict(), "strings": p.strings.names, "flavour": self.flavour}
