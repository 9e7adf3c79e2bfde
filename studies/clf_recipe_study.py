#!/usr/bin/env python
"""Why does the classifier recipe learn slowly on a small task? Variants of `ulmfit train-clf` on
one split and one fine-tuned LM, each an ordinary run folder, side by side in one table.

    python studies/clf_recipe_study.py --data OUT/data/trec6 --lm OUT/trec6/s0/ulmfit_lm_fwd \\
        [--out outputs/clf_recipe_study] [--seeds 0] [--variants paper,lr_0.02,...] [--jobs 2]

--data is a folder with train.csv, valid.csv and test.csv (columns text,label), as
studies/vs_fastai.py writes them; --lm a finetune-lm run on the same texts. A finished run is
skipped on re-run, an interrupted one continued with resume=. --jobs runs that many variants at
once (one thread each). OUT/results.md holds, per variant, the test and validation error (mean ±
std over seeds), the validation accuracy after each epoch (seed of the first row) and the
training time.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "studies"))
from realdata_trec6 import run  # noqa: E402  (the studies' one resumable ulmfit step)

from ulmfit_cli.reporting.paper import cell  # noqa: E402

# name -> (what it changes, overrides, epochs as a multiple of --epochs)
VARIANTS = {
    "paper": ("the defaults: gradual unfreezing [1,2,3,4], discr, STLR per phase, lr 0.01", [], 1),
    "lr_0.003": ("peak LR 0.003", ["schedule.lr=0.003"], 1),
    "lr_0.001": ("peak LR 0.001", ["schedule.lr=0.001"], 1),
    "lr_0.02": ("peak LR 0.02", ["schedule.lr=0.02"], 1),
    "lr_0.04": ("peak LR 0.04", ["schedule.lr=0.04"], 1),
    "steps_123": ("fastai's unfreezing: head, last two, last three, all", ["unfreeze.steps=[1,2,3]"], 1),
    "no_unfreeze": ("all groups trainable from the first step (discr, one STLR)", ["unfreeze=none"], 1),
    "no_discr": ("one LR for every group", ["schedule.discriminative=false"], 1),
    "scratch": ("no pretrained or fine-tuned LM (Table 6, from scratch)", ["ablation=clf_from_scratch"], 1),
    "steps_12": ("the paper-era reference script: head, last two groups, then all", ["unfreeze.steps=[1,2]"], 1),
    "paper_x2": ("the defaults, twice the epochs", [], 2),
    "no_unfreeze_x2": ("no_unfreeze, twice the epochs", ["unfreeze=none"], 2),
    "scratch_x2": ("from scratch, twice the epochs", ["ablation=clf_from_scratch"], 2),
}


def log(msg: str) -> None:
    print(f"[clf_recipe_study {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_variant(a, name: str, seed: int) -> dict:
    """One variant and seed in OUT/<variant>/s<seed>, skipped when finished, resumed when interrupted."""
    _, overrides, factor = VARIANTS[name]
    # An lm= on the command line would win over the from-scratch ablation's `lm: null`.
    lm = [] if "ablation=clf_from_scratch" in overrides else [f"lm={Path(a.lm).resolve()}"]
    data = Path(a.data).resolve()
    return run("train-clf", Path(a.out).resolve() / name, f"s{seed}", "dataset=csv", f"dataset.data_dir={data}",
               "dataset.train_file=train.csv", "dataset.valid_file=valid.csv", "dataset.test_file=test.csv", *lm,
               "bidirectional=fwd", f"model={a.model}", f"train.bs={a.bs}", f"train.epochs={a.epochs * factor}",
               f"seed={seed}", "threads=1", "precision=fp32", "tfidf_baseline=false", *overrides, *a.extra)


def epoch_rows(run_dir: Path) -> tuple[list[float], float | None]:
    valid, train_s = [], None
    with open(run_dir / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row["split"] == "valid":
                valid.append(float(row["accuracy"]))
            if row["split"] == "train" and row["elapsed_s"]:
                train_s = float(row["elapsed_s"])
    return valid, train_s


def fmt(xs: list[float]) -> str:
    return str(cell(pd.Series(xs, dtype=float)))  # "" for none; the report's mean ± std (n=...)


def table(a, seeds: list[int], names: list[str]) -> str:
    out = ["| variant | what changes | test error % | valid error % | valid accuracy after each epoch | train s |",
           "|---|---|---|---|---|---|"]
    for name in names:
        tests, valids, curve, times = [], [], "", []
        for seed in seeds:
            d = Path(a.out) / name / f"s{seed}"
            s = read_json(d / "summary.json")
            if s is None:
                continue
            r = s["results"]["fwd"]
            tests.append(100 * (1 - r["test_accuracy"]))
            valids.append(100 * (1 - r["val_accuracy"]))
            accs, train_s = epoch_rows(d)
            curve = curve or " ".join(f"{x:.3f}" for x in accs)
            times.append(train_s)
        out.append(f"| {name} | {VARIANTS[name][0]} | {fmt(tests)} | {fmt(valids)} | {curve} | "
                   f"{statistics.fmean(times):.0f} |" if times else f"| {name} | {VARIANTS[name][0]} | not run | | | |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--lm", required=True)
    ap.add_argument("--out", default=str(REPO / "outputs" / "clf_recipe_study"))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--model", default="small")
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("extra", nargs="*", help="overrides for every run (after --)")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    names = a.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}: choose from {', '.join(VARIANTS)}")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(a.jobs) as pool:
        list(pool.map(lambda job: run_variant(a, *job), [(n, s) for s in seeds for n in names]))
    md = (f"# train-clf recipe variants\n\n{time.strftime('%Y-%m-%d')}; data {a.data}; LM {a.lm}; model {a.model}, "
          f"bs {a.bs}, {a.epochs} epochs unless the variant says otherwise; seeds {a.seeds}; fp32, 1 thread per run, "
          f"{a.jobs} run(s) at once.\nCommand: `{' '.join(sys.argv)}`\n\n{table(a, seeds, names)}\n")
    (Path(a.out) / "results.md").write_text(md)
    print(md)
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
