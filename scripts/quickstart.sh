#!/usr/bin/env bash
# Set up, then run all three ULMFiT stages (fwd+bwd) on the embedded sample: a few minutes on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ulmfit pipeline experiment=quickstart "$@"
