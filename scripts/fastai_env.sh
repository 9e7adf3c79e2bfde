#!/usr/bin/env bash
# Create .venv-fastai: torch (CPU build without a GPU, as scripts/setup.sh) + ulmfit (editable,
# with its dev extras) + fastai, for the fastai interop tests (tests/test_fastai_interop.py)
# and benchmarks against fastai. Safe to run again: it only installs what is missing.
#
#   bash scripts/fastai_env.sh
#   .venv-fastai/bin/python -m pytest tests/test_fastai_interop.py
#
# Why a script and not a `fastai` extra in pyproject.toml: fastai declares torchvision and spaCy
# as hard requirements, so `pip install -e .[fastai]` would pull torchvision, and with it a torch
# build matching that torchvision (the multi-GB CUDA one from PyPI), replacing the CPU build;
# PyPI's torchvision also fails to import beside torch 2.13.0+cpu. Neither is needed here:
# fastai imports torchvision only in fastai.vision, and spaCy only when its tokenizer runs.
# So fastai is installed with --no-deps, then its other (light) requirements by hand.
# FASTAI_VERSION pins the release the tests were checked against.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
FASTAI_VERSION=${FASTAI_VERSION:-2.8.12}
VENV=.venv-fastai
export PIP_DISABLE_PIP_VERSION_CHECK=1

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }

VENV_PY="$VENV/bin/python" . scripts/install_torch.sh

# ulmfit and its own requirements (torch is already there, so nothing replaces it)
pip install -q -e ".[dev]"

have=$("$VENV/bin/python" -c "import fastai; print(fastai.__version__)" 2>/dev/null || true)
if [ "$have" != "$FASTAI_VERSION" ]; then
  echo "fastai_env: installing fastai $FASTAI_VERSION (without torchvision/spaCy)"
  echo "fastai_env: (pip then reports that torchvision and spacy are missing: expected, see above)"
  pip install -q --no-deps "fastai==$FASTAI_VERSION"
  # fastai's requirements, less torchvision and spacy (and torch, already installed)
  pip install -q "fastdownload>=0.0.8,<2" "fastcore>=2.2.22" "fasttransform>=0.0.3" \
    "fastprogress>=0.2.4" "plum-dispatch<2.10" matplotlib pandas requests pyyaml "pillow>=9.0.0" \
    scikit-learn scipy packaging cloudpickle
fi

"$VENV/bin/python" - <<'EOF'
import importlib.util, torch, fastai
from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config  # noqa: F401
from fastai.text.models.core import get_language_model  # noqa: F401
import ulmfit_cli  # noqa: F401
assert importlib.util.find_spec("torchvision") is None, "torchvision got installed into .venv-fastai"
print(f"fastai_env: ready: .venv-fastai with torch {torch.__version__}, fastai {fastai.__version__}")
EOF
