#!/usr/bin/env python
"""ulmfit against fastai 2.8.12's own ULMFiT (the reference implementation): same data, same
pretrained model, same budget, several seeds.

    python studies/vs_fastai.py [--shared ../shared/data] [--out outputs/vs_fastai] [--seeds 0,1,2]
                                [--tasks trec6,agnews] [-- extra ulmfit overrides]

Steps (each an ordinary run folder under OUT; a finished step is skipped on re-run, an
interrupted ulmfit step is continued with resume=, an interrupted fastai step is redone):
  1. OUT/data/<task>/{train,valid,test}.csv (columns text,label), the one split both systems read.
     trec6: ulmfit's own trec6 reader (train_5500.label, validation carved with valid_frac 0.1,
     split_seed 42; test TREC_10.label). agnews: the 7,600 rows of agnews/test.csv as ulmfit's
     ag_news reader reads them (title and description joined `xxfld 1 <title> xxfld 2 <desc>`),
     split seeded and stratified into 5,600 / 600 / 1,400.
  2. OUT/pretrain: `ulmfit pretrain` on WikiText-2 (valid+test), fwd and bwd, --model (small:
     200/576/3, drop_mult 0.5), once for every task and seed; OUT/pretrain/fastai-export: its
     `ulmfit export-fastai`.
  3. per task and seed, in OUT/<task>/s<seed>/ (steps interleaved so that load on a shared
     machine falls on both systems alike):
       fastai_lm, fastai_clf   studies/vs_fastai_worker.py under .venv-fastai (fwd)
       ulmfit_lm_fwd, ulmfit_clf_fwd, ulmfit_lm_bwd, ulmfit_clf_bwd
                               `ulmfit finetune-lm` / `ulmfit train-clf` with the paper recipe (the
                               defaults: discriminative LRs + STLR; gradual unfreezing for the classifier)
     Same epochs per stage, batch size, bptt, max_len, model sizes, dropouts, threads, fp32.
  4. OUT/results.md and OUT/results.json: test error mean ± std over the seeds and wall time per
     stage and in total, for fastai (fwd), ulmfit (fwd), ulmfit (fwd+bwd ensemble: the mean of the
     two directions' test probabilities, as train-clf bidirectional=both computes it) and
     TF-IDF + logistic regression on the same split.

Wall time: train_s is the wall clock of the training call, measured the same way for both: from
the first optimiser step of the stage to the end of its last epoch, per-epoch validation included
(ulmfit: the trainer's elapsed_s in metrics.csv; fastai: the fit_one_cycle calls). process_s is
the whole stage process as this script times it (start-up, imports, reading and tokenizing the
CSVs, building the model, training, scoring test, saving).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ulmfit_cli.fileutil import write_json  # atomic
from ulmfit_cli.reporting.paper import cell

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "studies" / "vs_fastai_worker.py"
TASKS = ("trec6", "agnews")
AG_SPLIT = {"train": 5600, "valid": 600, "test": 1400}
SPLIT_SEED = 42

DIFFERENCES = """\
How the two pipelines differ (everything else is equal: the documents of every split, the
pretrained weights and vocabulary, model sizes, the five dropouts x drop_mult and the head's two
(output_p x drop_mult, then 0.1), batch size, bptt,
BPT3C max_len, epochs per stage, threads, fp32, AR 2 / TAR 1):
- Tokens: {tokens}
- Fine-tuning vocabulary: each builds its own on the train split (min_freq {min_freq}, max_vocab
  {max_vocab}) and maps the pretrained embedding onto it (known rows kept, new rows the mean);
  fastai pads its vocabulary to a multiple of 8 with `xxfake`.
- LM fine-tuning: ulmfit trains all layers from the first step with discriminative LRs (lr 0.004,
  /2.6 per layer) on one STLR schedule (cut_frac 0.1, ratio 32), Adam betas (0.7, 0.99), weight
  decay 0.01, gradient clipping 0.4, variable-length BPTT; fastai (tutorial.text) trains 1 epoch
  with only the embedding/decoder unfrozen at 1e-2, then unfreezes and trains the rest at 1e-3 (one
  LR for all layers), each phase its own one-cycle (cosine, moms 0.8-0.7-0.8), weight decay 0.1,
  no clipping, fixed-length BPTT.
- Classifier: ulmfit (paper §3.3) unfreezes one more layer group per epoch (head; + top LSTM;
  + middle; + first; then all groups for the remaining epochs) on one STLR schedule (lr 0.01,
  /2.6 per group), clipping 25; fastai (tutorial.text) runs 4 separate one-cycles: head 1 epoch
  at 2e-2, freeze_to(-2) 1 epoch at slice(1e-2/2.6^4, 1e-2), freeze_to(-3) 1 epoch at
  slice(5e-3/2.6^4, 5e-3), unfreeze for the remaining epochs at slice(1e-3/2.6^4, 1e-3);
  weight decay 0.01, no clipping.
- Batches: both sort classifier documents by length within shuffled chunks; fastai drops the last
  incomplete training batch, ulmfit keeps it (or joins it to the previous one).
- fastai alone is forward-only here; the ulmfit ensemble row costs the bwd LM and classifier too.
"""


# --------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"[vs_fastai {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def record_time(seed_dir: Path, step: str, seconds: float, resumed: bool) -> None:
    path = seed_dir / "process_times.json"
    times = read_json(path) or {}
    times[step] = {"process_s": round(seconds, 3), "resumed": resumed}
    write_json(path, times)


def mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    c = cell(pd.Series(xs, dtype=float))  # None becomes NaN, which cell drops
    return (c.mean, c.std) if c.n else (None, None)


# --------------------------------------------------------------------------- 1. the splits
def write_split(folder: Path, splits: dict[str, tuple[list[str], list[str]]], meta: dict) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, (texts, labels) in splits.items():
        with open(tmp / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(zip(texts, labels))
    counts = {name: {"docs": len(labels), "classes": {c: labels.count(c) for c in sorted(set(labels))}}
              for name, (_, labels) in splits.items()}
    write_json(tmp / "split.json", {**meta, "counts": counts})
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def cap(texts: list[str], labels: list[str], n: int | None, seed: int) -> tuple[list[str], list[str]]:
    if n is None or len(texts) <= n:
        return texts, labels
    keep = sorted(np.random.RandomState(seed).choice(len(texts), n, replace=False))
    return [texts[i] for i in keep], [labels[i] for i in keep]


def make_split(task: str, shared: Path, out: Path, max_train: int | None) -> Path:
    folder = out / "data" / task
    if (folder / "split.json").exists():
        return folder
    from ulmfit_cli.config import compose
    from ulmfit_cli.data import load_dataset

    if task == "trec6":
        cfg = compose("train_clf", ["dataset=trec6", f"data_root={shared}"])
        data = load_dataset(cfg.dataset, str(shared), lm_files=False)
        splits = {"train": (data.train_texts, data.train_labels), "valid": (data.valid_texts, data.valid_labels),
                  "test": (data.test_texts, data.test_labels)}
        meta = {"source": str(shared / "trec6"), "how": "ulmfit's trec6 reader: train_5500.label with validation "
                f"carved (valid_frac {cfg.dataset.valid_frac}, split_seed {cfg.dataset.split_seed}); test TREC_10.label"}
    elif task == "agnews":
        from ulmfit_cli.data import corpora

        directory = shared / "agnews"
        cfg = compose("train_clf", ["dataset=ag_news", f"dataset.data_dir={directory}"])
        warnings: list[str] = []
        rows = corpora.zhang_file(directory / "test.csv", cfg.dataset, warnings, corpora.class_names(directory),
                                  corpora.unescape_ag)
        rng = np.random.RandomState(SPLIT_SEED)
        labels = np.array(rows.labels)
        classes = sorted(set(rows.labels))
        parts: dict[str, list[int]] = {k: [] for k in AG_SPLIT}
        for c in classes:  # stratified: every class split in the same proportions
            idx = rng.permutation(np.nonzero(labels == c)[0])
            n_test = AG_SPLIT["test"] * len(idx) // len(labels)
            n_valid = AG_SPLIT["valid"] * len(idx) // len(labels)
            parts["test"] += idx[:n_test].tolist()
            parts["valid"] += idx[n_test:n_test + n_valid].tolist()
            parts["train"] += idx[n_test + n_valid:].tolist()
        splits = {}
        for k, idx in parts.items():
            idx = rng.permutation(idx)
            splits[k] = ([rows.texts[i] for i in idx], [rows.labels[i] for i in idx])
        meta = {"source": str(directory / "test.csv"), "how": "the 7,600 rows of AG News test.csv read by ulmfit's "
                f"ag_news reader (title + description as `xxfld 1 <title> xxfld 2 <description>`), split stratified "
                f"by class with numpy RandomState({SPLIT_SEED}) into {AG_SPLIT}"}
    else:
        raise SystemExit(f"unknown task {task!r}: use {', '.join(TASKS)}")
    if max_train:
        splits["train"] = cap(*splits["train"], max_train, SPLIT_SEED)
        meta["max_train"] = max_train
    write_split(folder, splits, meta)
    log(f"{task}: wrote {folder} ({', '.join(f'{k} {len(v[1])}' for k, v in splits.items())})")
    return folder


# --------------------------------------------------------------------------- 2./3. the runs
class Runner:
    def __init__(self, a):
        self.a = a
        self.out = Path(a.out).resolve()
        self.shared = Path(a.shared).resolve()
        self.base = [f"model={a.model}", f"tokenizer.max_vocab={a.max_vocab}", f"tokenizer.min_freq={a.min_freq}",
                     f"train.bs={a.bs}", f"train.bptt={a.bptt}", f"train.max_len={a.max_len}", f"threads={a.threads}",
                     "precision=fp32", "progress=none", *a.extra]
        from ulmfit_cli.config import TrainClfConfig

        # The TF-IDF baseline is fitted once per task here, so that ulmfit's timed process does the
        # same work as fastai's; where train-clf fits it itself, it is switched off.
        self.clf_extra = ["tfidf_baseline=false"] if "tfidf_baseline" in TrainClfConfig.__dataclass_fields__ else []

    def ulmfit(self, stage: str, run_dir: Path, *overrides: str, seed_dir: Path | None = None) -> dict:
        done = read_json(run_dir / "summary.json")
        if done is not None:
            return done
        resumed = run_dir.exists()
        overrides = (*overrides, f"resume={run_dir}") if resumed else overrides
        cmd = [sys.executable, "-m", "ulmfit_cli", stage, *self.base, *overrides, f"hydra.run.dir={run_dir}"]
        log("$ ulmfit " + " ".join(cmd[3:]))
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        if seed_dir is not None:
            record_time(seed_dir, run_dir.name, time.perf_counter() - t, resumed)
        return json.loads((run_dir / "summary.json").read_text())

    def fastai(self, stage: str, run_dir: Path, seed_dir: Path, *args: str) -> dict:
        done = read_json(run_dir / "summary.json")
        if done is not None:
            return done
        shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted fastai step starts over
        a = self.a
        cmd = [a.fastai_python, str(WORKER), stage, "--out", str(run_dir), "--pretrained", str(self.export),
               "--bs", str(a.bs), "--bptt", str(a.bptt), "--max-len", str(a.max_len), "--drop-mult", str(self.drop_mult),
               "--min-freq", str(a.min_freq), "--max-vocab", str(a.max_vocab), "--threads", str(a.threads),
               "--tokenizer", a.fastai_tokenizer, *args]
        log("$ " + " ".join(cmd))
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        record_time(seed_dir, run_dir.name, time.perf_counter() - t, False)
        return json.loads((run_dir / "summary.json").read_text())

    def pretrain(self) -> dict:
        a = self.a
        run = self.out / "pretrain"
        t = time.perf_counter()
        summary = self.ulmfit("pretrain", run, "dataset=wikitext2", f"data_root={self.shared}",
                              f"train.epochs={a.pretrain_epochs}", "bidirectional=both", "seed=0",
                              *([f"dataset.max_docs={a.max_pretrain_docs}"] if a.max_pretrain_docs else []))
        self.export = run / "fastai-export"
        if not (self.export / "fastai_config.json").exists():
            subprocess.run([sys.executable, "-m", "ulmfit_cli", "export-fastai", f"run={run}", "--out", str(self.export)],
                           check=True)
        from omegaconf import OmegaConf

        model = OmegaConf.load(run / "config.yaml").model
        self.drop_mult = float(model.drop_mult)
        dropouts = [float(model[k]) for k in ("output_p", "hidden_p", "input_p", "embed_p", "weight_p")]
        if dropouts != [0.4, 0.3, 0.4, 0.05, 0.5]:
            raise SystemExit(f"the worker gives fastai the default AWD-LSTM dropouts; this model has {dropouts}")
        log(f"pretrain ready ({time.perf_counter() - t:.0f} s): {run}")
        return summary

    def seed(self, task: str, data: Path, seed: int) -> None:
        a = self.a
        d = self.out / task / f"s{seed}"
        d.mkdir(parents=True, exist_ok=True)
        csv_data = ["dataset=csv", f"dataset.data_dir={data}", "dataset.train_file=train.csv",
                    "dataset.valid_file=valid.csv", "dataset.test_file=test.csv", f"seed={seed}"]
        fa = ["--data", str(data), "--seed", str(seed)]
        if not a.bwd_only:
            self.fastai("lm", d / "fastai_lm", d, *fa, "--epochs", str(a.lm_epochs))
            self.ulmfit("finetune-lm", d / "ulmfit_lm_fwd", *csv_data, f"pretrained={self.out / 'pretrain'}",
                        "bidirectional=fwd", f"train.epochs={a.lm_epochs}", seed_dir=d)
            self.fastai("clf", d / "fastai_clf", d, *fa, "--lm", str(d / "fastai_lm"), "--epochs", str(a.clf_epochs))
            self.ulmfit("train-clf", d / "ulmfit_clf_fwd", *csv_data, f"lm={d / 'ulmfit_lm_fwd'}", "bidirectional=fwd",
                        f"train.epochs={a.clf_epochs}", *self.clf_extra, seed_dir=d)
        if not a.no_bwd:
            self.ulmfit("finetune-lm", d / "ulmfit_lm_bwd", *csv_data, f"pretrained={self.out / 'pretrain'}",
                        "bidirectional=bwd", f"train.epochs={a.lm_epochs}", seed_dir=d)
            self.ulmfit("train-clf", d / "ulmfit_clf_bwd", *csv_data, f"lm={d / 'ulmfit_lm_bwd'}", "bidirectional=bwd",
                        f"train.epochs={a.clf_epochs}", *self.clf_extra, seed_dir=d)


def tfidf_baseline(data: Path) -> dict:
    """TF-IDF (word 1-2-grams) + logistic regression on the same split: train-clf's own baseline
    (ulmfit_cli/stages/baselines.py) where this checkout has it, else the same recipe here."""
    path = data / "tfidf_lr.json"
    if (done := read_json(path)) is not None:
        return done
    import pandas as pd

    df = {s: pd.read_csv(data / f"{s}.csv", dtype=str, keep_default_na=False, na_filter=False)
          for s in ("train", "valid", "test")}
    classes = sorted(set(df["train"].label))
    ys = {s: np.array([classes.index(c) if c in classes else -1 for c in d.label]) for s, d in df.items()}
    texts = {s: list(d.text) for s, d in df.items()}
    t = time.perf_counter()
    try:
        from ulmfit_cli.stages.baselines import tfidf_logreg

        res, how = tfidf_logreg(texts, ys, False, 0), "ulmfit_cli.stages.baselines.tfidf_logreg"
    except ImportError:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2 if len(texts["train"]) > 1000 else 1, sublinear_tf=True)
        model = LogisticRegression(C=4.0, max_iter=2000).fit(vec.fit_transform(texts["train"]), ys["train"])
        res, how = {}, "the recipe of ulmfit_cli/stages/baselines.py (word 1-2-grams, sublinear tf, C=4)"
        for s, p in (("valid", "val"), ("test", "test")):
            acc = float((model.predict(vec.transform(texts[s])) == ys[s]).mean())
            res.update({f"{p}_accuracy": acc, f"{p}_error": 100 * (1 - acc)})
    res = {**res, "fit_s": round(time.perf_counter() - t, 3), "how": how}
    write_json(path, res)
    return res


# --------------------------------------------------------------------------- 4. the table
def ulmfit_train_s(run_dir: Path, direction: str) -> float | None:
    """The trainer's elapsed_s at its last epoch (train/valid rows), as metrics.csv logs it."""
    path = run_dir / "metrics.csv"
    if not path.exists():
        return None
    with open(path, newline="") as f:
        vals = [float(r["elapsed_s"]) for r in csv.DictReader(f)
                if r["direction"] == direction and r["split"] in ("train", "valid") and r["elapsed_s"]]
    return max(vals) if vals else None


def test_probs(path: Path, classes: list[str]) -> np.ndarray:
    import pandas as pd

    df = pd.read_csv(path, dtype={"label": str}, keep_default_na=False)
    return df[[f"p_{c}" for c in classes]].to_numpy(dtype=np.float64)


def collect_seed(d: Path, data: Path) -> dict:
    """One seed's figures; a system's entry is missing where its steps have not finished."""
    import pandas as pd

    times = read_json(d / "process_times.json") or {}
    proc = lambda step: (times.get(step) or {}).get("process_s")  # noqa: E731
    gold = list(pd.read_csv(data / "test.csv", dtype=str, keep_default_na=False).label)
    out: dict = {}
    flm, fclf = read_json(d / "fastai_lm" / "summary.json"), read_json(d / "fastai_clf" / "summary.json")
    if flm and fclf:
        out["fastai_fwd"] = {
            "test_error": fclf["results"]["fwd"]["test_error"], "val_error": fclf["results"]["fwd"]["val_error"],
            "lm_val_perplexity": flm["results"]["fwd"]["val_perplexity"],
            "lm_train_s": flm["train_s"], "clf_train_s": fclf["train_s"],
            "lm_process_s": proc("fastai_lm"), "clf_process_s": proc("fastai_clf"),
            "lm_phase_s": flm["phase_s"], "clf_phase_s": fclf["phase_s"]}
    runs = {}
    for direction in ("fwd", "bwd"):
        lm, clf = read_json(d / f"ulmfit_lm_{direction}" / "summary.json"), read_json(d / f"ulmfit_clf_{direction}" / "summary.json")
        if lm and clf:
            runs[direction] = {
                "test_error": clf["results"][direction]["test_error"], "val_error": clf["results"][direction]["val_error"],
                "lm_val_perplexity": lm["results"][direction]["val_perplexity"],
                "lm_train_s": ulmfit_train_s(d / f"ulmfit_lm_{direction}", direction),
                "clf_train_s": ulmfit_train_s(d / f"ulmfit_clf_{direction}", direction),
                "lm_process_s": proc(f"ulmfit_lm_{direction}"), "clf_process_s": proc(f"ulmfit_clf_{direction}"),
                "classes": clf["classes"]}
    if "fwd" in runs:
        out["ulmfit_fwd"] = {k: v for k, v in runs["fwd"].items() if k != "classes"}
    if "fwd" in runs and "bwd" in runs:
        classes = runs["fwd"]["classes"]
        p = np.mean([test_probs(d / f"ulmfit_clf_{x}" / "predictions_test.csv", classes) for x in ("fwd", "bwd")], 0)
        err = 100 * float(np.mean([classes[i] != g for i, g in zip(p.argmax(1), gold)]))
        add = lambda k: (None if runs["fwd"][k] is None or runs["bwd"][k] is None  # noqa: E731
                         else runs["fwd"][k] + runs["bwd"][k])
        out["ulmfit_ensemble"] = {"test_error": err, **{k: add(k) for k in
                                  ("lm_train_s", "clf_train_s", "lm_process_s", "clf_process_s")}}
    return out


SYSTEMS = [("fastai_fwd", "fastai 2.8.12, fwd"), ("ulmfit_fwd", "ulmfit, fwd"),
           ("ulmfit_ensemble", "ulmfit, fwd+bwd ensemble"), ("tfidf_lr", "TF-IDF + logistic regression")]


def summarise(a, out: Path, pre: dict | None) -> dict:
    tasks = {}
    for task in a.tasks:
        data = out / "data" / task
        if not (data / "split.json").exists():
            continue
        per_seed = {s: collect_seed(out / task / f"s{s}", data) for s in a.seeds}
        rows = {}
        for key, _ in SYSTEMS[:3]:
            got = {s: r[key] for s, r in per_seed.items() if key in r}
            if not got:
                continue
            row = {"seeds": sorted(got)}
            for k in ("test_error", "val_error", "lm_val_perplexity", "lm_train_s", "clf_train_s",
                      "lm_process_s", "clf_process_s"):
                vals = [g.get(k) for g in got.values()]
                if any(v is None for v in vals):
                    continue
                row[k] = dict(zip(("mean", "std"), mean_std(vals)))
            for k in ("train_s", "process_s"):
                vals = [None if g.get(f"lm_{k}") is None or g.get(f"clf_{k}") is None else g[f"lm_{k}"] + g[f"clf_{k}"]
                        for g in got.values()]
                if all(v is not None for v in vals):
                    row[f"total_{k}"] = dict(zip(("mean", "std"), mean_std(vals)))
            rows[key] = row
        tf = read_json(data / "tfidf_lr.json")
        if tf:
            rows["tfidf_lr"] = {"test_error": {"mean": tf["test_error"], "std": 0.0}, "fit_s": tf["fit_s"],
                                "how": tf.get("how")}
        verdict = None
        if "fastai_fwd" in rows and "ulmfit_fwd" in rows and "test_error" in rows["ulmfit_fwd"] \
                and "test_error" in rows["fastai_fwd"]:
            u, f = rows["ulmfit_fwd"]["test_error"], rows["fastai_fwd"]["test_error"]
            one_std = max(u["std"], f["std"])
            ut, ft = rows["ulmfit_fwd"].get("total_train_s"), rows["fastai_fwd"].get("total_train_s")
            verdict = {"error_gap_points": u["mean"] - f["mean"], "one_std": one_std,
                       "error_ok": u["mean"] - f["mean"] <= one_std,
                       "time_ratio_ulmfit_over_fastai": (ut["mean"] / ft["mean"]) if ut and ft else None,
                       "time_ok": (ut["mean"] <= ft["mean"]) if ut and ft else None}
        tasks[task] = {"split": read_json(data / "split.json"), "rows": rows, "per_seed": per_seed, "verdict": verdict}
    return tasks


def fmt(x: dict | None, digits: int = 1) -> str:
    if not x or x.get("mean") is None:
        return ""
    return f"{x['mean']:.{digits}f} ± {x['std']:.{digits}f}"


def versions(a) -> dict:
    import torch

    fa = subprocess.run([a.fastai_python, "-c", "import fastai, torch; print(fastai.__version__, torch.__version__)"],
                        capture_output=True, text=True)
    fastai_v, fastai_torch = (fa.stdout.split() + [None, None])[:2] if fa.returncode == 0 else (None, None)
    return {"torch": torch.__version__, "fastai": fastai_v, "fastai_venv_torch": fastai_torch,
            "python": platform.python_version(), "cpu": cpu_name(), "threads": a.threads,
            "cores": os.cpu_count(), "load_average_at_end": os.getloadavg()}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown(a, meta: dict, pre: dict | None, tasks: dict) -> str:
    lines = [f"# ulmfit vs fastai {meta['versions']['fastai']}: same data, same pretrained model, same budget", "",
             f"{meta['date']}; {meta['device']}; torch {meta['versions']['torch']}, fastai {meta['versions']['fastai']} "
             f"(torch {meta['versions']['fastai_venv_torch']} in its venv); fp32; model={a.model}, bs {a.bs}, bptt {a.bptt}, "
             f"epochs: LM fine-tuning {a.lm_epochs}, classifier {a.clf_epochs}; seeds {', '.join(map(str, a.seeds))}.",
             f"Command: `{meta['command']}`", ""]
    if pre:
        lines += [f"Pretrained once, shared by both systems: `ulmfit pretrain` on WikiText-2 valid+test, {a.pretrain_epochs} "
                  f"epochs, fwd+bwd, val perplexity "
                  + ", ".join(f"{d} {r['val_perplexity']:.1f}" for d, r in pre["results"].items())
                  + f", {pre['wall_time_s']:.0f} s; exported with `ulmfit export-fastai`.", ""]
    lines += ["Test error in % (mean ± sample std over seeds). Wall time in seconds: *train* is the training call "
              "(first step to end of the last epoch, per-epoch validation included), *process* the whole stage "
              "process (start-up, tokenizing, training, test scoring, saving).", ""]
    for task, t in tasks.items():
        s = (t["split"] or {}).get("counts", {})
        lines += [f"## {task} (train {s.get('train', {}).get('docs')}, valid {s.get('valid', {}).get('docs')}, "
                  f"test {s.get('test', {}).get('docs')})", "",
                  "| system | seeds | test error % | LM fine-tune train s | classifier train s | total train s | "
                  "total process s | LM val perplexity |", "|---|---|---|---|---|---|---|---|"]
        for key, name in SYSTEMS:
            r = t["rows"].get(key)
            if not r:
                continue
            if key == "tfidf_lr":
                lines.append(f"| {name} | - | {r['test_error']['mean']:.1f} | | | {r['fit_s']:.1f} (fit) | | |")
                continue
            lines.append(f"| {name} | {len(r['seeds'])} | {fmt(r.get('test_error'), 2)} | {fmt(r.get('lm_train_s'), 0)} | "
                         f"{fmt(r.get('clf_train_s'), 0)} | {fmt(r.get('total_train_s'), 0)} | "
                         f"{fmt(r.get('total_process_s'), 0)} | {fmt(r.get('lm_val_perplexity'), 1)} |")
        v = t["verdict"]
        if v:
            time_part = ("" if v["time_ratio_ulmfit_over_fastai"] is None else
                         f"; ulmfit's total train time is {v['time_ratio_ulmfit_over_fastai']:.2f}x fastai's "
                         f"({'equal or lower' if v['time_ok'] else 'higher'})")
            lines += ["", f"Target (ulmfit fwd within one std of fastai fwd, at equal or lower wall time): error gap "
                      f"{v['error_gap_points']:+.2f} points against one std {v['one_std']:.2f} "
                      f"({'met' if v['error_ok'] else 'NOT met'}){time_part}."]
        lines += ["", "Per seed (test error %, total train s):", "",
                  "| seed | fastai fwd | ulmfit fwd | ulmfit ensemble |", "|---|---|---|---|"]
        for seed, r in t["per_seed"].items():
            cell = lambda k: ("" if k not in r else  # noqa: E731
                              f"{r[k]['test_error']:.2f} ({(r[k]['lm_train_s'] or 0) + (r[k]['clf_train_s'] or 0):.0f} s)")
            lines.append(f"| {seed} | {cell('fastai_fwd')} | {cell('ulmfit_fwd')} | {cell('ulmfit_ensemble')} |")
        lines.append("")
    lines += ["## Differences", "", DIFFERENCES.format(
        tokens=("fastai is given ulmfit's word tokens (ulmfit_cli's word_tokenize: fastai's rules xxbos, xxmaj, "
                "xxup, xxrep, xxwrep and a regex splitter close to spaCy's), so both read identical token "
                "sequences" if a.fastai_tokenizer == "ulmfit" else
                "each its own: fastai's Tokenizer (SpacyTokenizer + its default rules), ulmfit its word tokenizer; "
                "fastai's tokens that ulmfit's pretrained vocabulary lacks start at the mean embedding"),
        min_freq=a.min_freq, max_vocab=a.max_vocab)]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "outputs" / "vs_fastai"))
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--model", default="small", help="ulmfit model config (small: 200/576/3, drop_mult 0.5)")
    ap.add_argument("--pretrain-epochs", type=int, default=2)
    ap.add_argument("--lm-epochs", type=int, default=6)
    ap.add_argument("--clf-epochs", type=int, default=12)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=70)
    ap.add_argument("--max-len", type=int, default=1400, help="BPT3C: tokens whose states reach the pools")
    ap.add_argument("--max-vocab", type=int, default=30000)
    ap.add_argument("--min-freq", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both systems (1: on a shared 2-core machine two-thread runs stall "
                         "whenever another job takes a core; use 2 on an idle one)")
    ap.add_argument("--fastai-python", default=str(REPO / ".venv-fastai" / "bin" / "python"))
    ap.add_argument("--fastai-tokenizer", default="ulmfit", choices=["ulmfit", "fastai"],
                    help="ulmfit: fastai reads ulmfit's word tokens (default); fastai: its own spaCy tokenizer (needs spaCy)")
    bwd = ap.add_mutually_exclusive_group()
    bwd.add_argument("--no-bwd", action="store_true", help="skip ulmfit's bwd runs (and so the ensemble row)")
    bwd.add_argument("--bwd-only", action="store_true",
                     help="only ulmfit's bwd runs: a second process beside one run with --no-bwd on other seeds")
    ap.add_argument("--max-train", type=int, default=None, help="cap the train split (smoke runs)")
    ap.add_argument("--max-pretrain-docs", type=int, default=None, help="dataset.max_docs for pretraining (smoke runs)")
    ap.add_argument("--report-only", action="store_true", help="only (re)write results.md/json from what exists")
    ap.add_argument("extra", nargs="*", help="overrides for every ulmfit stage (after --)")
    a = ap.parse_args()
    a.tasks = [t for t in a.tasks.split(",") if t]
    a.seeds = [int(s) for s in a.seeds.split(",") if s != ""]
    if a.clf_epochs < 5:
        raise SystemExit("--clf-epochs must be at least 5: ulmfit's gradual unfreezing (head, +1, +2, +3 groups, then "
                         "all) takes 5 epochs at least, and the budget must be the same for both")
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not Path(a.fastai_python).exists():
        raise SystemExit(f"{a.fastai_python} is missing: run `bash scripts/fastai_env.sh` first")

    t0 = time.perf_counter()
    pre = read_json(out / "pretrain" / "summary.json")
    if not a.report_only:
        runner = Runner(a)
        datas = {task: make_split(task, Path(a.shared).resolve(), out, a.max_train) for task in a.tasks}
        for task, data in datas.items():
            tfidf_baseline(data)
        pre = runner.pretrain()
        for seed in a.seeds:  # seed-major: a stopped study has every task at the same number of seeds
            for task, data in datas.items():
                runner.seed(task, data, seed)
                write_report(a, out, pre, t0)
    return write_report(a, out, pre, t0)


def write_report(a, out: Path, pre: dict | None, t0: float) -> int:
    tasks = summarise(a, out, pre)
    meta = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "device": f"cpu, {a.threads} threads ({cpu_name()}, {os.cpu_count()} cores)",
            "versions": versions(a), "this_invocation_s": round(time.perf_counter() - t0, 1),
            "settings": {k: v for k, v in vars(a).items() if k != "extra"} | {"extra": a.extra}}
    results = {**meta, "pretrain": pre and {"results": pre["results"], "wall_time_s": pre["wall_time_s"]},
               "tasks": tasks, "differences": DIFFERENCES}
    write_json(out / "results.json", results)
    (out / "results.md").write_text(markdown(a, meta, pre, tasks))
    log(f"wrote {out / 'results.md'} and results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
