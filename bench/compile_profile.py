"""Time `compile_core()` and count numba compilations (specialisations) per function.

    find cmasim -name '*.nb[ic]' -delete        # or a fresh checkout: an empty numba cache
    /usr/bin/time -v python bench/compile_profile.py OUT.json

Every `numba:compile` event is one compilation of one function for one argument-type
combination (the same events `cmasim.warmup.compile_listener` reports). Writes the wall time,
the number of functions and of compilations, the 40 most compiled functions, and the 40
functions with the largest own compile time (each event's wall time minus that of the events
nested in it: the callees numba compiles while typing it) to OUT.json.
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
own = collections.Counter()  # seconds of each function's compilations, nested compilations excluded
stack = []
class L(event.Listener):
    def on_start(self, ev):
        disp = (ev.data or {}).get("dispatcher")
        fn = getattr(disp, "py_func", None)
        name = f"{fn.__module__}.{fn.__name__}" if fn is not None else "?"
        if fn is not None:
            counts[name] += 1
        stack.append([name, time.perf_counter(), 0.0])
    def on_end(self, ev):
        name, t, nested = stack.pop()
        d = time.perf_counter() - t
        own[name] += d - nested
        if stack:
            stack[-1][2] += d
event.register("numba:compile", L())
from cmasim.warmup import compile_core
compile_core()
wall = time.perf_counter() - t0
out = {"wall_s": round(wall, 1), "functions": len(counts), "specialisations": sum(counts.values()),
       "top": counts.most_common(40),
       "own_s_top": [(k, round(v, 2), counts[k]) for k, v in own.most_common(40)]}
json.dump(out, open(sys.argv[1], "w"), indent=1)
print(json.dumps({k: out[k] for k in ("wall_s", "functions", "specialisations")}))
