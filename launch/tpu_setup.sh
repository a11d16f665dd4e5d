#!/usr/bin/env bash
# Copy this repository (and optionally the dataset files) to every worker of a TPU VM / pod
# slice and install it there in a virtual environment ~/fred_venv with jax[tpu].
#
#   launch/tpu_setup.sh [--dry-run] NAME ZONE
#
#   NAME, ZONE  as given to launch/tpu_create.sh
# Environment: PROJECT (gcloud project), DATA_DIR=/local/dir to also copy the offline dataset
# files (FRED_DATA_DIR layout) to ~/fred_data on every worker, DRY_RUN=1 = --dry-run.
#
# Every worker gets the same files: a multi-host JAX program is one program started on all
# hosts. The archive excludes .git, build outputs and caches.
source "$(dirname "$0")/common.sh"
need 2 "$0 [--dry-run] NAME ZONE"
NAME="${ARGS[0]}" ZONE="${ARGS[1]}"
TARBALL="${TMPDIR:-/tmp}/fred_jax_src.tar.gz"
extra=()
[[ -n "${PROJECT:-}" ]] && extra+=(--project="$PROJECT")

run tar czf "$TARBALL" --exclude=.git --exclude='*.egg-info' --exclude=__pycache__ \
    --exclude=.pytest_cache -C "$REPO_ROOT" .
run gcloud compute tpus tpu-vm scp "$TARBALL" "$NAME":fred_jax_src.tar.gz --zone="$ZONE" \
    --worker=all "${extra[@]}"
run gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=all "${extra[@]}" --command="\
mkdir -p ~/fred_jax && tar xzf ~/fred_jax_src.tar.gz -C ~/fred_jax && \
python3 -m venv ~/fred_venv && ~/fred_venv/bin/pip install -q -U pip \"jax[tpu]\" && \
~/fred_venv/bin/pip install -q -e ~/fred_jax && \
~/fred_venv/bin/python -c \"import jax; print(jax.process_index(), jax.local_devices())\""
if [[ -n "${DATA_DIR:-}" ]]; then
  run gcloud compute tpus tpu-vm scp --recurse "$DATA_DIR" "$NAME":fred_data --zone="$ZONE" \
      --worker=all "${extra[@]}"
fi
