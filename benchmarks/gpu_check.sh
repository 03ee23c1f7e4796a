#!/usr/bin/env bash
# One prepared check of mbdlfast on a bare GPU machine: install, GPU tests, benchmarks and demo, each
# step under its own timeout, results as JSON in OUT_DIR (see benchmarks/gpu_check.py).
#   benchmarks/gpu_check.sh OUT_DIR             on the GPU machine
#   benchmarks/gpu_check.sh --dry-run OUT_DIR   the same steps on CPU at tiny sizes
#   benchmarks/gpu_check.sh --prepare           here: GIT_SHA and the wheels the GPU machine lacks
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
