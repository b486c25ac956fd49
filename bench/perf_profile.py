"""Profile the bench's churn with Linux perf, naming numba's compiled functions.

    PYTHONPATH=. python bench/perf_profile.py GIB EVENTS OUT.data [CPUS]
    perf report -i OUT.data --sort sym --stdio

Builds a machine as `cmasim bench` does and warms it up (which loads the compiled core from
the numba cache of this tree), then writes /tmp/perf-<pid>.map: every function symbol of the
cached ELF objects (`.nbc` files under cmasim/, listed with `nm -S`, names demangled with
c++filt), placed where the JIT loaded it: the load address (a global function's address minus
its offset in the object) most of the object's global functions agree on — a single one may
resolve to a copy of that function linked into another library. Then
`perf record -F 2000 -p <pid>` samples the process while it runs EVENTS churn events (on a
machine of CPUS simulated CPUs, 2 unless given, as `cmasim bench`; 64 for the scale target). Needs
perf, nm and c++filt, and a compiled cache. A symbol linked into several libraries is placed by
one of them, so attribution outside `churn`'s own library is approximate; it is best on a
tree whose cache holds only what churn needs (a fresh worktree after `run_bench(1, runs=1,
measure_start=False)`); objects that were not loaded are left out (`perf_map`).
Unnamed addresses are numba's runtime (NRT_incref/NRT_decref, compiled at start-up, not cached).
"""

import glob
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cmasim.bench import NEVER, make_machine  # noqa: E402
from cmasim.workload.churn import churn, churn_params  # noqa: E402


def _elf(x):
    """The ELF object inside an unpickled numba cache entry."""
    if isinstance(x, bytes) and x[:4] == b"\x7fELF":
        return x
    if isinstance(x, (tuple, list)):
        for y in x:
            r = _elf(y)
            if r:
                return r
    return None


def _name(sym: str) -> str:
    d = subprocess.run(["c++filt", sym], capture_output=True, text=True).stdout.strip()
    return re.sub(r"\[abi:[^\]]*\]", "", d).split("(")[0].replace("cmasim::", "")[:80]


def perf_map(engine) -> list[str]:
    """Lines "addr size name" for every function of every loaded cached object of this tree.

    An object that was not loaded by itself still gets a base from its global symbols, which
    resolve to the copies linked into a loaded library (numba links every callee's module into
    its callers): one vote per symbol, at scattered bases, landing inside that library. So the
    objects are placed most votes first, and one that would overlap an object already placed
    is left out — otherwise `churn`'s own library (which holds nearly the whole core) is
    covered by the names of functions it never runs."""
    placed = []
    for f in glob.glob(str(ROOT / "cmasim" / "**" / "__pycache__" / "*.nbc"), recursive=True):
        try:
            obj = _elf(pickle.loads(Path(f).read_bytes()))
        except Exception:  # noqa: BLE001 - a cache entry of another numba version: skip it
            continue
        if not obj:
            continue
        with tempfile.NamedTemporaryFile(suffix=".o") as g:
            g.write(obj)
            g.flush()
            out = subprocess.run(["nm", "-S", "--defined-only", g.name], capture_output=True, text=True).stdout
        syms = [(int(p[0], 16), int(p[1], 16), p[3], p[2]) for p in (ln.split() for ln in out.splitlines())
                if len(p) == 4 and p[2] in "TtWw"]
        # The object's own load address is the one most of its global symbols agree on.
        votes = {}
        for off, _, sym, kind in syms:
            if kind == "T":
                addr = engine.get_function_address(sym)
                if addr:
                    votes[addr - off] = votes.get(addr - off, 0) + 1
        if votes:
            base = max(votes, key=votes.get)
            end = base + max(off + size for off, size, _, _ in syms)
            placed.append((votes[base], base, end, syms))
    lines, taken = [], []
    for _, base, end, syms in sorted(placed, key=lambda x: -x[0]):
        if any(base < e and b < end for b, e in taken):
            continue
        taken.append((base, end))
        lines += [f"{base + off:x} {size:x} {_name(sym)}\n" for off, size, sym, _ in syms if size]
    return lines


def main() -> None:
    try:
        if len(sys.argv) not in (4, 5):
            raise ValueError("expected 3 or 4 arguments")
        gib, events, out = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
        cpus = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    except ValueError as e:
        sys.exit(f"usage: perf_profile.py GIB EVENTS OUT.data [CPUS] ({e})")
    m = make_machine(gib, cpus=cpus)
    W = churn_params(m)
    churn(m.S, m.C, W, 600_000 if gib > 4 else 200_000, NEVER)
    engine = churn.overloads[churn.signatures[0]].library._codegen._engine
    lines = perf_map(engine)
    Path(f"/tmp/perf-{os.getpid()}.map").write_text("".join(lines))
    print(f"{len(lines)} symbols in /tmp/perf-{os.getpid()}.map", file=sys.stderr)
    rec = subprocess.Popen(["perf", "record", "-F", "2000", "-o", out, "-p", str(os.getpid())],
                           stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    t = time.perf_counter()
    churn(m.S, m.C, W, events, NEVER)
    dt = time.perf_counter() - t
    rec.send_signal(2)
    rec.wait()
    print(f"{events / dt:.0f} events/s while sampled; perf data in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
