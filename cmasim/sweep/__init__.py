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

from cmasim.sweep.driver import run_sweep
from cmasim.sweep.spec import SweepError, load_spec, parse_spec
from cmasim.sweep.store import Store, StoreError

__all__ = ["SweepError", "Store", "StoreError", "load_spec", "parse_spec", "run_sweep"]
