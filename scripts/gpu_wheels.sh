#!/usr/bin/env bash
# Fetch, here (with the package registry), the wheels a bare GPU machine lacks, into .whl/, for
# scripts/gpu_check.sh to install there without a network. The machine (the device tool's
# nvidia-h200: python 3.12, x86_64) has torch, numpy, pandas, rich, sentencepiece, matplotlib,
# pyyaml, packaging, pytest, setuptools, torchvision, scikit-learn, scipy, requests, pillow,
# cloudpickle ... but not hydra-core, omegaconf or antlr4-python3-runtime (ulmfit's own
# requirements), nor fastai and its fast* helpers (for the bench's fastai rows).
#
#   bash scripts/gpu_wheels.sh             # -> .whl/*.whl, then checks that every requirement is met
#   GPU_WHEELS_FASTAI=0 bash scripts/gpu_wheels.sh   # without fastai's (the bench then needs --no-fastai)
#
# fastai declares spaCy (tokenizers) and torchvision; the bench imports neither's code paths
# (fastai's AWD-LSTM and its Adam), torchvision is on the machine anyway, and spaCy's wheels
# with their dependencies would be tens of MB of the device tool's 64 MiB: it is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=.whl
FASTAI=${GPU_WHEELS_FASTAI:-1}
export PIP_DISABLE_PIP_VERSION_CHECK=1

rm -rf "$OUT"
mkdir -p "$OUT"
grep -qxF '.whl/' .gitignore 2>/dev/null || echo "note: add .whl/ to .gitignore (it is carried by the device tool, not committed)" >&2

dl() {  # pure-Python or manylinux x86_64 wheels for CPython 3.12, without their dependencies (listed by hand)
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$OUT" "$@" 2>&1 | grep -v "is ignored" || true
}

# ulmfit's requirements (pyproject.toml) that the machine lacks, at the versions tested here
dl "hydra-core>=1.3,<1.4" "omegaconf>=2.3,<2.4"
# antlr4-python3-runtime 4.9.3 (what omegaconf 2.3 pins) exists as an sdist only: build its pure-Python wheel
"$PY" -m pip wheel -q --no-deps --no-binary=:all: -w "$OUT" "antlr4-python3-runtime==4.9.3" 2>&1 | grep -v "is ignored" || true

if [ "$FASTAI" = 1 ]; then
  # fastai 2.8.12 (what tests/test_fastai_interop.py and the CPU bench use) and what it needs beyond the machine;
  # fastprogress 1.1 needs python-fasthtml (a web stack): 1.0 needs nothing
  dl "fastai==2.8.12" "fastcore>=2.2.22" "fastdownload>=0.0.8,<2" "fasttransform>=0.0.3" "fastprogress>=0.2.4,<1.1" \
    "plum-dispatch<2.10" "beartype>=0.16.2"
fi

# Every requirement of every wheel here must be on the machine (KINDS.md's list) or among the wheels.
"$PY" - "$OUT" <<'EOF'
import re, sys, zipfile
from pathlib import Path

MACHINE = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas
nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand
nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink
nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks
pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn
scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers
treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
xxhash yarl zipp""".split()
LEFT_OUT = {"spacy"}  # fastai's tokenizers only; see the header of this script


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


out = Path(sys.argv[1])
wheels = sorted(out.glob("*.whl"))
have = {norm(w.name.split("-")[0]) for w in wheels}
missing, total = [], 0
for w in wheels:
    total += w.stat().st_size
    meta = next(n for n in zipfile.ZipFile(w).namelist() if n.endswith(".dist-info/METADATA"))
    for line in zipfile.ZipFile(w).read(meta).decode().splitlines():
        if not line.startswith("Requires-Dist:") or "extra ==" in line:
            continue
        req = line.split(":", 1)[1].strip()
        if ";" in req and re.search(r'python_version\s*[<=]=?\s*"3\.([0-9]|1[01])"', req.split(";", 1)[1]):
            continue  # only for Pythons older than 3.12
        name = norm(re.match(r"[A-Za-z0-9_.\-]+", req).group(0))
        if name not in have and name not in MACHINE and name not in LEFT_OUT:
            missing.append(f"{w.name}: {req}")
names = [norm(w.name.split("-")[0]) for w in wheels]
dupes = {n for n in names if names.count(n) > 1}
for w in wheels:
    print(f"  {w.stat().st_size / 1024:8.0f} KiB  {w.name}")
print(f"gpu_wheels: {len(wheels)} wheels, {total / 2**20:.2f} MiB in {out}/ (the device tool carries 64 MiB in all)")
if dupes:
    sys.exit(f"gpu_wheels: two versions of {sorted(dupes)}: pip would refuse to install them together")
if missing:
    sys.exit("gpu_wheels: requirements neither on the GPU machine nor among the wheels:\n  " + "\n  ".join(missing))
EOF
