#!/usr/bin/env bash
# Start the distillation on every worker of a TPU VM / pod slice (one process per host).
#
#   launch/tpu_run.sh [--dry-run] NAME ZONE CONFIG WORKDIR [MAIN_FLAG...]
#
#   NAME, ZONE   as given to launch/tpu_create.sh
#   CONFIG       config file relative to the repository, e.g. configs/cifar10_dm.py
#   WORKDIR      output directory; on a multi-host slice a directory every host shares (e.g. a
#                bucket mounted with gcsfuse at the same path on every worker, not a gs:// URL):
#                orbax writes each host's shards of the checkpoint there
#   MAIN_FLAG    passed on to fred_jax.main, e.g. --config.tm.num_trajectories=32
# Environment: PROJECT (gcloud project), DETACH=1 to run under nohup (log in ~/fred_run.log on
# each worker) so the run survives a dropped ssh session, DRY_RUN=1 = --dry-run.
#
# FRED_DISTRIBUTED=1 makes fred_jax.sharding.maybe_initialize_distributed() call
# jax.distributed.initialize(), which finds the other hosts of the slice by itself; every
# host runs the same command, and only process 0 writes logs, images and exports.
source "$(dirname "$0")/common.sh"
need 4 "$0 [--dry-run] NAME ZONE CONFIG WORKDIR [MAIN_FLAG...]"
NAME="${ARGS[0]}" ZONE="${ARGS[1]}" CONFIG="${ARGS[2]}" WORKDIR="${ARGS[3]}"
flags=("${ARGS[@]:4}")
extra=()
[[ -n "${PROJECT:-}" ]] && extra+=(--project="$PROJECT")

main="~/fred_venv/bin/python -m fred_jax.main --config=$(quote "$CONFIG")"
main+=" --workdir=$(quote "$WORKDIR")"
for f in "${flags[@]}"; do main+=" $(quote "$f")"; done
if [[ "${DETACH:-0}" == "1" ]]; then
  main="nohup $main > ~/fred_run.log 2>&1 &"
fi
main="FRED_DISTRIBUTED=1 FRED_DATA_DIR=\$HOME/fred_data $main"
run gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=all "${extra[@]}" \
    --command="cd ~/fred_jax && $main"
