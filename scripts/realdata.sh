#!/usr/bin/env bash
# The slow real-data checks, not part of the default suite.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
python -m pytest -m slow -q "$@"
