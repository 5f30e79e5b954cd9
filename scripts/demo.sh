#!/usr/bin/env bash
# Set up and run the main demo: a real pipeline on the local default (no services needed).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hatch >/dev/null 2>&1 || python3 -m pip install -q "hatch>=1.16"
exec hatch run demo "$@"
