#!/usr/bin/env bash
# Set up and run the whole test suite: installs hatch if needed, starts the services the
# tests use (scripts/services.sh), creates the workspace environment (every package
# editable), runs pytest over all packages, then each package's tests again in an
# environment with hither-core and that package only (catches undeclared dependencies; the
# long fault-path tests marked `slow` ran in the main run and are not repeated there).
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh ARGS...    # only: pytest ARGS in the all-in-one environment
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh   # hatch, in a venv of its own if it is not on PATH (PEP 668 safe)
bash scripts/services.sh
hatch env prune >/dev/null 2>&1 || true   # pick up newly declared entry points
hatch env create
hatch run python scripts/check_workspace.py
if [ $# -gt 0 ]; then
  exec hatch run test "$@"
fi
status=0  # every step runs, so that one failure does not hide another
hatch run lint || status=1   # ruff, mypy on hither-core, import contracts (.importlinter)
# the main run: the packages whose tests are independent of each other on two processes
# (pytest-xdist), then those that share Slurm, Docker or a compute resource, in order
hatch run test packages/hither-core packages/hither-cache packages/hither-store packages/hither-monitor tests -n 2 || status=1
hatch run test packages/hither-slurm packages/hither-container packages/hither-remote || status=1
# two lanes at once: these tests mostly wait (on Slurm, Docker, job processes), so two
# lanes finish in little more than the longer one; the services each lane uses (Slurm
# and Docker in the second only) are not shared with the first
logs=$(mktemp -d)
lane() {  # every environment runs, so that one failure does not hide another
  local failed=0
  for env in "$@"; do
    echo "== per-package environment: $env"
    hatch run "$env:test" -q -m "not slow" || { echo "== FAILED: $env"; failed=1; }
  done
  return "$failed"
}
lane core-only cache-only store-only monitor-only >"$logs/first" 2>&1 & first=$!
lane slurm-only container-only remote-only >"$logs/second" 2>&1 & second=$!
wait "$first" || status=1
wait "$second" || status=1
cat "$logs/first" "$logs/second"
rm -rf "$logs"
exit "$status"
