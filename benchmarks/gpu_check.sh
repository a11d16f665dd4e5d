#!/usr/bin/env bash
# GPU check (issue 12 item 7, issue 27 item 3): DM / TM / evaluation / DC with the backend's
# resolved defaults against the CPU-style settings on the same inputs and keys, at CIFAR-10
# shapes (ConvNet, ipc 1, k=64). Prints per workload and mode the first call (compilation) and
# the median step in ms, XLA's temp buffer MiB (DM, TM, DC), the device's peak MiB so far, then
# whether the two modes agree (loss and update, or evaluation parameters and accuracies, within
# --rtol); exits 1 if not. Recorded in benchmarks/RESULTS.md. < 8 minutes on one GPU (timeout
# 480 s). Extra arguments go to benchmarks/gpu_check.py (e.g. --allow_cpu on a CPU machine).
#   bash benchmarks/gpu_check.sh [--workloads dm,tm,eval,dc] [--precision highest]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader || true
"$PY" -c 'import jax; print("jax", jax.__version__, jax.devices())'
exec timeout 480 "$PY" benchmarks/gpu_check.py "$@"
