#!/usr/bin/env bash
# Set up and run the main demo: a real pipeline on the local default (no services needed).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/tools.sh   # hatch, in a venv of its own if it is not on PATH (PEP 668 safe)
exec hatch run demo "$@"
