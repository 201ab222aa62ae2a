#!/usr/bin/env bash
# Measure partbench's speed claims on a GPU: installs the project without dependencies, runs the CUDA
# tests and every `benchmark bench` at the paper's sizes, prints one table and writes a JSON file
# ($OUT/gpu-check.json when $OUT is set, else a path it prints). Within 8 minutes on one GPU; needs no
# network. See docs/performance.md.
#
#   tools/gpu-check.sh                        # on a machine with a CUDA GPU
#   tools/gpu-check.sh --quick --no-install   # dry run on the CPU at tiny sizes (not GPU figures)
#   tools/gpu-check.sh --help
#
# Python: $PYTHON, else `python`, else `python3` (use the interpreter that has torch).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if command -v python >/dev/null 2>&1; then python=python; else python=python3; fi
fi
exec "$python" "$here/gpu_check.py" "$@"
