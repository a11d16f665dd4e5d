#!/usr/bin/env bash
# GPU check (issue 12 item 7): DM / TM / evaluation with the backend's resolved defaults against
# the CPU-style settings on the same inputs and keys; step times and device memory. < 8 minutes
# on one GPU. Extra arguments go to benchmarks/gpu_check.py (e.g. --allow_cpu on a CPU machine).
#   bash benchmarks/gpu_check.sh [--workloads dm,tm,eval] [--precision highest]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader || true
"$PY" -c 'import jax; print("jax", jax.__version__, jax.devices())'
exec timeout 480 "$PY" benchmarks/gpu_check.py "$@"
