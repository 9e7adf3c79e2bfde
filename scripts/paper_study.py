#!/usr/bin/env python
"""The paper's ablations at CPU scale, with seeds: Tables 4, 5 and 6 on TREC-6 and Figure 3's
low-shot comparison on IMDb, each step an ordinary `ulmfit` run tagged for `ulmfit report --paper`.

TREC-6 (small AWD-LSTM 200/576/3, pretrained on WikiText-2 valid+test, forward direction):
  Table 4  LM fine-tuning from the pretrained LM vs from a random one (pretrained=null)
  Table 5  no LM fine-tuning / full / full + discr / full + discr + stlr, then the paper's classifier
  Table 6  ten classifier fine-tuning variants on the full + discr + stlr LM (conf/ablation/clf_*)
The three tables share their reference run (full ULMFiT), tagged for each.
IMDb (Figure 3): the LM fine-tuned on IMDb train + the 50k unlabelled reviews (at least 10M
tokens, bf16), then classifiers on 100 / 500 / 1,000 labels against the same classifier from
scratch, tested on a fixed sample of the test reviews.

Every step is skipped when its run dir already holds summary.json, and continued (resume=) when
it was interrupted, so the study can be stopped and started again. At the end:
    ulmfit report --paper OUT         (paper.md: the tables, mean ± std over seeds, beside the paper's)

    python scripts/paper_study.py [--out outputs/paper_study] [--seeds 0,1,2] [--parts trec6,imdb]
                                  [--clf-epochs 12] [--quick] [-- extra overrides for every run]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdata_imdb_lowshot import write_split_files  # noqa: E402
from realdata_trec6 import run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LM_VARIANTS = ("lm_ft_full", "lm_ft_discr", "lm_ft_discr_stlr")
CLF_VARIANTS = ("clf_from_scratch", "clf_full", "clf_full_discr", "clf_last", "clf_chain_thaw", "clf_freez",
                "clf_freez_discr", "clf_freez_stlr", "clf_freez_cos")  # + the reference, clf_freez_discr_stlr
REFERENCE_TAGS = "table4/with_pretraining,table5/lm_ft_discr_stlr,table6/clf_freez_discr_stlr"
SHOTS = (100, 500, 1000)


def trec6(out: Path, common: list[str], seeds: list[int], clf_epochs: int) -> None:
    pre = out / "pretrain"
    run("pretrain", out, "pretrain", *common, "dataset=wikitext2")
    clf = [*common, f"train.epochs={clf_epochs}"]
    for s in seeds:
        seed = f"seed={s}"
        for v in LM_VARIANTS:
            run("finetune-lm", out, f"lm/{v}/s{s}", *common, f"ablation={v}", f"pretrained={pre}", seed)
        ref_lm = out / "lm" / "lm_ft_discr_stlr" / f"s{s}"
        run("train-clf", out, f"clf/reference/s{s}", *clf, f"lm={ref_lm}", seed, f"tag='{REFERENCE_TAGS}'")  # quoted: a list of tags
        for v in LM_VARIANTS[:-1]:
            run("train-clf", out, f"clf/table5_{v}/s{s}", *clf, f"lm={out / 'lm' / v / f's{s}'}", seed, f"tag=table5/{v}")
        run("train-clf", out, f"clf/table5_lm_ft_none/s{s}", *clf, f"lm={pre}", seed, "tag=table5/lm_ft_none")
        run("finetune-lm", out, f"lm/no_pretraining/s{s}", *common, "pretrained=null", seed)
        run("train-clf", out, f"clf/table4_without_pretraining/s{s}", *clf, f"lm={out / 'lm' / 'no_pretraining' / f's{s}'}",
            seed, "tag=table4/without_pretraining")
        for v in CLF_VARIANTS:
            lm = [] if v == "clf_from_scratch" else [f"lm={ref_lm}"]
            run("train-clf", out, f"clf/table6_{v}/s{s}", *clf, f"ablation={v}", *lm, seed, f"tag=table6/{v}")


def imdb(out: Path, common: list[str], shared: Path, seeds: list[int], lm_epochs: int, lm_steps: int | None,
         test_docs: int) -> None:
    pre = out / "pretrain"
    run("pretrain", out, "pretrain", *common, "dataset=wikitext2")
    data = out / "imdb_data"
    write_split_files(shared, data, n_valid=250, n_test=test_docs, seed=0)
    # train (minus the 250 validation reviews) + the 50k unlabelled reviews: ~22.7M tokens an epoch;
    # lm_steps caps each epoch (the schedule spans the capped epoch) when a whole one does not fit.
    # Progress is saved every 500 steps, so that stopping the study mid-epoch loses little.
    lm_run = [*([f"train.max_steps_per_epoch={lm_steps}"] if lm_steps else []), "checkpoint.every_steps=500"]
    lm = run("finetune-lm", out, "lm/imdb", *common, "dataset=csv", f"dataset.train_file={data / 'train.csv'}",
             f"dataset.valid_file={data / 'valid.csv'}", f"dataset.test_file={data / 'test.csv'}",
             f"dataset.lm_files=[{shared / 'imdb' / 'unsup.csv.gz'}]", f"train.epochs={lm_epochs}",
             "precision=bf16", f"pretrained={pre}", *lm_run)
    print(f"IMDb LM: ~{lm_trained_tokens(out / 'lm' / 'imdb'):,.0f} tokens trained "
          f"({lm['results']['fwd']['train_tokens']:,} an epoch), val perplexity "
          f"{lm['results']['fwd']['val_perplexity']:.1f}, {lm['wall_time_s']:.0f} s", flush=True)
    clf_data = ["dataset=csv", f"dataset.train_file={data / 'train.csv'}", f"dataset.valid_file={data / 'valid.csv'}",
                f"dataset.test_file={data / 'test.csv'}", "precision=bf16"]
    for s in seeds:
        for n in SHOTS:
            # ~4 steps an epoch at 100 labels: enough epochs for gradual unfreezing to reach all layers
            shot = [*clf_data, f"dataset.max_train_examples={n}", f"dataset.split_seed={s}", f"seed={s}",
                    f"train.epochs={12 if n <= 100 else 8}"]
            run("train-clf", out, f"clf/figure3_{n}_ulmfit/s{s}", *common, *shot, f"lm={out / 'lm' / 'imdb'}",
                f"tag=figure3/{n}/ulmfit")
            run("train-clf", out, f"clf/figure3_{n}_scratch/s{s}", *common, *shot, "lm=null", f"tag=figure3/{n}/scratch")


def lm_trained_tokens(run_dir: Path) -> float:
    """About the tokens the LM trained on: steps x bs x the mean variable-BPTT length (0.975 bptt)."""
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    steps = max(int(r["step"]) for r in rows if r["split"] == "train")
    t = OmegaConf.load(run_dir / ".hydra" / "config.yaml").train
    return steps * t.bs * t.bptt * (0.95 + 0.05 / 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "outputs" / "paper_study"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--parts", default="trec6,imdb")
    ap.add_argument("--clf-epochs", type=int, default=12)
    ap.add_argument("--lm-epochs", type=int, default=1, help="IMDb LM fine-tuning epochs (~22.7M tokens each)")
    ap.add_argument("--lm-steps", type=int, default=None,
                    help="cap on IMDb LM fine-tuning steps an epoch (32 x ~70 tokens each; 4,800 is ~10.5M tokens)")
    ap.add_argument("--test-docs", type=int, default=5000, help="IMDb test reviews scored (a fixed sample)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny model, a few steps per epoch")
    ap.add_argument("extra", nargs="*", help="overrides for every run")
    a = ap.parse_args()
    out, shared = Path(a.out).resolve(), Path(a.shared).resolve()
    seeds = [int(s) for s in a.seeds.split(",")]
    quick = ["model=tiny", "train.max_steps_per_epoch=3", "dataset.max_docs=400"] if a.quick else []
    common = ["experiment=trec6_cpu", "bidirectional=fwd", f"data_root={shared}", "token_cache=off" if a.quick else "",
              *quick, *a.extra]
    common = [c for c in common if c]
    t0 = time.time()
    if "trec6" in a.parts:
        trec6(out, common, seeds, 2 if a.quick else a.clf_epochs)
    if "imdb" in a.parts:
        imdb(out, common, shared, seeds, a.lm_epochs, a.lm_steps, 200 if a.quick else a.test_docs)
    (out / "study.json").write_text(json.dumps({"seeds": seeds, "parts": a.parts, "clf_epochs": a.clf_epochs,
                                                "lm_epochs": a.lm_epochs, "this_run_wall_time_s": time.time() - t0},
                                               indent=2))
    print(f"done; now: ulmfit report --paper {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
