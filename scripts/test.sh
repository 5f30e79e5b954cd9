#!/usr/bin/env bash
# Set up and run the whole test suite: installs hatch if needed, starts the services the
# tests use (scripts/services.sh), creates the workspace environment, runs pytest.
#   bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hatch >/dev/null 2>&1 || python3 -m pip install -q "hatch>=1.16"
bash scripts/services.sh
hatch env create >/dev/null 2>&1 || true
hatch env prune >/dev/null 2>&1 && hatch env create   # pick up newly declared entry points
hatch run python scripts/check_workspace.py
exec hatch run test "$@"
