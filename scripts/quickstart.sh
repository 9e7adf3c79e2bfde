#!/usr/bin/env bash
# Set up, then run all three ULMFiT stages (fwd+bwd) on the embedded sample: a few minutes on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ulmfit pipeline experiment=quickstart "$@"
# One sample from the fine-tuned LM (run= defaults to the newest finetune-lm run under outputs/).
ulmfit generate prompt="The movie was" n_words=30 seed=0
