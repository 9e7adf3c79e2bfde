#!/usr/bin/env python
"""Runs side by side on one machine: wall time of 1 run alone and of --jobs identical runs at once,
under libgomp's default spin-wait and under the short spin `ulmfit` sets (GOMP_SPINCOUNT=1000,
ulmfit_cli/cli.py share_cores_politely).

Each run uses every core (torch's default thread count), as two `ulmfit` commands started in two
terminals do. With --jobs k, perfect sharing takes k times a run alone ("x alone" = k); more than
that is time lost to threads that spin while the other process holds their core.

  ulmfit   `ulmfit train-clf` (the console script) on TREC-6 from scratch (experiment=trec6_cpu, lm=null,
           fwd, one epoch on --docs questions): the real stage, console entry point included
  bare     a bare nn.Embedding + 3-layer nn.LSTM + linear classifier, forward/backward/AdamW on
           random ids (32 x 40), --bare-steps steps: the same effect without any ulmfit code

    python benchmarks/bench_contention.py                  # ~17 min on 2 cores
    python benchmarks/bench_contention.py --jobs 3 --docs 500 --bare-steps 100

Writes <out>/results.json and prints one table (default outputs/bench_contention/).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.common import DATA_ROOT, REPO  # noqa: E402
from benchlib.e2e import ulmfit_command  # noqa: E402
from benchlib.hostinfo import cpu_info, git_commit  # noqa: E402

SPINS = {"libgomp default": "300000", "ulmfit (short spin)": "1000"}  # 300000: libgomp's documented default

BARE = """
import sys, torch
from torch import nn
torch.manual_seed(0)
steps = int(sys.argv[1])
emb, lstm, head = nn.Embedding(5000, 200), nn.LSTM(200, 576, num_layers=3, batch_first=True), nn.Linear(576, 6)
params = [*emb.parameters(), *lstm.parameters(), *head.parameters()]
opt = torch.optim.AdamW(params, lr=1e-3)
x, y = torch.randint(0, 5000, (32, 40)), torch.randint(0, 6, (32,))
for _ in range(steps):
    out, _ = lstm(emb(x))
    loss = nn.functional.cross_entropy(head(out.max(1).values), y)
    opt.zero_grad(); loss.backward(); opt.step()
"""


def command(workload: str, args, run_dir: Path) -> list[str]:
    if workload == "bare":
        return [sys.executable, "-c", BARE, str(args.bare_steps)]
    return [*ulmfit_command(), "train-clf", "experiment=trec6_cpu", "bidirectional=fwd", "lm=null",
            f"data_root={args.data}", f"dataset.max_train_examples={args.docs}", "train.epochs=1",
            "tfidf_baseline=false", "progress=none", f"hydra.run.dir={run_dir}"]


def timed_together(workload: str, spin: str, jobs: int, args) -> float:
    """Start `jobs` identical runs at once; the wall time until the last one ends."""
    env = {**os.environ, "GOMP_SPINCOUNT": spin}
    env.pop("OMP_WAIT_POLICY", None)
    t0 = time.perf_counter()
    procs = [subprocess.Popen(command(workload, args, args.out / "runs" / f"{workload}-{spin}-{jobs}-{i}-{t0:.0f}"),
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(jobs)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"bench_contention: a {workload} run failed (exit {p.returncode}):\n{err[-2000:]}")
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (default 2)")
    ap.add_argument("--workloads", default="ulmfit,bare")
    ap.add_argument("--docs", type=int, default=1000, help="TREC-6 training questions of the ulmfit run")
    ap.add_argument("--bare-steps", type=int, default=150)
    ap.add_argument("--data", type=Path, default=DATA_ROOT)
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_contention")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    rows = []
    for workload in args.workloads.split(","):
        for name, spin in SPINS.items():
            alone = timed_together(workload, spin, 1, args)
            together = timed_together(workload, spin, args.jobs, args)
            rows.append({"workload": workload, "spin": name, "GOMP_SPINCOUNT": spin, "alone_s": round(alone, 1),
                         f"{args.jobs}_at_once_s": round(together, 1), "x_alone": round(together / alone, 2)})
            print(f"{workload:7} {name:20} alone {alone:7.1f} s   {args.jobs} at once {together:7.1f} s"
                  f"   = {together / alone:5.2f} x alone (perfect sharing: {args.jobs})", flush=True)
    meta = {"date": datetime.date.today().isoformat(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "jobs": args.jobs, "commit": git_commit(), **cpu_info()}
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
