"""Instruction-level profile of the bench's churn: perf samples on the loaded machine code.

    PYTHONPATH=. python bench/perf_annotate.py GIB EVENTS CPUS FUNC[,FUNC...] [OUTDIR]

Builds and warms a machine as `bench/perf_profile.py` does (GIB GiB, CPUS simulated CPUs),
writes the same /tmp/perf-<pid>.map, then `perf record -F 4000` samples the process while it
runs EVENTS churn events. For each named function (the end of its demangled name, e.g.
`__free_one_page`) that received at least 0.5% of the samples, the copy that ran is read from
the process's memory, disassembled with objdump at its load address, and written to
OUTDIR/FUNC.txt (default /tmp/cmasim-annotate) with each instruction's share of all samples in
front; the sample of a load that waits for memory usually lands on the instruction after it.
Needs perf, objdump, nm and c++filt, and a compiled cache. The figures of
"Issue 13: the CPU axis" in docs/performance.md (the two-stage look-ahead) came from
`perf_annotate.py 16 3000000 64 __free_one_page,free_pcppages_bulk,page_del_and_expand,churn_events`.
"""

import collections
import ctypes
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import perf_profile  # noqa: E402
from cmasim.bench import NEVER, make_machine  # noqa: E402
from cmasim.outdir import atomic_file  # noqa: E402
from cmasim.workload.churn import churn, churn_params  # noqa: E402


def main() -> None:
    try:
        if len(sys.argv) not in (5, 6):
            raise ValueError("expected 4 or 5 arguments")
        gib, events, cpus = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
        funcs = [f for f in sys.argv[4].split(",") if f]
        if gib <= 0 or events < 1 or cpus < 1 or not funcs:
            raise ValueError("GIB, EVENTS and CPUS must be positive, FUNC not empty")
    except ValueError as e:
        sys.exit(f"usage: perf_annotate.py GIB EVENTS CPUS FUNC[,FUNC...] [OUTDIR] ({e})")
    outdir = Path(sys.argv[5] if len(sys.argv) > 5 else "/tmp/cmasim-annotate")
    for tool in ("perf", "objdump", "nm", "c++filt"):
        if shutil.which(tool) is None:
            sys.exit(f"perf_annotate: needs {tool}, which is not installed")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / ".write-test").touch()
        (outdir / ".write-test").unlink()
    except OSError as e:
        sys.exit(f"perf_annotate: cannot write into {outdir}: {e.strerror}")
    m = make_machine(gib, cpus=cpus)
    W = churn_params(m)
    churn(m.S, m.C, W, 600_000 if gib > 4 else 200_000, NEVER)
    engine = churn.overloads[churn.signatures[0]].library._codegen._engine
    lines = perf_profile.perf_map(engine)
    Path(f"/tmp/perf-{os.getpid()}.map").write_text("".join(lines))
    syms = [(int(a, 16), int(n, 16), name.strip()) for a, n, name in (ln.split(" ", 2) for ln in lines)]
    data = outdir / "perf.data"
    rec = subprocess.Popen(["perf", "record", "-F", "4000", "-o", str(data), "-p", str(os.getpid())],
                           stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    churn(m.S, m.C, W, events, NEVER)
    rec.send_signal(2)
    rec.wait()
    ips = collections.Counter(int(x, 16) for x in subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "ip"], capture_output=True, text=True, check=True).stdout.split())
    total = sum(ips.values())
    if total == 0:
        sys.exit("perf_annotate: perf recorded no samples")
    for func in funcs:
        for addr, size, name in syms:
            hits = sum(c for ip, c in ips.items() if addr <= ip < addr + size) if name.endswith(func) else 0
            if hits < 0.005 * total:
                continue
            code = outdir / f"{func}.bin"
            code.write_bytes(ctypes.string_at(addr, size))  # the code that ran, as loaded
            dis = subprocess.run(["objdump", "-D", "-b", "binary", "-m", "i386:x86-64", f"--adjust-vma={addr:#x}",
                                  str(code)], capture_output=True, text=True, check=True).stdout
            rows = [f"{name}: {hits} of {total} samples ({hits / total:.1%})\n"]
            for ln in dis.splitlines():
                head = ln.split(":", 1)[0].strip()
                if head and all(ch in "0123456789abcdef" for ch in head):
                    rows.append(f"{100 * ips.get(int(head, 16), 0) / total:6.2f} {ln}\n")
            with atomic_file(outdir / f"{func}.txt") as tmp:
                tmp.write_text("".join(rows))
            print(f"{func}: {hits / total:.1%} of the samples; {outdir / (func + '.txt')}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("perf_annotate: interrupted; the listings written so far are complete, the rest not written")
    except subprocess.CalledProcessError as e:
        sys.exit(f"perf_annotate: {e.cmd[0]} failed (exit {e.returncode})")
