#!/usr/bin/env bash
# Set up everything on a fresh machine (CPU engine, test extras) and run the test suite.
#   bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-cpu.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
exec "${VENV:-.venv}/bin/python" -m pytest "$@"
