"""`cmasim sweep`: many runs (scenario × policy × seed × axes over `--set` keys) on Ray or in-process,
results in Parquet via DuckDB, resumable.

- `spec`: the sweep spec (TOML) -> validated points and run tasks
- `runner`: one task -> one result row (in any worker)
- `executor`: in-process and Ray executors
- `store`: the append-only Parquet store and DuckDB queries
- `driver`: resume logic, batching, calibration
- `summary`: boundaries with bootstrap intervals, ranking of fixes
- `cli`: the commands (the only printing code)
"""


# The names below load on first use (PEP 562): importing cmasim.sweep.cli to build the command
# line must not import pydantic and DuckDB for every other command (docs/performance.md).
_LAZY = {"run_sweep": "driver", "SweepError": "spec", "load_spec": "spec", "parse_spec": "spec",
         "Store": "store", "StoreError": "store"}


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)


__all__ = ["SweepError", "Store", "StoreError", "load_spec", "parse_spec", "run_sweep"]
