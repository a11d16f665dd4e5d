#!/usr/bin/env bash
# Delete a TPU VM / pod slice (stops the billing).
#
#   launch/tpu_delete.sh [--dry-run] NAME ZONE
#
# Environment: PROJECT (gcloud project), DRY_RUN=1 = --dry-run.
source "$(dirname "$0")/common.sh"
need 2 "$0 [--dry-run] NAME ZONE"
NAME="${ARGS[0]}" ZONE="${ARGS[1]}"
extra=()
[[ -n "${PROJECT:-}" ]] && extra+=(--project="$PROJECT")
run gcloud compute tpus tpu-vm delete "$NAME" --zone="$ZONE" --quiet "${extra[@]}"
