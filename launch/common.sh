# Shared helpers for the launch scripts (sourced, not run).
#
# Dry run: DRY_RUN=1 in the environment, or --dry-run as the first argument of any script,
# prints every command (shell-quoted, prefixed with "+ ") instead of running it; nothing
# touches the cloud or the cluster. Commands that only read local state run either way.

set -euo pipefail

DRY_RUN="${DRY_RUN:-0}"
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY_RUN=1
  shift
fi
ARGS=("$@")

# The repository root (launch/..), wherever the script is called from.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# quote ARG: ARG as one shell word (single-quoted unless it is plain), for printing.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# run CMD ARG...: run a command, or print it (copy-pasteable) in dry-run mode.
run() {
  if [[ "$DRY_RUN" == "1" ]]; then
    printf '+'
    for a in "$@"; do printf ' %s' "$(quote "$a")"; done
    printf '\n'
  else
    "$@"
  fi
}

# need N USAGE: exit with the usage text unless at least N positional arguments were given.
need() {
  if (( ${#ARGS[@]} < $1 )); then
    printf 'usage: %s\n' "$2" >&2
    exit 2
  fi
}
