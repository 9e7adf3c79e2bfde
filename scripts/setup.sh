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
if python -c "import torch" 2>/dev/null; then
  echo "setup: torch $(python -c 'import torch; print(torch.__version__)') already installed"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup: NVIDIA GPU found: installing the CUDA build of torch"
  pip install -q "torch>=2.2"
else
  echo "setup: no GPU: installing the CPU build of torch"
  pip install -q "torch==2.13.0+cpu" 2>/dev/null \
    || pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
pip install -q -e ".[${ULMFIT_EXTRAS:-dev}]"
