#!/usr/bin/env bash
# Create .venv and install ulmfit into it. Without an NVIDIA GPU this installs the CPU build of
# torch (a few hundred MB) instead of the multi-GB CUDA build plain `pip install torch` pulls.
# Extras to install: ULMFIT_EXTRAS (default "dev").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
VENV_PY="$PWD/.venv/bin/python" . scripts/install_torch.sh
pip install -q -e ".[${ULMFIT_EXTRAS:-dev}]"
