#!/usr/bin/env bash
# The CUDA path, checked and measured on a bare GPU machine in one go: ~8 minutes on one H200.
#
#   bash scripts/gpu_check.sh OUT_DIR
#
# Run from anywhere; it works in the repository it sits in. The machine needs python3 with torch
# (CUDA), numpy, pandas, rich, sentencepiece, matplotlib, pyyaml, pytest and setuptools, and no
# network: ulmfit's other requirements (hydra-core, omegaconf, antlr4) come as wheels in .whl/
# beside this checkout, made beforehand with `bash scripts/gpu_wheels.sh` where PyPI is reachable
# (fastai's wheels too, for the bench's fastai rows; without them those rows are skipped).
#
# Parts, each under its own time limit (a hang costs that part only), in this order:
#   install     the wheels into a scratch site dir (PYTHONPATH), ulmfit with --no-deps
#   pytest      pytest -m cuda (tests/test_cuda.py), in parallel workers when pytest-xdist is there
#   quickstart  ulmfit pipeline experiment=quickstart device=cuda precision=bf16, then generate
#   bench_lm    benchmarks/bench.py --device cuda: LM at paper30k and paper60k, fp32 and bf16, ulmfit vs
#               the bare cuDNN nn.LSTM stack (and fastai), with a profiler table of every system
#   bench_clf   benchmarks/bench.py --device cuda: classifier docs/s at 200 / 1,000 / 5,000 tokens, fp32
#               and bf16, with peak GPU memory (flat beyond max_len 1,400)
# OUT_DIR gets at most 8 files: summary.txt (machine, versions, per-part timings, the key figures),
# pytest.log, quickstart.log, bench_lm.json, bench_clf.json, bench.csv, bench_profiles.txt, logs.txt.
#
# GPU_CHECK_PARTS=pytest,bench_lm reruns only those parts (install always runs).
# GPU_CHECK_DEVICE=cpu is the CPU stand-in used to size the parts without a GPU: device=cpu,
# smaller bench sizes and shorter runs, the tests' CPU mode (ULMFIT_CUDA_TESTS_DEVICE=cpu).
set -uo pipefail
OUT=${1:?usage: bash scripts/gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
PARTS=${GPU_CHECK_PARTS:-pytest,quickstart,bench_lm,bench_clf}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
SITE=$WORK/site
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 HYDRA_FULL_ERROR=0
export PYTHONPATH=$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}
T0=$(date +%s)

# Per-part time limits (seconds); they add up to 460 s, under the 8 minutes.
declare -A LIMIT=([install]=30 [pytest]=140 [quickstart]=90 [bench_lm]=110 [bench_clf]=90)
if [ "$DEVICE" = cpu ]; then  # the stand-in is far slower per step: generous limits, it only measures
  LIMIT=([install]=120 [pytest]=3000 [quickstart]=1800 [bench_lm]=900 [bench_clf]=900)
fi

TIMINGS=$WORK/timings.txt
: > "$TIMINGS"
part() {  # part NAME CMD...: run CMD under NAME's limit, output to $WORK/NAME.log, record rc and seconds
  local name=$1
  shift
  local t=$(date +%s%N)
  echo "== $name (limit ${LIMIT[$name]} s): $*" | tee -a "$WORK/$name.log"
  timeout -k 15 "${LIMIT[$name]}" "$@" >> "$WORK/$name.log" 2>&1
  local rc=$?
  local ms=$(( ($(date +%s%N) - t) / 1000000 ))
  local note=""
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && note="  TIMED OUT"
  printf '%-11s rc=%-3s %5d.%d s  (limit %s s)%s\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000 / 100)) "${LIMIT[$name]}" \
    "$note" | tee -a "$TIMINGS"
  tail -3 "$WORK/$name.log"
  return $rc
}
wants() { [[ ",$PARTS," == *",$1,"* ]]; }

# ---------------------------------------------------------------- install
install_part() {
  mkdir -p "$SITE"
  local core=() extra=()
  for w in .whl/*.whl; do
    [ -e "$w" ] || continue
    case "$(basename "$w")" in
      hydra_core-*|omegaconf-*|antlr4_python3_runtime-*) core+=("$w") ;;
      *) extra+=("$w") ;;
    esac
  done
  local pipi=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE")
  if [ ${#core[@]} -gt 0 ]; then "${pipi[@]}" "${core[@]}" || return 1; fi
  # fastai and its helpers: optional (the bench's fastai rows)
  if [ ${#extra[@]} -gt 0 ]; then "${pipi[@]}" "${extra[@]}" || echo "fastai wheels did not install: the bench runs without fastai"; fi
  # ulmfit itself, without its requirements: an editable install gives the `ulmfit` script beside python
  # (what the tests run); where that fails, PYTHONPATH has the checkout and `python -m ulmfit_cli` serves
  "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . \
    || echo "editable install failed: using PYTHONPATH=$REPO and python -m ulmfit_cli"
  "$PY" - <<'EOF'
import importlib, sys
import torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| cuDNN", torch.backends.cudnn.version(), "| GPU", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
for m in ("hydra", "omegaconf", "antlr4", "ulmfit_cli", "fastai", "xdist"):
    try:
        mod = importlib.import_module(m)
        print(f"  {m} {getattr(mod, '__version__', '')} from {mod.__file__}")
    except Exception as e:  # noqa: BLE001
        print(f"  {m}: not importable ({type(e).__name__}: {e})")
import ulmfit_cli.config  # noqa: F401 (hydra + omegaconf work)
EOF
}
export PY SITE REPO WORK DEVICE
export -f install_part
part install bash -c install_part || echo "install failed: the other parts will fail too"

FASTAI_PY=$WORK/fastai-python  # the bench starts fastai workers without PYTHONPATH: this puts the site dir back
printf '#!/bin/sh\nPYTHONPATH=%s exec %s "$@"\n' "$SITE" "$(command -v "$PY")" > "$FASTAI_PY"
chmod +x "$FASTAI_PY"
FASTAI_ARGS=(--no-fastai)
if PYTHONPATH=$SITE "$PY" -c "import fastai.text.models.awdlstm" >/dev/null 2>&1 && \
   "$PY" benchmarks/bench.py --help 2>/dev/null | grep -q -- --fastai-python; then
  FASTAI_ARGS=(--fastai-python "$FASTAI_PY")
fi

# ---------------------------------------------------------------- pytest -m cuda
if wants pytest; then
  XDIST=()
  "$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 4)
  export ULMFIT_CUDA_TESTS_DEVICE=$DEVICE
  part pytest "$PY" -m pytest -m cuda tests/test_cuda.py -q -rA --durations=0 \
    -p no:cacheprovider --basetemp="$WORK/pytest" "${XDIST[@]}"
fi

# ---------------------------------------------------------------- quickstart, bf16
if wants quickstart; then
  qs_part() {
    local u=("$PY" -m ulmfit_cli) qs=()
    [ -x "$(dirname "$(command -v "$PY")")/ulmfit" ] && u=("$(dirname "$(command -v "$PY")")/ulmfit")
    [ "$DEVICE" = cpu ] && qs=(dataset.max_docs=300 per_stage.epochs.pretrain=1 per_stage.epochs.finetune-lm=1
                               per_stage.epochs.train-clf=2)
    mkdir -p "$WORK/qs" && cd "$WORK/qs" || return 1
    "${u[@]}" pipeline experiment=quickstart device="$DEVICE" precision=bf16 progress=none "${qs[@]}" || return $?
    "${u[@]}" generate prompt="The movie was" n_words=30 seed=0 || return $?
    for s in outputs/*/*/summary.json; do echo "== $s"; cat "$s"; echo; done
  }
  export -f qs_part
  part quickstart bash -c qs_part
fi

# ---------------------------------------------------------------- the bench
if [ "$DEVICE" = cuda ]; then
  LM_ARGS=(--sizes paper30k,paper60k --steps 15 --warmup 3 --max-seconds 10)
  CLF_ARGS=(--sizes paper30k --clf-lens 200,1000,5000 --steps 8 --clf-warmup 1 --min-steps 3 --max-seconds 6)
else
  LM_ARGS=(--sizes small --steps 4 --warmup 1 --min-steps 2 --max-seconds 10)
  CLF_ARGS=(--sizes small --clf-lens 200,1000 --steps 3 --clf-warmup 1 --min-steps 2 --max-seconds 10)
fi
if wants bench_lm; then
  part bench_lm "$PY" benchmarks/bench.py --device "$DEVICE" --benches lm --precision fp32,bf16 --profile \
    "${LM_ARGS[@]}" "${FASTAI_ARGS[@]}" --out "$WORK/bench_lm"
fi
if wants bench_clf; then
  part bench_clf "$PY" benchmarks/bench.py --device "$DEVICE" --benches clf --precision fp32,bf16 \
    "${CLF_ARGS[@]}" "${FASTAI_ARGS[@]}" --out "$WORK/bench_clf"
fi

# ---------------------------------------------------------------- collect (at most 8 files)
[ -f "$WORK/pytest.log" ] && cp "$WORK/pytest.log" "$OUT/pytest.log"
if [ -f "$WORK/quickstart.log" ]; then
  { cat "$WORK/quickstart.log"
    for f in "$WORK"/qs/outputs/*/*/train.log; do [ -f "$f" ] && { echo "== $f"; tail -40 "$f"; }; done
  } > "$OUT/quickstart.log"
fi
for b in bench_lm bench_clf; do [ -f "$WORK/$b/results.json" ] && cp "$WORK/$b/results.json" "$OUT/$b.json"; done
{ for b in bench_lm bench_clf; do [ -f "$WORK/$b/results.csv" ] && { echo "# $b"; cat "$WORK/$b/results.csv"; }; done; } > "$OUT/bench.csv"
"$PY" - "$WORK/bench_lm" "$OUT/bench_profiles.txt" <<'EOF'
import sys
from pathlib import Path
files = sorted(Path(sys.argv[1]).glob("profile_*.txt"), key=lambda f: ("paper60k" not in f.name, "bf16" not in f.name, f.name))
if files:
    Path(sys.argv[2]).write_text("".join(f"==== {f.name}\n{f.read_text()}\n" for f in files))
EOF
{ for f in "$WORK/install.log" "$WORK"/bench_lm.log "$WORK"/bench_clf.log "$WORK"/bench_*/logs/*.log; do
    [ -f "$f" ] && { echo "==== $f"; cat "$f"; echo; }
  done; } > "$OUT/logs.txt"

{
  echo "gpu_check $(date -Is) on $(hostname), device=$DEVICE, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  sed -n '/^python /,$p' "$WORK/install.log" | head -12
  echo
  echo "per-part timings (total $(( $(date +%s) - T0 )) s):"
  cat "$TIMINGS"
  echo
  [ -f "$WORK/pytest.log" ] && { echo "pytest:"; grep -E "^(PASSED|FAILED|ERROR|SKIPPED)|passed|failed" "$WORK/pytest.log" | tail -30; echo; }
  [ -f "$WORK/quickstart.log" ] && { echo "quickstart:"; grep -E "pretrain|finetune-lm|train-clf|accuracy|error" "$WORK/quickstart.log" | tail -15; echo; }
  "$PY" - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
for b in ("bench_lm", "bench_clf"):
    f = Path(sys.argv[1]) / b / "results.json"
    if not f.exists():
        continue
    d = json.loads(f.read_text())
    print(f"{b}: {d['meta'].get('device_name')} torch {d['meta'].get('torch')} ({d['meta'].get('total_s')} s)")
    for r in d["results"]:
        thr = r.get("throughput")
        extra = "".join(f" {k}={r[k]:.2f}" for k in ("ratio_vs_bare", "ratio_vs_fastai", "ratio_vs_fp32") if r.get(k))
        print(f"  {r['bench']:<4} {r['size']:<9} L={r.get('doc_len') or '-':<5} {r['system']:<7} {r.get('precision', ''):<5} "
              + (f"{thr:12,.0f} {r.get('unit', '')}  peak {r.get('peak_mem_mb') or 0:,.0f} MB{extra}" if thr else
                 " ".join(str(r.get("status")).split())[:160]))
    for r in d["results"]:
        for p in (r.get("profile_top") or [])[:8] if r.get("size") == "paper60k" and r.get("precision") == "bf16" else []:
            print(f"    profile {r['system']} paper60k bf16: {p['op'][:60]:<60} {p['share']:6.1%} {p['self_ms']:8.2f} ms")
EOF
} > "$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
ls -la "$OUT"
grep -q "rc=[1-9]" "$TIMINGS" && exit 1
exit 0
