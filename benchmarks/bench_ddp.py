#!/usr/bin/env python
"""Data-parallel throughput: LM pretraining tokens/s on one machine, 1 process vs N.

Runs the real `ulmfit pretrain` (so the numbers include the per-step all-reduce of the gradients
and of the logged loss) on the embedded sample corpus, with the same global batch in every
configuration, e.g. on a 2-core CPU:

    1 process  x 2 threads   (one process uses both cores)
    2 processes x 1 thread   (distributed=ddp distributed.nproc=2, gloo)
    1 process  x 1 thread    (the per-core baseline)

Tokens/s is metrics.csv's `throughput` of the train rows after the first epoch (the first one
carries one-time warm-up); with DDP it counts the tokens of all processes. Configurations are run
in turn, `--rounds` times (interleaved, so load from other processes hits them alike), and the
median is reported.

    python benchmarks/bench_ddp.py                                   # CPU, model=tiny, 3 rounds
    python benchmarks/bench_ddp.py --model small --bs 32 --rounds 2
    python benchmarks/bench_ddp.py --device cuda --configs 1x8,2x8,4x8 --model awd_lstm --bs 64

--configs lists PROCESSESxTHREADS. Writes <out>/results.json (default outputs/bench_ddp/).
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_once(procs: int, threads: int, args) -> dict:
    exe = Path(sys.executable).with_name("ulmfit")
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "ulmfit_cli"]), "pretrain",
           "experiment=quickstart", f"model={args.model}", "bidirectional=fwd", "progress=none", "token_cache=off",
           f"dataset.max_docs={args.docs}", f"train.bs={args.bs}", f"train.bptt={args.bptt}",
           f"train.epochs={args.epochs}", f"device={args.device}", f"threads={threads}"]
    if args.steps:
        cmd.append(f"train.max_steps_per_epoch={args.steps}")
    if procs > 1:
        cmd += ["distributed=ddp", f"distributed.nproc={procs}"]
    with tempfile.TemporaryDirectory(prefix="bench_ddp_") as cwd:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        (run,) = (Path(cwd) / "outputs" / "pretrain").iterdir()
        with open(run / "metrics.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
        summary = json.loads((run / "summary.json").read_text())
    tps = [float(r["throughput"]) for r in rows[1:]] or [float(rows[0]["throughput"])]
    return {"tokens_per_s": statistics.mean(tps), "epochs_measured": len(tps),
            "final_train_loss": float(rows[-1]["loss"]), "device": summary["device"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="1x2,2x1,1x1", help="PROCESSESxTHREADS, comma-separated")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--bs", type=int, default=32, help="global batch (token streams), the same in every config")
    ap.add_argument("--bptt", type=int, default=40)
    ap.add_argument("--docs", type=int, default=2000, help="dataset.max_docs of the sample corpus")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=0, help="train.max_steps_per_epoch (0: whole epochs)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "outputs" / "bench_ddp"))
    args = ap.parse_args(argv)

    import torch

    configs = [tuple(int(x) for x in c.lower().split("x")) for c in args.configs.split(",")]
    runs: dict[str, list[dict]] = {f"{p}x{t}": [] for p, t in configs}
    for r in range(args.rounds):
        order = configs if r % 2 == 0 else configs[::-1]
        for p, t in order:
            res = run_once(p, t, args)
            runs[f"{p}x{t}"].append(res)
            print(f"round {r + 1}: {p} process(es) x {t} thread(s): {res['tokens_per_s']:.0f} tokens/s", flush=True)
    results = []
    for (p, t) in configs:
        rs = runs[f"{p}x{t}"]
        results.append({"processes": p, "threads_per_process": t, "global_bs": args.bs,
                        "tokens_per_s_median": statistics.median(x["tokens_per_s"] for x in rs),
                        "tokens_per_s_runs": [round(x["tokens_per_s"], 1) for x in rs],
                        "final_train_loss": [round(x["final_train_loss"], 5) for x in rs],
                        "device": rs[0]["device"]})
    base = results[0]["tokens_per_s_median"]
    for r in results:
        r["speedup_vs_first"] = round(r["tokens_per_s_median"] / base, 3)
    out = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "torch": torch.__version__, "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_end": os.getloadavg(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "results": results,
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(out, indent=2))
    print(f"{'config':<28}{'tokens/s':>10}{'speed-up':>10}")
    for r in results:
        print(f"{r['processes']} proc x {r['threads_per_process']} thread(s), bs {r['global_bs']:<6}"
              f"{r['tokens_per_s_median']:>10.0f}{r['speedup_vs_first']:>10.2f}")
    print(f"wrote {Path(args.out) / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
