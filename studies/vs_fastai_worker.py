#!/usr/bin/env python
"""The fastai side of studies/vs_fastai.py; run with .venv-fastai/bin/python (fastai 2.8.12).

    python studies/vs_fastai_worker.py lm  --data D --pretrained EXPORT --out RUN [options]
    python studies/vs_fastai_worker.py clf --data D --lm LM_RUN --out RUN [options]

D holds train.csv, valid.csv, test.csv (columns text,label), the splits ulmfit reads too. EXPORT
is an `ulmfit export-fastai` folder (lstm_fwd.pth, itos_fwd.pkl, fastai_config.json).

fastai's documented ULMFiT recipe (docs.fast.ai tutorial.text, "Transfer learning in text"; the
moms are TextLearner's default (0.8, 0.7, 0.8), as in fastai's examples/ulmfit.ipynb):
  lm:  language_model_learner(..., wd=0.1, pretrained_fnames=[lstm_fwd, itos_fwd]) (frozen: only
       the embedding/decoder group trains), fit_one_cycle(1, 1e-2); unfreeze();
       fit_one_cycle(epochs - 1, 1e-3); save_encoder.
  clf: text_classifier_learner(...) + load_encoder (frozen: the head trains), fit_one_cycle(1, 2e-2);
       freeze_to(-2), fit_one_cycle(1, slice(1e-2/2.6**4, 1e-2)); freeze_to(-3),
       fit_one_cycle(1, slice(5e-3/2.6**4, 5e-3)); unfreeze(), fit_one_cycle(epochs - 3, slice(1e-3/2.6**4, 1e-3)).
Model sizes come from the export, the five AWD-LSTM dropouts are ulmfit's (0.4, 0.3, 0.4, 0.05,
0.5, = fastai's classifier config) times --drop-mult for both stages, batch size and bptt as given.

Tokens: --tokenizer ulmfit (default) gives fastai exactly ulmfit's word tokens (ulmfit_cli's
word_tokenize: fastai's rules xxbos/xxmaj/xxup/xxrep/xxwrep, a regex splitter close to spaCy's);
--tokenizer fastai runs fastai's own Tokenizer (SpacyTokenizer + defaults.text_proc_rules), which
needs spaCy in this venv. Either way fastai builds its own fine-tuning vocabulary (Numericalize,
--min-freq/--max-vocab as ulmfit's tokenizer config) and maps the pretrained embedding onto it
(match_embeds), as it does for its WT103 model. Tokenizing happens inside the timed process, as in ulmfit.

Writes RUN/summary.json last (its presence means the step finished), RUN/history.csv (per-epoch
losses and metrics), RUN/models/ (encoder, vocab); clf also RUN/test_probs.csv.
train_s is the wall clock of the fit_one_cycle calls (per-epoch validation included), the span
ulmfit's trainer reports as elapsed_s.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ULMFIT_DROPOUTS = dict(output_p=0.4, hidden_p=0.3, input_p=0.4, embed_p=0.05, weight_p=0.5)
LM_LRS = (1e-2, 1e-3)  # frozen epoch, then unfrozen (tutorial.text)
CLF_LRS = (2e-2, 1e-2, 5e-3, 1e-3)  # head; freeze_to(-2); freeze_to(-3); unfreeze (tutorial.text)
LM_WD = 0.1  # tutorial.text: language_model_learner(..., wd=0.1); the classifier keeps fastai's default (0.01)


def read_split(data: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(data / f"{name}.csv", dtype=str, keep_default_na=False, na_filter=False)


def tokenizer(kind: str):
    """texts -> token lists."""
    if kind == "ulmfit":
        from ulmfit_cli.data.tokenizers import word_tokenize

        return lambda texts: [word_tokenize(t) for t in texts]
    if kind == "fastai":
        from fastai.text.core import SpacyTokenizer, Tokenizer

        tok = Tokenizer(SpacyTokenizer())  # fastai's default rules
        return lambda texts: [list(tok(t)) for t in texts]
    raise SystemExit(f"--tokenizer {kind}: use ulmfit or fastai")


def set_up(a) -> None:
    from fastai.torch_core import set_seed

    torch.set_num_threads(a.threads)
    set_seed(a.seed, reproducible=True)


def write_summary(out: Path, summary: dict) -> None:
    import fastai

    summary.update(fastai=fastai.__version__, torch=torch.__version__, python=platform.python_version(),
                   device=f"cpu ({torch.get_num_threads()} threads)", argv=sys.argv[1:])
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out / "summary.json")


def history(learn, out: Path, phase: str, t_fit: float) -> list[dict]:
    rows = []
    names = [n for n in learn.recorder.metric_names[1:-1]]  # epoch ... time
    for i, vals in enumerate(learn.recorder.values):
        rows.append({"phase": phase, "epoch": i, **{n: float(v) for n, v in zip(names, vals)}})
    path = out / "history.csv"
    pd.DataFrame(rows).assign(fit_s=round(t_fit, 3)).to_csv(path, mode="a", header=not path.exists(), index=False)
    return rows


def fit(learn, out: Path, phase: str, epochs: int, lr) -> tuple[float, list[dict]]:
    t = time.perf_counter()
    with learn.no_bar():
        learn.fit_one_cycle(epochs, lr)
    dt = time.perf_counter() - t
    return dt, history(learn, out, phase, dt)


# --------------------------------------------------------------------------- LM fine-tuning
def run_lm(a) -> None:
    from fastai.text.all import (AWD_LSTM, Datasets, LMDataLoader, Numericalize, Perplexity, accuracy,
                                 awd_lstm_lm_config, language_model_learner)

    set_up(a)
    out, data, export = Path(a.out), Path(a.data), Path(a.pretrained)
    t_start = time.perf_counter()
    train, valid = read_split(data, "train"), read_split(data, "valid")
    tok = tokenizer(a.tokenizer)
    docs = tok(list(train.text)) + tok(list(valid.text))
    n_train = len(train)
    dsets = Datasets(docs, [[Numericalize(min_freq=a.min_freq, max_vocab=a.max_vocab)]],
                     splits=[list(range(n_train)), list(range(n_train, len(docs)))], dl_type=LMDataLoader)
    dls = dsets.dataloaders(bs=a.bs, val_bs=a.bs, seq_len=a.bptt, device=torch.device("cpu"))
    vocab = list(dls.vocab)
    (out / "models").mkdir(parents=True, exist_ok=True)
    for f in ("lstm_fwd.pth", "itos_fwd.pkl"):
        shutil.copyfile(export / f, out / "models" / f)
    sizes = json.loads((export / "fastai_config.json").read_text())["fwd"]
    config = {**awd_lstm_lm_config, **sizes, **ULMFIT_DROPOUTS}
    learn = language_model_learner(dls, AWD_LSTM, config=config, drop_mult=a.drop_mult,
                                   pretrained_fnames=["lstm_fwd", "itos_fwd"], path=out, wd=LM_WD,
                                   metrics=[accuracy, Perplexity()])
    itos_old = set(pickle.loads((export / "itos_fwd.pkl").read_bytes()))
    t_setup = time.perf_counter() - t_start

    phases, hist = {}, []
    phases["frozen"], h = fit(learn, out, "frozen", 1, LM_LRS[0])
    hist += h
    if a.epochs > 1:
        learn.unfreeze()
        phases["unfrozen"], h = fit(learn, out, "unfrozen", a.epochs - 1, LM_LRS[1])
        hist += h
    learn.save_encoder("finetuned")
    (out / "models" / "vocab.pkl").write_bytes(pickle.dumps(vocab, protocol=4))
    last = hist[-1]
    write_summary(out, {
        "stage": "fastai-lm", "seed": a.seed, "tokenizer": a.tokenizer,
        "results": {"fwd": {"val_loss": last["valid_loss"], "val_perplexity": last["perplexity"],
                            "val_accuracy": last["accuracy"], "epochs": a.epochs}},
        "train_s": round(sum(phases.values()), 3), "phase_s": {k: round(v, 3) for k, v in phases.items()},
        "setup_s": round(t_setup, 3), "process_s": round(time.perf_counter() - t_start, 3),
        "train_docs": n_train, "train_tokens": int(sum(len(d) for d in docs[:n_train])),
        "vocab_size": len(vocab), "vocab_in_pretrained": sum(t in itos_old for t in vocab if t != "xxfake"),
        "recipe": {"lrs": list(LM_LRS), "wd": LM_WD, "moms": list(learn.moms), "bs": a.bs, "bptt": a.bptt,
                   "drop_mult": a.drop_mult, "config": {k: v for k, v in config.items()}},
    })


# --------------------------------------------------------------------------- classifier
def clf_dataloaders(a, splits: dict, vocab: list, classes: list):
    """fastai DataLoaders over the three splits in order (train, valid, test: dls[0..2]), the
    tokens numericalized with the fine-tuned LM's vocabulary; also each split's item indices."""
    from fastai.text.all import Categorize, Datasets, ItemGetter, Numericalize, Pad_Chunk, SortedDL

    tok = tokenizer(a.tokenizer)
    items, idx, start = [], [], 0
    for df in splits.values():
        items += list(zip(tok(list(df.text)), df.label))
        idx.append(list(range(start, start + len(df))))
        start += len(df)
    dsets = Datasets(items, [[ItemGetter(0), Numericalize(vocab=vocab)], [ItemGetter(1), Categorize(vocab=classes)]],
                     splits=idx, dl_type=SortedDL)
    dls = dsets.dataloaders(bs=a.bs, val_bs=a.bs, before_batch=Pad_Chunk(seq_len=a.bptt), device=torch.device("cpu"))
    return dls, idx


def clf_plan(epochs: int) -> list[tuple]:
    """(phase, freeze_to argument (None: as created, 0: unfreeze), epochs, lr) per phase."""
    lrs = CLF_LRS
    return [("head", None, 1, lrs[0]), ("freeze_to(-2)", -2, 1, slice(lrs[1] / 2.6 ** 4, lrs[1])),
            ("freeze_to(-3)", -3, 1, slice(lrs[2] / 2.6 ** 4, lrs[2])),
            ("unfreeze", 0, max(epochs - 3, 0), slice(lrs[3] / 2.6 ** 4, lrs[3]))]


def fit_plan(learn, out: Path, plan: list[tuple], epochs_left: int) -> tuple[dict, list[dict]]:
    """Train the phases of `plan` until `epochs_left` epochs are spent: seconds per phase, history."""
    phases, hist = {}, []
    for name, n, epochs, lr in plan:
        epochs = min(epochs, epochs_left)
        if epochs <= 0:
            break
        if n == 0:
            learn.unfreeze()
        elif n is not None:
            learn.freeze_to(n)
        phases[name], h = fit(learn, out, name, epochs, lr)
        hist += h
        epochs_left -= epochs
    return phases, hist


def run_clf(a) -> None:
    from fastai.text.all import AWD_LSTM, accuracy, awd_lstm_clas_config, text_classifier_learner

    set_up(a)
    out, data, lm = Path(a.out), Path(a.data), Path(a.lm)
    t_start = time.perf_counter()
    splits = {s: read_split(data, s) for s in ("train", "valid", "test")}
    classes = sorted(set(splits["train"].label))
    dls, idx = clf_dataloaders(a, splits, pickle.loads((lm / "models" / "vocab.pkl").read_bytes()), classes)
    (out / "models").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(lm / "models" / "finetuned.pth", out / "models" / "finetuned.pth")
    sizes = json.loads((Path(a.pretrained) / "fastai_config.json").read_text())["fwd"]
    config = {**awd_lstm_clas_config, **{k: sizes[k] for k in ("emb_sz", "n_hid", "n_layers", "pad_token")}}
    learn = text_classifier_learner(dls, AWD_LSTM, config=config, drop_mult=a.drop_mult, pretrained=False,
                                    seq_len=a.bptt, max_len=a.max_len, metrics=accuracy, path=out)
    learn = learn.load_encoder("finetuned")  # and freeze(): only the head trains first
    t_setup = time.perf_counter() - t_start

    plan = clf_plan(a.epochs)
    phases, hist = fit_plan(learn, out, plan, a.epochs)
    t_pred = time.perf_counter()
    with learn.no_bar():
        probs, targs = learn.get_preds(dl=dls[2])  # back in dataset order (SortedDL reorders)
    pred_s = time.perf_counter() - t_pred
    probs, targs = probs.float().numpy(), targs.numpy()
    acc = float((probs.argmax(1) == targs).mean())
    pd.DataFrame({"label": [classes[i] for i in targs], **{f"p_{c}": probs[:, j].round(5) for j, c in enumerate(classes)}}) \
        .to_csv(out / "test_probs.csv", index=False)
    last = hist[-1]
    write_summary(out, {
        "stage": "fastai-clf", "seed": a.seed, "tokenizer": a.tokenizer, "classes": classes,
        "results": {"fwd": {"val_loss": last["valid_loss"], "val_accuracy": last["accuracy"],
                            "val_error": 100 * (1 - last["accuracy"]), "test_accuracy": acc,
                            "test_error": 100 * (1 - acc)}},
        "train_s": round(sum(phases.values()), 3), "phase_s": {k: round(v, 3) for k, v in phases.items()},
        "setup_s": round(t_setup, 3), "test_predict_s": round(pred_s, 3),
        "process_s": round(time.perf_counter() - t_start, 3),
        "n_train": len(idx[0]), "n_valid": len(idx[1]), "n_test": len(idx[2]),
        "recipe": {"plan": [(p[0], p[2], str(p[3])) for p in plan], "wd": learn.wd, "moms": list(learn.moms),
                   "bs": a.bs, "bptt": a.bptt, "max_len": a.max_len, "drop_mult": a.drop_mult,
                   "config": config, "head": "fastai default: lin_ftrs [50], ps [output_p*drop_mult, 0.1]"},
    })


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["lm", "clf"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--pretrained", required=True, help="the export-fastai folder")
    ap.add_argument("--lm", help="clf: the fastai lm run folder")
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=70)
    ap.add_argument("--max-len", type=int, default=1400)
    ap.add_argument("--drop-mult", type=float, default=0.5)
    ap.add_argument("--min-freq", type=int, default=2)
    ap.add_argument("--max-vocab", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tokenizer", default="ulmfit", choices=["ulmfit", "fastai"])
    a = ap.parse_args()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (run_lm if a.stage == "lm" else run_clf)(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
