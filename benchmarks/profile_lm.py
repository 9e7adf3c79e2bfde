#!/usr/bin/env python
"""Where an LM training step's time goes: ulmfit's own `Trainer.train_step` (as benchmarks/bench.py
builds it) under torch.profiler, its self time grouped by what the ops do, beside the CPU's
measured matrix-product peak.

    python benchmarks/profile_lm.py --vocab 10000 --precision fp32 [--steps 3] [--out DIR]
    python benchmarks/profile_lm.py --task predict [--docs 192]   # ulmfit predict's classifier pass

`--task predict` profiles `predict_proba` (what `ulmfit predict` runs) over the first --docs IMDb
test reviews from ../shared/data, with a classifier of the same size (random weights: the time does
not depend on them), instead of a training step.

Groups (by op name): the LSTM (oneDNN's fused layers, or the matrix products and element-wise
work of the bf16 step kernel), the decoder and softmax, dropout masks, the optimizer, gradient
norms and clipping, casts and copies, the rest. "matrix products" sums every op whose work is a
GEMM (oneDNN's RNN layers, mm, addmm, linear); its share of the step is the ceiling on what a
faster element-wise side could save. The peak is a large square product timed in the same process
(fp32, and bf16 where asked), so "step at peak" is the step's matrix-product FLOPs at that rate:
how fast the step could be if every GEMM ran as fast as the best one. Writes DIR/profile.json
and DIR/profile.md.
"""
from __future__ import annotations

import argparse
import platform
import re
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib.hostinfo import gemm_rate  # noqa: E402
from benchlib.results import save_report  # noqa: E402

GROUPS = [  # (group, op-name pattern), first match wins
    ("LSTM, oneDNN fused layers", r"mkldnn_rnn|_VF::lstm|aten::lstm"),
    ("optimizer", r"_fused_adamw|_foreach_|lerp|addcdiv|addcmul_|sqrt|Optimizer"),
    ("matrix products (decoder, step kernel)", r"aten::(mm|addmm|bmm|matmul|linear)$"),
    ("softmax and loss", r"amax|exp|log|logsumexp|softmax|nll|cross_entropy|LinearCrossEntropy|sub_"),
    ("dropout masks", r"uniform_|rand|bernoulli|aten::ge$|aten::where|dropout"),
    ("norms and clipping", r"norm|clip|aten::stack"),
    ("casts and copies", r"copy_|aten::to$|_to_copy|clone|contiguous|fill_|zero_"),
    ("element-wise (step kernel, AR/TAR, embedding)", r"sigmoid|tanh|mul|add|div|pow|mean|sum|sub|embedding"),
]


def group_of(name: str) -> str:
    return next((g for g, pat in GROUPS if re.search(pat, name)), "other")


def gemm_peak(dtype, n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of an n x n x n product in `dtype`, best of `reps`."""
    return gemm_rate(n, n, n, dtype, reps)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def lm_gemm_flops(size: dict, vocab: int) -> float:
    """Matrix-product FLOPs of one LM training step (forward x 3: backward is two products per one)."""
    emb, hid, layers, tokens = size["emb"], size["hidden"], size["layers"], size["bs"] * size["bptt"]
    dims = [emb] + [hid] * (layers - 1) + [emb]
    lstm = sum(4 * dims[i + 1] * (dims[i] + dims[i + 1]) for i in range(layers))
    return 3 * 2 * tokens * (lstm + emb * vocab)


def build_step(vocab: int, precision: str, size: dict):
    import torch
    from benchlib import runners_ulmfit as ru

    spec = {"task": "lm", "size": {**size, "vocab": vocab}, "precision": precision, "device": "cpu", "seed": 0}
    _, cfg = ru.prepare(spec)
    g = torch.Generator().manual_seed(0)
    data = [(torch.randint(9, vocab, (size["bs"], size["bptt"]), generator=g),
             torch.randint(9, vocab, (size["bs"], size["bptt"]), generator=g)) for _ in range(4)]
    step, _ = ru.build_lm(cfg, torch.device("cpu"), data, vocab)
    return step


def lstm_forward_flops(size: dict, tokens: int) -> float:
    """Matrix-product FLOPs of the LSTM layers' forward over `tokens` tokens."""
    emb, hid, layers = size["emb"], size["hidden"], size["layers"]
    dims = [emb] + [hid] * (layers - 1) + [emb]
    return 2 * tokens * sum(4 * dims[i + 1] * (dims[i] + dims[i + 1]) for i in range(layers))


def build_predict(vocab: int, precision: str, size: dict, n_docs: int):
    """(a call of predict_proba over the first `n_docs` IMDb test reviews, their token count)."""
    import torch
    from benchlib.common import imdb_texts
    from ulmfit_cli.data.tokenizers import fit_numericalizer
    from ulmfit_cli.models.awd_lstm import AWDLSTM
    from ulmfit_cli.models.heads import TextClassifier
    from ulmfit_cli.stages.clf import predict_proba

    texts = imdb_texts("test")[:n_docs]
    num = fit_numericalizer(texts, {"name": "word", "max_vocab": vocab, "min_freq": 1})
    docs = num.encode_many(texts)
    torch.manual_seed(0)
    encoder = AWDLSTM(len(num), size["emb"], size["hidden"], size["layers"], pad_id=num.pad_id)
    model = TextClassifier(encoder, 2, size["bptt"], 1400, num.pad_id)
    return (lambda: predict_proba(model, docs, bs=size["bs"], pad_id=num.pad_id, reverse=False,
                                  device=torch.device("cpu"), precision=precision)), int(sum(map(len, docs)))


def profile(step, steps: int) -> tuple[float, dict, list]:
    """(seconds per step unprofiled, self seconds per step by group, top ops)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for _ in range(2):
        step()
    per_step = min(timed(step) for _ in range(steps))
    with torch_profile(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(steps):
            step()
    groups: dict = {}
    ops = []
    for e in p.key_averages():
        s = e.self_cpu_time_total / 1e6 / steps
        if s <= 0:
            continue
        groups[group_of(e.key)] = groups.get(group_of(e.key), 0.0) + s
        ops.append((e.key, s, e.count // steps))
    ops.sort(key=lambda o: -o[1])
    return per_step, groups, ops[:15]


def report(r: dict) -> str:
    total = sum(r["groups"].values())
    out = [r["host"], "", f"{r['what']}: {r['step_s']:.3f} s ({r['tokens_per_s']:,.0f} tokens/s); matrix-product FLOPs "
           f"{r['gemm_gflop']:.0f} G per {r['what'].lower()}; measured peak {r['peak_gflops']:.0f} GFLOP/s ({r['peak_dtype']}): the "
           f"{r['what'].split()[0].lower()} at peak would take {r['step_at_peak_s']:.3f} s ({100 * r['step_at_peak_s'] / r['step_s']:.0f}% of "
           "it).", "", "| group | s per step (profiled) | share |", "|---|---|---|"]
    for g, s in sorted(r["groups"].items(), key=lambda gs: -gs[1]):
        out.append(f"| {g} | {s:.3f} | {100 * s / total:.1f}% |")
    out += ["", "| top ops (self time) | s per step | calls per step |", "|---|---|---|"]
    out += [f"| `{name}` | {s:.3f} | {n} |" for name, s, n in r["top_ops"]]
    return "\n".join(out) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vocab", type=int, default=10000)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--task", choices=["lm", "predict"], default="lm")
    p.add_argument("--docs", type=int, default=192, help="--task predict: IMDb test reviews classified")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", default="paper30k", help="a benchlib size preset (model and batch; not its vocab)")
    p.add_argument("--out", type=Path, default=Path("outputs/bench/profile"))
    args = p.parse_args()
    import torch
    from benchlib.common import SIZES

    torch.set_num_threads(args.threads)
    size = SIZES[args.size]
    if args.task == "predict":
        step, tokens = build_predict(args.vocab, args.precision, size, args.docs)
        flops, what = lstm_forward_flops(size, tokens), f"Pass over {args.docs} reviews"
    else:
        step, tokens = build_step(args.vocab, args.precision, size), size["bs"] * size["bptt"]
        flops, what = lm_gemm_flops(size, args.vocab), "Step"
    per_step, groups, ops = profile(step, args.steps)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    peak = gemm_peak(dtype)
    r = {"host": f"{platform.node()}, {platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
                 f"{args.size} model, vocab {args.vocab}, {args.precision}, {args.task}, {datetime.now():%Y-%m-%d %H:%M}",
         "what": what, "step_s": per_step, "tokens_per_s": tokens / per_step, "groups": groups,
         "top_ops": ops, "gemm_gflop": flops / 1e9, "peak_gflops": peak, "peak_dtype": str(dtype).split(".")[-1],
         "step_at_peak_s": flops / (peak * 1e9)}
    save_report(args.out, "profile", r, report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
