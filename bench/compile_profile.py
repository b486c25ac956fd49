"""Time `compile_core()` and count numba compilations (specialisations) per function.

    find cmasim -name '*.nb[ic]' -delete        # or a fresh checkout: an empty numba cache
    /usr/bin/time -v python bench/compile_profile.py OUT.json

Every `numba:compile` event is one compilation of one function for one argument-type
combination (the same events `cmasim.warmup.compile_listener` reports). Writes the wall time,
the number of functions and of compilations, and the 40 most compiled functions to OUT.json.
"""
import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
t0 = time.perf_counter()
from numba.core import event
counts = collections.Counter()
class L(event.Listener):
    def on_start(self, ev):
        disp = (ev.data or {}).get("dispatcher")
        fn = getattr(disp, "py_func", None)
        if fn is not None:
            counts[f"{fn.__module__}.{fn.__name__}"] += 1
    def on_end(self, ev): pass
event.register("numba:compile", L())
from cmasim.warmup import compile_core
compile_core()
wall = time.perf_counter() - t0
out = {"wall_s": round(wall, 1), "functions": len(counts), "specialisations": sum(counts.values()),
       "top": counts.most_common(40)}
json.dump(out, open(sys.argv[1], "w"), indent=1)
print(json.dumps({k: out[k] for k in ("wall_s", "functions", "specialisations")}))
