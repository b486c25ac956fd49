"""The results store: Parquet files under `DIR/results/`, written and read by DuckDB.

Every batch of finished runs becomes one new file: DuckDB writes it under a hidden temporary
name (`.part-*.parquet.tmp`), the file is fsynced and then renamed to `part-<time>-<uuid>.parquet`.
A rename is atomic, so a killed driver leaves whole files or none; the glob `*.parquet` never
sees a temporary file (a stale one is removed on the next open). Files are never rewritten.

The table `runs` is the union of all files (`read_parquet(..., union_by_name=true)`: sweeps
with other axes add columns, missing ones read as NULL). `done_keys()` reads only the
`run_key` column, so resuming a sweep of 100,000 runs holds 100,000 short strings, not rows.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from cmasim.outdir import atomic_file

RESULTS = "results"


class StoreError(ValueError):
    """The store cannot be read or a query is bad; the message says which."""


def _sql_type(values: list[Any]) -> str | None:
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return None
    if kinds <= {bool}:
        return "BOOLEAN"
    if kinds <= {int}:
        return "BIGINT"
    if kinds <= {int, float}:
        return "DOUBLE"
    return "VARCHAR"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Store:
    """Append-only Parquet store of run rows in `root/results/`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.dir = self.root / RESULTS  # made by the first append(): reading a store never creates it
        if self.dir.is_dir():
            for f in self.dir.glob(".part-*.tmp"):  # left by a killed driver: never renamed, never counted
                f.unlink(missing_ok=True)

    @property
    def glob(self) -> str:
        return (self.dir / "*.parquet").as_posix()

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("*.parquet"))

    def append(self, rows: list[dict[str, Any]], types: dict[str, str] | None = None) -> Path | None:
        """Write `rows` as one new Parquet file (atomically); returns its path.

        Column types come from the values; `types` gives the SQL type of a column that is NULL in
        every row (without one, such a column is left out and reads as NULL)."""
        if not rows:
            return None
        import duckdb

        cols: list[str] = []
        for r in rows:
            for k in r:
                if k not in cols:
                    cols.append(k)
        types = {c: _sql_type([r.get(c) for r in rows]) or (types or {}).get(c) for c in cols}
        cols = [c for c in cols if types[c] is not None]  # all-NULL columns: left to union_by_name
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{self.dir}: cannot create: {e.strerror or e}") from None
        name = f"part-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}.parquet"
        final = self.dir / name
        # One list parameter per column, zipped back into rows by parallel unnest() (fast, no pandas/pyarrow).
        select = ", ".join(f"unnest(${i + 1}::{types[c]}[]) AS {_quote(c)}" for i, c in enumerate(cols))
        with atomic_file(final, fsync=True) as tmp:  # `.part-*.parquet.tmp` until fsynced and renamed
            con = duckdb.connect()
            try:
                con.execute(f"COPY (SELECT {select}) TO '{_sql_str(tmp.as_posix())}' (FORMAT parquet, COMPRESSION zstd)",
                            [[r.get(c) for r in rows] for c in cols])
            finally:
                con.close()
        return final

    def connect(self):
        """A DuckDB connection with the view `runs` over every stored file (StoreError if there is none)."""
        import duckdb

        if not self.files():
            raise StoreError(f"{self.root}: no stored runs (no {RESULTS}/*.parquet)")
        con = duckdb.connect()
        con.execute(f"CREATE VIEW runs AS SELECT * FROM read_parquet('{_sql_str(self.glob)}', union_by_name=true)")
        return con

    def done_keys(self) -> set[str]:
        """run_key of every stored run."""
        if not self.files():
            return set()
        con = self.connect()
        try:
            return {k for (k,) in con.execute("SELECT run_key FROM runs").fetchall()}
        finally:
            con.close()

    def count(self) -> int:
        if not self.files():
            return 0
        con = self.connect()
        try:
            return con.execute("SELECT count(*) FROM runs").fetchone()[0]
        finally:
            con.close()

    def query(self, sql: str) -> tuple[list[str], list[tuple]]:
        """Run DuckDB SQL over the view `runs`; (column names, rows)."""
        import duckdb

        con = self.connect()
        try:
            cur = con.execute(sql)
            if cur.description is None:
                return [], []
            return [d[0] for d in cur.description], cur.fetchall()
        except duckdb.Error as e:
            raise StoreError(f"query: {str(e).splitlines()[0]}") from None
        finally:
            con.close()


def _sql_str(s: str) -> str:
    return s.replace("'", "''")


class BatchWriter:
    """Collects rows and appends them to the store every `max_rows` rows or `max_s` seconds."""

    def __init__(self, store: Store, max_rows: int = 64, max_s: float = 2.0, types: dict[str, str] | None = None):
        self.store, self.max_rows, self.max_s, self.types = store, max_rows, max_s, types
        self.rows: list[dict[str, Any]] = []
        self.t_last = time.monotonic()
        self.written = 0

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.max_rows or time.monotonic() - self.t_last >= self.max_s:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.store.append(self.rows, self.types)
            self.written += len(self.rows)
            self.rows = []
        self.t_last = time.monotonic()
