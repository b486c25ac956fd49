"""Digest the outputs of a fixed set of compiled runs, to check a change keeps results bit-identical.

    PYTHONPATH=TREE python bench/identity.py OUT.json            # write the digests
    PYTHONPATH=TREE python bench/identity.py OUT.json --against BASE.json

Runs, each in a child process of this interpreter (`python -m cmasim.cli`, so the tree on
PYTHONPATH is the one measured): five scenarios under the policies that reach the most code
(default, the pins oracle with and without THP, Android's era, the THP theft), and replays of
both shared traces with `--fidelity`. Each output file is hashed with its timing fields
removed (`wall_s`, `lines_per_s` and their kin, and the trace's path and mtime, which name the
checkout); `--against` prints every file whose digest
differs and exits 1. Performance work (issue 13) must leave every digest unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT / "data" / "traces" / "linux-6.18-x86_64"

RUNS: dict[str, list[str]] = {
    "default": ["run", "--scenario", "default"],
    "pins-fail": ["run", "--scenario", "oracle-pins-fail", "--policy", "linux-6.1"],
    "pins-fail-thp": ["run", "--scenario", "oracle-pins-fail", "--policy", "linux-6.1",
                      "--set", "machine.thp=always", "--set", "machine.min_free_kbytes=4096"],
    "android": ["run", "--scenario", "android-pcp-starvation"],
    "thp-theft": ["run", "--scenario", "thp-cma-theft"],
    "gpu-pins": ["run", "--scenario", "gpu-cma-short-pins"],
}
for _t in ("thp-mix", "pybuild"):
    RUNS[f"replay-{_t}"] = ["replay", str(TRACES / _t / "trace.txt.xz"), "--snapshot", str(TRACES / _t), "--fidelity"]

TIMING_KEYS = {"wall_s", "lines_per_s", "parse_s", "replay_s", "elapsed_s", "seconds"}
# and what names the checkout rather than the result: the trace's path, its file's mtime
PLACE_KEYS = {"trace", "mtime_ns"}


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items()
                if k not in TIMING_KEYS and not k.endswith("_wall_s")
                and not (k in PLACE_KEYS and isinstance(v, (str, int)))}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def digest_dir(out: Path) -> dict[str, str]:
    """sha256 of every file under `out`; JSON files without their timing fields."""
    res = {}
    for p in sorted(out.rglob("*")):
        if not p.is_file() or p.name.endswith(".html"):
            continue
        data = p.read_bytes()
        if p.suffix == ".json":
            data = json.dumps(_strip(json.loads(data)), sort_keys=True).encode()
        elif p.suffix == ".npz":  # the arrays, not the zip's timestamps
            import numpy as np
            with np.load(p, allow_pickle=False) as z:
                parts = [z[k] for k in sorted(z.files)]
            data = b"".join(json.dumps(_strip(json.loads(v)), sort_keys=True).encode() if isinstance(v, bytes)
                            else v.tobytes() for v in parts)
        elif p.suffix == ".jsonl":
            data = b"\n".join(json.dumps(_strip(json.loads(line)), sort_keys=True).encode()
                              for line in data.splitlines() if line.strip())
        res[str(p.relative_to(out))] = hashlib.sha256(data).hexdigest()[:16]
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--against", type=Path)
    ap.add_argument("--only", help="comma-separated run names")
    a = ap.parse_args()
    names = a.only.split(",") if a.only else list(RUNS)
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        ap.error(f"--only: unknown run(s) {', '.join(unknown)}; known: {', '.join(RUNS)}")
    if a.against and not a.against.is_file():
        ap.error(f"--against: {a.against}: no such file")
    if not a.out.parent.is_dir():
        ap.error(f"{a.out}: its folder does not exist")
    digests: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            out = Path(tmp) / name
            cmd = [sys.executable, "-m", "cmasim.cli", *RUNS[name], "--out", str(out)]
            cmd += ["--quiet"] if RUNS[name][0] == "run" else []
            r = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if r.returncode != 0:
                print(f"{name}: exit {r.returncode}\n{r.stderr[-2000:]}", file=sys.stderr)
                return 2
            digests[name] = digest_dir(out)
            print(f"{name}: {len(digests[name])} files", flush=True)
    a.out.write_text(json.dumps(digests, indent=1, sort_keys=True))
    if not a.against:
        return 0
    base = json.loads(a.against.read_text())
    bad = 0
    for name in names:
        for f in sorted(set(base.get(name, {})) | set(digests[name])):
            if base.get(name, {}).get(f) != digests[name].get(f):
                print(f"DIFFERS {name}/{f}")
                bad += 1
    print("identical" if not bad else f"{bad} files differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
