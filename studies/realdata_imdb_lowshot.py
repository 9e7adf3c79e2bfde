#!/usr/bin/env python
"""IMDb low-shot check on real data (the paper's Figure 3 headline), sized for a 2-core CPU.

A small AWD-LSTM pretrained on WikiText-2 (reused from studies/realdata_trec6.py, or trained
here when --pretrained is not given) -> LM fine-tuning on IMDb train + unlabelled reviews ->
classifier on the first 100 and 1,000 (shuffled) labelled training reviews, against the same
classifier trained from scratch on the same labels. Test error on a fixed, seeded sample of the
25k test reviews (--test-docs, default 5,000), validation on 250 held-out training reviews.

Each step is an ordinary `ulmfit` run in OUT/<step>; finished steps are skipped on re-run.

    python studies/realdata_imdb_lowshot.py [--shared ../shared/data] [--out runs/imdb_lowshot]
        [--pretrained runs/trec6/pretrain] [--lm-docs 3000] [--test-docs 5000] [-- extra overrides]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdata_trec6 import run, write_results  # noqa: E402  (one way to run a step, shared by both checks)

REPO = Path(__file__).resolve().parents[1]
SHOTS = (100, 1000)
# 4 steps per epoch at 100 labels, 32 at 1,000 (bs 32): fewer epochs at 100 would leave gradual
# unfreezing no time on the full model at 100.
EPOCHS = {100: 12, 1000: 5}


def write_split_files(shared: Path, dest: Path, n_valid: int, n_test: int, seed: int) -> None:
    """train.csv (train minus valid), valid.csv (n_valid train reviews), test.csv (n_test seeded sample)."""
    if (dest / "test.csv").exists():
        return
    dest.mkdir(parents=True, exist_ok=True)
    train = pd.read_csv(shared / "imdb" / "train.csv.gz").sample(frac=1.0, random_state=seed)
    test = pd.read_csv(shared / "imdb" / "test.csv.gz").sample(n=n_test, random_state=seed)
    cols = ["text", "label"]
    train.iloc[n_valid:][cols].to_csv(dest / "train.csv", index=False)
    train.iloc[:n_valid][cols].to_csv(dest / "valid.csv", index=False)
    test[cols].to_csv(dest / "test.csv.tmp", index=False)
    (dest / "test.csv.tmp").rename(dest / "test.csv")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "outputs" / "realdata_imdb_lowshot"))
    ap.add_argument("--pretrained", default=None, help="a WikiText-2 pretrain run (default: train one in OUT/pretrain)")
    ap.add_argument("--lm-docs", type=int, default=3000,
                    help="IMDb train reviews and as many unlabelled ones for LM fine-tuning (the whole 75k is days on a CPU)")
    ap.add_argument("--lm-epochs", type=int, default=2)
    ap.add_argument("--test-docs", type=int, default=5000)
    ap.add_argument("--valid-docs", type=int, default=250)
    ap.add_argument("extra", nargs="*", help="overrides for every stage (e.g. model=tiny train.max_steps_per_epoch=5)")
    a = ap.parse_args()
    shared, out = Path(a.shared).resolve(), Path(a.out).resolve()
    common = ["experiment=trec6_cpu", "bidirectional=fwd", f"data_root={shared}", *a.extra]

    pretrained = Path(a.pretrained).resolve() if a.pretrained else None
    if pretrained is None:
        run("pretrain", out, "pretrain", *common, "dataset=wikitext2")
        pretrained = out / "pretrain"
    ft = run("finetune-lm", out, "finetune", *common, "dataset=imdb", f"dataset.max_docs={a.lm_docs}",
             f"train.epochs={a.lm_epochs}", f"pretrained={pretrained}")

    data = out / "data"
    write_split_files(shared, data, a.valid_docs, a.test_docs, seed=0)
    clf_data = ["dataset=csv", f"dataset.train_file={data / 'train.csv'}", f"dataset.valid_file={data / 'valid.csv'}",
                f"dataset.test_file={data / 'test.csv'}"]
    errors = {}
    for n in SHOTS:
        shot = [*clf_data, f"dataset.max_train_examples={n}", f"train.epochs={EPOCHS[n]}"]
        ulm = run("train-clf", out, f"clf_{n}", *common, *shot, f"lm={out / 'finetune'}")
        scratch = run("train-clf", out, f"scratch_{n}", *common, *shot, "lm=null")
        errors[n] = {"ulmfit": round(ulm["results"]["fwd"]["test_error"], 2),
                     "from_scratch": round(scratch["results"]["fwd"]["test_error"], 2),
                     "n_train": ulm["n_train"], "wall_time_s": round(ulm["wall_time_s"] + scratch["wall_time_s"], 1)}

    results = {
        "imdb_lm_val_perplexity": ft["results"]["fwd"]["val_perplexity"],
        "lm_finetune_docs": {"train": a.lm_docs, "unsup": a.lm_docs}, "lm_epochs": ft["results"]["fwd"]["epochs"],
        "lm_finetune_tokens": ft["results"]["fwd"]["train_tokens"],
        "test_docs": a.test_docs, "valid_docs": a.valid_docs,
        "imdb_test_error": {str(n): e for n, e in errors.items()},
        "wall_time_s": round(ft["wall_time_s"] + sum(e["wall_time_s"] for e in errors.values()), 1),
        "device": ft["device"], "torch": ft["torch"],
    }
    return write_results(out, results)


if __name__ == "__main__":
    sys.exit(main())
