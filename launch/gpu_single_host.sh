#!/usr/bin/env bash
# Run the distillation on one machine with several GPUs (one process, all GPUs in one mesh).
#
#   launch/gpu_single_host.sh [--dry-run] CONFIG WORKDIR [NUM_GPUS] [MAIN_FLAG...]
#
#   CONFIG    config file, e.g. configs/cifar10_tm.py
#   WORKDIR   output directory
#   NUM_GPUS  use GPUs 0..NUM_GPUS-1 (default: all visible GPUs)
#   MAIN_FLAG passed on to fred_jax.main
# Environment: PYTHON (default python), DRY_RUN=1 = --dry-run.
#
# Needs jax with CUDA (pip install -U "jax[cuda12]"). One process drives all local GPUs; the
# mesh spans them (config num_devices defaults to all). No jax.distributed here.
source "$(dirname "$0")/common.sh"
need 2 "$0 [--dry-run] CONFIG WORKDIR [NUM_GPUS] [MAIN_FLAG...]"
CONFIG="${ARGS[0]}" WORKDIR="${ARGS[1]}" NUM="${ARGS[2]:-}"
flags=("${ARGS[@]:3}")
env_=()
if [[ -n "$NUM" ]]; then
  env_+=(CUDA_VISIBLE_DEVICES="$(seq -s, 0 $((NUM - 1)))")
fi
cd "$REPO_ROOT"
run env "${env_[@]}" XLA_PYTHON_CLIENT_MEM_FRACTION=.9 "${PYTHON:-python}" -m fred_jax.main \
    --config="$CONFIG" --workdir="$WORKDIR" "${flags[@]}"
