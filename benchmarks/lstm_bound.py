#!/usr/bin/env python
"""What bounds an fp32 LSTM layer on this CPU: each paper-size layer's forward + backward with
oneDNN's fused kernel (what ulmfit and fastai both run in fp32) against ulmfit's own step loop
(`BF16StepLSTM` in fp32: the per-step recurrence, the input and weight products batched over all
steps), and the matrix-product rates at the shapes an LSTM layer is made of, beside a large square
product (the CPU's peak).

    python benchmarks/lstm_bound.py [--bs 64] [--bptt 70] [--reps 5] [--threads 2] [--out DIR]

The layers are the paper's (400 -> 1152, 1152 -> 1152, 1152 -> 400); the kernels alternate, best
and median of `reps` each. "ideal" is the layer's product FLOPs at the rates measured for its
shapes (the per-step products at batch size, the rest at the batched shapes), with every
element-wise op free: the most any kernel could gain here. Writes DIR/lstm_bound.json and .md.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib.hostinfo import gemm_rate  # noqa: E402
from benchlib.results import save_report  # noqa: E402

LAYERS = [(400, 1152), (1152, 1152), (1152, 400)]


def layer_time(kind: str, n_in: int, hid: int, bs: int, bptt: int) -> float:
    """Seconds for one forward + backward of an LSTM layer through `kind` (fused | step)."""
    import torch

    from ulmfit_cli.models.accel.lstm_kernels import BF16StepLSTM, fused_lstm

    g = torch.Generator().manual_seed(0)
    x = torch.randn(bs, bptt, n_in, generator=g, requires_grad=True)
    h0, c0 = torch.zeros(1, bs, hid), torch.zeros(1, bs, hid)
    w = [(torch.randn(4 * hid, n_in, generator=g) * 0.05).requires_grad_(),
         (torch.randn(4 * hid, hid, generator=g) * 0.05).requires_grad_(),
         torch.zeros(4 * hid, requires_grad=True), torch.zeros(4 * hid, requires_grad=True)]
    t = time.perf_counter()
    if kind == "fused":
        out = fused_lstm(x, (h0, c0), w, True)[0]
    else:
        out = BF16StepLSTM.apply(x, h0, c0, *w, torch.float32)[0]
    out.sum().backward()
    return time.perf_counter() - t


def ideal_seconds(n_in: int, hid: int, bs: int, bptt: int) -> tuple[float, float]:
    """(GFLOP, seconds) of a layer's products, each at the rate measured for its own shape:
    forward x @ W_ih (all steps at once) and h @ W_hh (step by step); backward dX, dW_ih, dW_hh
    (all steps at once) and dG @ W_hh (step by step)."""
    tokens, gates = bs * bptt, 4 * hid
    products = [((tokens, n_in, gates), 1), ((tokens, gates, n_in), 1), ((gates, tokens, n_in), 1),
                ((gates, tokens, hid), 1), ((bs, hid, gates), bptt), ((bs, gates, hid), bptt)]
    flops = [2 * m * k * n * times for (m, k, n), times in products]
    seconds = sum(f / gemm_rate(*shape) / 1e9 for f, (shape, _) in zip(flops, products))
    return sum(flops) / 1e9, seconds


def measure(bs: int, bptt: int, reps: int) -> dict:
    import torch

    rows = []
    for n_in, hid in LAYERS:
        times = {"fused": [], "step": []}
        for kind in ("fused", "step"):  # one untimed pass each: allocations, oneDNN's primitives
            layer_time(kind, n_in, hid, bs, bptt)
        for _ in range(reps):
            for kind in ("fused", "step"):
                times[kind].append(layer_time(kind, n_in, hid, bs, bptt))
        gflop, ideal = ideal_seconds(n_in, hid, bs, bptt)
        rows.append({"layer": f"{n_in} -> {hid}", "gflop": gflop, "ideal_s": ideal,
                     **{f"{k}_best_s": min(v) for k, v in times.items()},
                     **{f"{k}_median_s": statistics.median(v) for k, v in times.items()}})
    shapes = {f"{m}x{k}x{n}": round(gemm_rate(m, k, n), 1) for m, k, n in
              [(2048, 2048, 2048), (bs, 1152, 4608), (bs, 4608, 1152), (bs * bptt, 1152, 4608),
               (4608, bs * bptt, 1152), (bs * bptt, 400, 4608)]}
    return {"host": f"{platform.node()}, {platform.machine()}, torch {torch.__version__}, "
                    f"{torch.get_num_threads()} threads, {datetime.now():%Y-%m-%d %H:%M}",
            "bs": bs, "bptt": bptt, "reps": reps, "layers": rows, "gemm_gflops": shapes}


def report(r: dict) -> str:
    lines = [f"{r['host']}; bs {r['bs']}, bptt {r['bptt']}, {r['reps']} rounds, fp32", "",
             "| layer | GFLOP | oneDNN fused, best / median s | step loop, best / median s | ideal s | fused GFLOP/s |",
             "|---|---|---|---|---|---|"]
    for x in r["layers"]:
        lines.append(f"| {x['layer']} | {x['gflop']:.1f} | {x['fused_best_s']:.3f} / {x['fused_median_s']:.3f} | "
                     f"{x['step_best_s']:.3f} / {x['step_median_s']:.3f} | {x['ideal_s']:.3f} | "
                     f"{x['gflop'] / x['fused_best_s']:.0f} |")
    lines += ["", "| product (m x k x n) | GFLOP/s |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in r["gemm_gflops"].items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--bptt", type=int, default=70)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("outputs/bench/lstm_bound"))
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    r = measure(args.bs, args.bptt, args.reps)
    save_report(args.out, "lstm_bound", r, report(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
