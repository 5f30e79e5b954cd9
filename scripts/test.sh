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
# then the per-package environments and the other Pythons (below), in lanes
logs=$(mktemp -d)
lane() {  # every environment runs, so that one failure does not hide another
  local failed=0
  for env in "$@"; do
    echo "== per-package environment: $env"
    hatch run "$env:test" -q -m "not slow" || { echo "== FAILED: $env"; failed=1; }
  done
  return "$failed"
}
# the oldest and newest Pythons hither-core declares (hatch.toml's `pythons` matrix) on core,
# cache and store; a version not on this machine is skipped with a line saying so
python_dir() {  # the folder of a working pythonX.Y: on PATH, else pyenv's (without pyenv itself)
  local v=$1 cand exe
  for cand in "python$v" "${PYENV_ROOT:-${HOME:-/nonexistent}/.pyenv}"/versions/"$v".*/bin/"python$v"; do
    exe=$("$cand" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$v'; print(sys.executable)" \
          2>/dev/null) || continue
    dirname "$exe"
    return 0
  done
  return 1
}
python_lane() {
  local failed=0 v dir start
  for v in 3.10 3.13; do
    if ! dir=$(python_dir "$v"); then
      if [ "${HITHER_REQUIRE_SERVICES:-}" = 1 ]; then
        echo "== FAILED: Python $v not found (python$v on PATH, or under pyenv) and HITHER_REQUIRE_SERVICES=1"
        failed=1
      else
        echo "== skipped: Python $v not found (python$v on PATH, or under pyenv): hither is not tested on it here"
      fi
      continue
    fi
    echo "== Python $v ($dir): hither-core, hither-cache, hither-store"
    start=$SECONDS
    # bytecode compiled at install: a first run's imports are not slower than the tests allow
    # one process: this lane runs beside the Slurm, Docker and remote tests
    PATH="$dir:$PATH" UV_COMPILE_BYTECODE=1 hatch run "pythons.py$v:test" -q -m "not slow" \
      || { echo "== FAILED: Python $v"; failed=1; }
    echo "== Python $v: $((SECONDS - start)) s"
  done
  return "$failed"
}
# The Slurm, Docker and remote tests share those services, so they run in order, one
# process; they mostly wait, so the environments that use neither Slurm nor Docker (the
# first lane, the other Pythons) run beside them; the second lane, which does, runs after:
# container-only beside slurm-only then remote-only (each test's leftover checks look at
# its own containers and batches only).
# (one after the other: tests that look at this machine's shared memory or processes must
# not see another run of the same tests)
lane core-only cache-only store-only monitor-only >"$logs/first" 2>&1 & first=$!
( wait_first() { while kill -0 "$first" 2>/dev/null; do sleep 1; done; }; wait_first
  python_lane ) >"$logs/pythons" 2>&1 & pythons=$!
hatch run test packages/hither-slurm packages/hither-container packages/hither-remote || status=1
lane container-only >"$logs/containers" 2>&1 & containers=$!
lane slurm-only remote-only >"$logs/second" 2>&1 || status=1
wait "$containers" || status=1
wait "$first" || status=1
wait "$pythons" || status=1
cat "$logs/first" "$logs/second" "$logs/containers"
cat "$logs/pythons"
rm -rf "$logs"
exit "$status"
