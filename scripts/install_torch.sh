# Sourced by setup.sh and fastai_env.sh with the venv's python in $VENV_PY: installs torch into
# that venv unless it has one. Without an NVIDIA GPU it takes the CPU build (a few hundred MB;
# on machines with a local wheel of torch 2.13.0 that is seconds) rather than the multi-GB CUDA
# build a plain `pip install torch` pulls.
if "$VENV_PY" -c "import torch" 2>/dev/null; then
  echo "$(basename "$0"): torch $("$VENV_PY" -c 'import torch; print(torch.__version__)') already installed"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "$(basename "$0"): NVIDIA GPU found: installing the CUDA build of torch"
  "$VENV_PY" -m pip install -q "torch>=2.2"
else
  echo "$(basename "$0"): no GPU: installing the CPU build of torch"
  "$VENV_PY" -m pip install -q "torch==2.13.0+cpu" 2>/dev/null \
    || "$VENV_PY" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
