#!/bin/bash
# Prints ops/s of the native C reference core (GIB GiB zone, default 16; 5M ops) as the last line.
# Copied from the project's shared bench-ref/run-native.sh; the one change: the Python that drives
# the C core is $PYTHON (default python3), so `cmasim bench --reference` can pass its own (needs numpy).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp -r "$here"/*.py "$here/c" "$tmp"/
gcc -O2 -march=native -shared -fPIC -o "$tmp/c/libbuddy.so" "$tmp/c/buddy.c"
cd "$tmp" && BUDDY_C=1 BUDDY_MODE=py "${PYTHON:-python3}" bench.py numpy "${GIB:-16}" 200000 5000000 | "${PYTHON:-python3}" -c 'import json,sys; r=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(r["ops_per_s"])'
