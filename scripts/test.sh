#!/usr/bin/env bash
# Set up, then run the default test suite (slow real-data checks are behind `-m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
# tracking: the tracker tests read back real TensorBoard files, W&B offline runs and an MLflow server
ULMFIT_EXTRAS=${ULMFIT_EXTRAS:-dev,sweeps,tracking} bash scripts/setup.sh
. .venv/bin/activate
python -m pytest -q "$@"
