#!/usr/bin/env bash
# Create a Cloud TPU VM or a multi-host pod slice.
#
#   launch/tpu_create.sh [--dry-run] NAME ZONE ACCELERATOR_TYPE [RUNTIME_VERSION]
#
#   NAME              TPU resource name, e.g. fred-v4-32
#   ZONE              e.g. us-central2-b
#   ACCELERATOR_TYPE  e.g. v4-8 (one host, 4 chips), v4-32 (pod slice, 4 hosts), v5litepod-16
#   RUNTIME_VERSION   TPU software version (default tpu-ubuntu2204-base)
# Environment: PROJECT (gcloud project; default: gcloud's configured one), SPOT=1 for a spot
# (preemptible) slice, DRY_RUN=1 = --dry-run (print the command only).
#
# A pod slice has several hosts ("workers"); the other scripts address all of them with
# --worker=all. Next: launch/tpu_setup.sh NAME ZONE.
source "$(dirname "$0")/common.sh"
need 3 "$0 [--dry-run] NAME ZONE ACCELERATOR_TYPE [RUNTIME_VERSION]"
NAME="${ARGS[0]}" ZONE="${ARGS[1]}" TYPE="${ARGS[2]}" VERSION="${ARGS[3]:-tpu-ubuntu2204-base}"

cmd=(gcloud compute tpus tpu-vm create "$NAME" --zone="$ZONE" --accelerator-type="$TYPE"
     --version="$VERSION")
[[ -n "${PROJECT:-}" ]] && cmd+=(--project="$PROJECT")
[[ "${SPOT:-0}" == "1" ]] && cmd+=(--spot)
run "${cmd[@]}"
