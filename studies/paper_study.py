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
Three probes of the 100-label result (after imdb; each prints its table): recipe100, one change to
the classifier recipe at a time; lm_tokens100, the classifier on LMs fine-tuned on 0 to ~21M IMDb
tokens, and on the study's LM trained again from a random start; bidir100, the paper's forward +
backward ensemble (a backward LM and classifiers, their probabilities averaged with the study's).

Every step is skipped when its run dir already holds summary.json, and continued (resume=) when
it was interrupted, so the study can be stopped and started again. At the end:
    ulmfit report --paper OUT         (paper.md: the tables, mean ± std over seeds, beside the paper's)

    python studies/paper_study.py [--out outputs/paper_study] [--seeds 0,1,2] [--parts trec6,imdb]
                                  [--clf-epochs 12] [--quick] [-- extra overrides for every run]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdata_imdb_lowshot import write_split_files  # noqa: E402
from realdata_trec6 import run  # noqa: E402

from ulmfit_cli.reporting.paper import cell  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LM_VARIANTS = ("lm_ft_full", "lm_ft_discr", "lm_ft_discr_stlr")
CLF_VARIANTS = ("clf_from_scratch", "clf_full", "clf_full_discr", "clf_last", "clf_chain_thaw", "clf_freez",
                "clf_freez_discr", "clf_freez_stlr", "clf_freez_cos")  # + the reference, clf_freez_discr_stlr
REFERENCE_TAGS = "table4/with_pretraining,table5/lm_ft_discr_stlr,table6/clf_freez_discr_stlr"
SHOTS = (100, 500, 1000)
RECIPE_PROBES = {"freez_stlr": "ablation=clf_freez_stlr", "unfreeze_none": "unfreeze=none", "last": "ablation=clf_last",
                 "drop_mult_1": "model.drop_mult=1.0", "lr_0.001": "schedule.lr=0.001",
                 "epochs_48": "train.epochs=48"}
PARTS = ("trec6", "imdb", "recipe100", "lm_tokens100", "bidir100")
BWD = "bidirectional=bwd"


@dataclass(frozen=True)
class Study:
    """Where the study writes and the overrides around each run's own. Hydra lets the last of two
    settings of a key win, so `forced` (--quick's and the user's) comes after a run's own overrides,
    and `base` (what a part may change, e.g. the direction) before them."""
    out: Path
    shared: Path
    base: tuple[str, ...]
    forced: tuple[str, ...]

    def run(self, stage: str, name: str, *overrides: str) -> dict:
        return run(stage, self.out, name, *self.base, *overrides, *self.forced)


def trec6(st: Study, seeds: list[int], clf_epochs: int) -> None:
    out, pre = st.out, st.out / "pretrain"
    st.run("pretrain", "pretrain", "dataset=wikitext2")
    clf = f"train.epochs={clf_epochs}"
    for s in seeds:
        seed = f"seed={s}"
        for v in LM_VARIANTS:
            st.run("finetune-lm", f"lm/{v}/s{s}", f"ablation={v}", f"pretrained={pre}", seed)
        ref_lm = out / "lm" / "lm_ft_discr_stlr" / f"s{s}"
        st.run("train-clf", f"clf/reference/s{s}", clf, f"lm={ref_lm}", seed, f"tag='{REFERENCE_TAGS}'")  # quoted: a list of tags
        for v in LM_VARIANTS[:-1]:
            st.run("train-clf", f"clf/table5_{v}/s{s}", clf, f"lm={out / 'lm' / v / f's{s}'}", seed, f"tag=table5/{v}")
        st.run("train-clf", f"clf/table5_lm_ft_none/s{s}", clf, f"lm={pre}", seed, "tag=table5/lm_ft_none")
        st.run("finetune-lm", f"lm/no_pretraining/s{s}", "pretrained=null", seed)
        st.run("train-clf", f"clf/table4_without_pretraining/s{s}", clf, f"lm={out / 'lm' / 'no_pretraining' / f's{s}'}",
               seed, "tag=table4/without_pretraining")
        for v in CLF_VARIANTS:
            lm = [] if v == "clf_from_scratch" else [f"lm={ref_lm}"]
            st.run("train-clf", f"clf/table6_{v}/s{s}", clf, f"ablation={v}", *lm, seed, f"tag=table6/{v}")


def imdb_data(out: Path) -> list[str]:
    d = out / "imdb_data"
    return ["dataset=csv", f"dataset.train_file={d / 'train.csv'}", f"dataset.valid_file={d / 'valid.csv'}",
            f"dataset.test_file={d / 'test.csv'}"]


def shot(n: int, s: int) -> list[str]:
    """A classifier on n labels: seed s draws its own labelled sample. ~4 steps an epoch at 100
    labels: enough epochs for gradual unfreezing to reach all layers."""
    return ["precision=bf16", f"dataset.max_train_examples={n}", f"dataset.split_seed={s}", f"seed={s}",
            f"train.epochs={12 if n <= 100 else 8}"]


def imdb_lm(st: Study, name: str, start: Path | None, epochs: int, *extra: str) -> dict:
    """An IMDb LM: fine-tuned from `start` (None: a random LM) on train (less validation) + the 50k
    unlabelled reviews, ~22.7M tokens an epoch; extra overrides cap the epoch (the schedule spans
    the capped epoch)."""
    return st.run("finetune-lm", f"lm/{name}", *imdb_data(st.out),
                  f"dataset.lm_files=[{st.shared / 'imdb' / 'unsup.csv.gz'}]", f"train.epochs={epochs}",
                  "precision=bf16", f"pretrained={start or 'null'}", *extra)


def as_long_as(lm: Path) -> tuple[int, str, str]:
    """imdb_lm's epochs and overrides for an LM as long as `lm` (its epochs and step cap)."""
    t = OmegaConf.load(lm / ".hydra" / "config.yaml").train
    cap = "null" if t.max_steps_per_epoch is None else t.max_steps_per_epoch  # Hydra's None
    return t.epochs, f"train.max_steps_per_epoch={cap}", "checkpoint.every_steps=500"


def imdb(st: Study, seeds: list[int], lm_epochs: int, lm_steps: int | None, test_docs: int) -> None:
    out, pre = st.out, st.out / "pretrain"
    st.run("pretrain", "pretrain", "dataset=wikitext2")
    write_split_files(st.shared, out / "imdb_data", n_valid=250, n_test=test_docs, seed=0)
    # Progress is saved every 500 steps, so that stopping the study mid-epoch loses little.
    cap = [f"train.max_steps_per_epoch={lm_steps}"] if lm_steps else []
    lm = imdb_lm(st, "imdb", pre, lm_epochs, *cap, "checkpoint.every_steps=500")
    print(f"IMDb LM: ~{lm_trained_tokens(out / 'lm' / 'imdb'):,.0f} tokens trained "
          f"({lm['results']['fwd']['train_tokens']:,} an epoch), val perplexity "
          f"{lm['results']['fwd']['val_perplexity']:.1f}, {lm['wall_time_s']:.0f} s", flush=True)
    for s in seeds:
        for n in SHOTS:
            st.run("train-clf", f"clf/figure3_{n}_ulmfit/s{s}", *imdb_data(out), *shot(n, s),
                   f"lm={out / 'lm' / 'imdb'}", f"tag=figure3/{n}/ulmfit")
            st.run("train-clf", f"clf/figure3_{n}_scratch/s{s}", *imdb_data(out), *shot(n, s), "lm=null",
                   f"tag=figure3/{n}/scratch")


def recipe100(st: Study, seeds: list[int]) -> None:
    """Why Figure 3's 100-label gap falls short, part 1: one change to the classifier recipe at a
    time, on the study's LM and 100-label samples (after --parts imdb)."""
    rows = {"reference (the study's run)": [test_error(figure3_ref(st.out, s)) for s in seeds]}
    for name, override in RECIPE_PROBES.items():
        rows[f"`{override}`"] = [clf100(st, f"recipe100_{name}", s, f"lm={st.out / 'lm' / 'imdb'}", override)
                                 for s in seeds]
    print_probe("100 labels, one recipe change", rows)


def lm_tokens100(st: Study, seeds: list[int]) -> None:
    """Why Figure 3's 100-label gap falls short, part 2: the same classifier on LMs fine-tuned on
    0, ~2.6M, ~10.5M (the study's) and ~21M IMDb tokens (after --parts imdb). The last is a second
    pass as long as the study's (4,800 steps with --lm-steps 4800), warm-started from the study's LM;
    seed=1 makes it read another shuffle of the reviews. A last row trains the study's LM again from
    a random LM: what the WikiText-2 start adds."""
    out = st.out
    refs = [test_error(figure3_ref(out, s)) for s in seeds]  # before any training: this part builds on the imdb part
    study, pre = out / "lm" / "imdb", out / "pretrain"
    imdb_lm(st, "imdb_1200", pre, 1, "train.max_steps_per_epoch=1200")
    imdb_lm(st, "imdb_twice", study, *as_long_as(study), "seed=1")
    imdb_lm(st, "imdb_random", None, *as_long_as(study))
    lms = {"pretrain": pre, **{name: out / "lm" / name for name in ("imdb_1200", "imdb", "imdb_twice", "imdb_random")}}
    tokens = {name: 0.0 if lm == pre else lm_trained_tokens(lm) for name, lm in lms.items()}
    tokens["imdb_twice"] += tokens["imdb"]  # warm-started from the study's LM: its tokens count too
    notes = {"imdb_random": " (from a random LM, no WikiText-2)"}
    rows = {}
    for name, lm in lms.items():
        text = "WikiText-2" if lm == pre else "IMDb"  # each LM's perplexity is on its own validation text
        label = f"`{lm.relative_to(out)}`: ~{tokens[name] / 1e6:.1f}M IMDb tokens, {text} val perplexity {perplexity(lm)}"
        rows[label + notes.get(name, "")] = refs if lm == study else [
            clf100(st, f"lm_tokens100_{name}", s, f"lm={lm}") for s in seeds]
    print_probe("100 labels, by the LM's IMDb fine-tuning", rows)


def bidir100(st: Study, seeds: list[int]) -> None:
    """Why Figure 3's 100-label gap falls short, part 3: the paper's forward + backward ensemble. A
    backward LM is pretrained and fine-tuned on IMDb as the study's forward one was (the same steps),
    each seed's 100-label classifier (ULMFiT and from scratch) is trained backward too, and the two
    directions' test probabilities are averaged (after --parts imdb)."""
    out = st.out
    kinds = {"ulmfit": out / "lm" / "imdb_bwd", "scratch": None}
    # before any training: this part builds on the imdb part's forward runs, both kinds
    fwd = {kind: [test_error(figure3_ref(out, s, kind)) for s in seeds] for kind in kinds}
    st.run("pretrain", "pretrain_bwd", "dataset=wikitext2", BWD)
    imdb_lm(st, "imdb_bwd", out / "pretrain_bwd", *as_long_as(out / "lm" / "imdb"), BWD)
    rows = {}
    for kind, lm in kinds.items():
        probe = f"bidir100_{kind}_bwd"
        rows[f"{kind}: fwd (the study's)"] = fwd[kind]
        rows[f"{kind}: bwd"] = [clf100(st, probe, s, f"lm={lm or 'null'}", BWD) for s in seeds]
        rows[f"{kind}: fwd + bwd"] = [ensemble_error(figure3_100(out, kind, s), probe_dir(out, probe, s))
                                      for s in seeds]
    print_probe("100 labels, forward, backward and their ensemble", rows)


def probe_dir(out: Path, probe: str, s: int) -> Path:
    return out / "probe" / probe / f"s{s}"


def clf100(st: Study, probe: str, s: int, *overrides: str) -> float:
    """Test error % of a probe's 100-label classifier on seed s's sample (run dir probe_dir)."""
    name = str(probe_dir(st.out, probe, s).relative_to(st.out))
    return test_error(st.run("train-clf", name, *imdb_data(st.out), *shot(100, s), *overrides))


def figure3_100(out: Path, kind: str, s: int) -> Path:
    """The imdb part's 100-label run dir of seed s: kind "ulmfit" or "scratch"."""
    return out / "clf" / f"figure3_100_{kind}" / f"s{s}"


def figure3_ref(out: Path, s: int, kind: str = "ulmfit") -> dict:
    path = figure3_100(out, kind, s) / "summary.json"
    if not path.exists():
        sys.exit(f"{path} is missing: the probes compare against the study's own 100-label runs; "
                 f"run --parts imdb --seeds {s} first.")
    return json.loads(path.read_text())


def only_result(summary: dict) -> dict:
    """The results of a one-direction run (fwd or bwd)."""
    (result,) = summary["results"].values()
    return result


def test_error(summary: dict) -> float:
    return only_result(summary)["test_error"]


def perplexity(lm: Path) -> str:
    return f"{only_result(json.loads((lm / 'summary.json').read_text()))['val_perplexity']:.1f}"


def ensemble_error(fwd: Path, bwd: Path) -> float:
    """Test error % of the mean of two runs' class probabilities (their predictions_test.csv, one row
    per test document in the same order), as a `bidirectional=both` run ensembles its directions."""
    a, b = (pd.read_csv(d / "predictions_test.csv", keep_default_na=False) for d in (fwd, bwd))
    if not (a["text"].equals(b["text"]) and a["label"].equals(b["label"])):
        sys.exit(f"{fwd} and {bwd} scored different test documents; both must read the study's imdb_data.")
    probs = [c for c in a.columns if c.startswith("p_")]
    classes = np.array([c[2:] for c in probs])
    predicted = classes[((a[probs] + b[probs]) / 2).to_numpy().argmax(axis=1)]
    return 100 * float(np.mean(predicted != a["label"].astype(str).to_numpy()))


def print_probe(title: str, rows: dict[str, list[float]]) -> None:
    print(f"\n{title}: test error % per seed, mean ± std\n\n| variant | per seed | mean ± std |\n|---|---|---|")
    for label, errs in rows.items():
        print(f"| {label} | {', '.join(f'{e:.2f}' for e in errs)} | {cell(pd.Series(errs))} |", flush=True)


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
    ap.add_argument("--parts", default="trec6,imdb",
                    help=f"any of {', '.join(PARTS)}; recipe100, lm_tokens100 and bidir100 probe Figure 3's "
                         "100-label result and need the imdb part's runs")
    ap.add_argument("--clf-epochs", type=int, default=12)
    ap.add_argument("--lm-epochs", type=int, default=1, help="IMDb LM fine-tuning epochs (~22.7M tokens each)")
    ap.add_argument("--lm-steps", type=int, default=None,
                    help="cap on IMDb LM fine-tuning steps an epoch (32 x ~70 tokens each; 4,800 is ~10.5M tokens)")
    ap.add_argument("--test-docs", type=int, default=5000, help="IMDb test reviews scored (a fixed sample)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny model, a few steps per epoch")
    ap.add_argument("extra", nargs="*", help="overrides for every run; they win over a part's own settings")
    a = ap.parse_args()
    out, shared = Path(a.out).resolve(), Path(a.shared).resolve()
    seeds = [int(s) for s in a.seeds.split(",")]
    parts = [p for p in a.parts.split(",") if p]
    if unknown := sorted(set(parts) - set(PARTS)):
        ap.error(f"--parts: unknown {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    quick = ["model=tiny", "train.max_steps_per_epoch=3", "dataset.max_docs=400", "token_cache=off"] if a.quick else []
    st = Study(out, shared, base=("experiment=trec6_cpu", "bidirectional=fwd", f"data_root={shared}"),
               forced=(*quick, *a.extra))
    t0 = time.time()
    if "trec6" in parts:
        trec6(st, seeds, 2 if a.quick else a.clf_epochs)
    if "imdb" in parts:
        imdb(st, seeds, a.lm_epochs, a.lm_steps, 200 if a.quick else a.test_docs)
    if "recipe100" in parts:
        recipe100(st, seeds)
    if "lm_tokens100" in parts:
        lm_tokens100(st, seeds)
    if "bidir100" in parts:
        bidir100(st, seeds)
    (out / "study.json").write_text(json.dumps({"seeds": seeds, "parts": a.parts, "clf_epochs": a.clf_epochs,
                                                "lm_epochs": a.lm_epochs, "this_run_wall_time_s": time.time() - t0},
                                               indent=2))
    print(f"done; now: ulmfit report --paper {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
