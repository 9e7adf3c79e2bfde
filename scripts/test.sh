#!/usr/bin/env bash
# Set up, then run the default test suite (slow real-data checks are behind `-m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
# The optional extras (formats, hf, tracking: half a GB) stay out of a newcomer's first setup; their
# tests skip, naming the extra. .ci/run installs them all (ULMFIT_EXTRAS).
ULMFIT_EXTRAS=${ULMFIT_EXTRAS:-dev,sweeps} bash scripts/setup.sh
. .venv/bin/activate
# Two workers: most tests wait on `ulmfit` subprocesses that start single-threaded (imports, data),
# so two keep both cores of a small machine busy; --dist loadfile keeps each file's module fixtures
# (a trained pipeline) on one worker. PYTEST_WORKERS=0 runs them in one process.
python -m pytest -q -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
