"""`ulmfit predict run=<train-clf run dir> input=<file|-> [output=<file|->] [format=csv|jsonl]`."""
from __future__ import annotations

import csv
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..checkpoints import load_checkpoint
from ..fileutil import atomic_write_bytes
from ..data.tokenizers import numericalizer_from_state
from ..errors import UserError
from ..runtime import check_precision, resolve_device
from ..stages.model_io import checkpoints_of, load_model
from ..stages.clf import predict_proba
from .args import parse

USAGE = ("usage: ulmfit predict run=<train-clf run dir> input=<texts.txt|.csv|.jsonl|-> "
         "[output=<file|->] [format=csv|jsonl] [text_col=<the run's text column(s)>] [direction=all|fwd|bwd] "
         "[threshold=<tuned on validation>] [bs=64] [device=auto] [precision=fp32|bf16|fp16] [overwrite=false] "
         "[verbose=false]")


@dataclass
class PredictArgs:
    run: str = "???"
    input: str = "-"
    output: str = "-"
    format: Optional[str] = None  # default: from the output's extension, else csv
    text_col: Optional[str] = None  # default: the columns the run was trained on, joined as it joined them
    direction: str = "all"
    threshold: Optional[float] = None
    bs: int = 64
    device: str = "auto"
    precision: str = "fp32"  # bf16 / fp16: autocast, as training's precision=
    overwrite: bool = False
    verbose: bool = False  # on stderr: how many texts, how long encoding and the classifiers took


def read_texts(path: str, columns: list[str]) -> list[str]:
    if path == "-":
        return [line.rstrip("\n") for line in sys.stdin]
    p = Path(path)
    if not p.is_file():
        raise UserError(f"input={path}: no such file.",
                        "Give a .txt (one text per line), .csv, .tsv, .jsonl or .parquet file, or - for stdin.")
    from ..data.formats import read_text_columns  # here: the table readers import pandas, a .txt or stdin need not

    texts = read_text_columns(p, columns, "text_col")
    return texts if texts is not None else p.read_text(encoding="utf-8", errors="replace").splitlines()


def text_columns(a, ckpt: dict) -> list[str]:
    """text_col= if given, else the run's dataset.text_cols (a run from a built-in corpus: text)."""
    if a.text_col is not None:
        return [a.text_col]
    cols = ckpt.get("config", {}).get("dataset", {}).get("text_cols") or ["text"]
    return [cols] if isinstance(cols, str) else [str(c) for c in cols]


def load_classifiers(run: Path, direction: str, device):
    names = checkpoints_of(run, ["fwd", "bwd"] if direction == "all" else [direction], "clf")
    return [(n, load_checkpoint(run / "checkpoints" / f"{n}.pt")) for n in names]


def run_threshold(run: Path, ckpts) -> float:
    """The multi-label cut-off tuned on validation at training time: the ensemble's when every
    direction is used (summary.json), else the single classifier's (its checkpoint)."""
    summary = run / "summary.json"
    if len(ckpts) > 1 and summary.exists():
        ens = json.loads(summary.read_text()).get("results", {}).get("ensemble", {})
        if ens.get("val_threshold") is not None:
            return float(ens["val_threshold"])
    return float(ckpts[0][1].get("threshold") or 0.5)


def ensemble_proba(ckpts, texts: list[str], bs: int, device, precision: str = "fp32",
                   timing: dict | None = None) -> np.ndarray:
    """Average of every direction's probabilities, in the order of `texts`; `timing` gathers the
    seconds spent encoding and in the classifiers."""
    probs, timing = [], timing if timing is not None else {}
    for name, ckpt in ckpts:
        model = load_model(ckpt, device, expect="clf")
        numer = numericalizer_from_state(ckpt["numericalizer"])
        t0 = time.perf_counter()
        docs = numer.encode_many(texts)
        t1 = time.perf_counter()
        probs.append(predict_proba(model, docs, bs=bs, pad_id=ckpt["pad_id"], reverse=name == "bwd",
                                   device=device, precision=precision, multi_label=ckpt.get("multi_label", False)))
        timing["encode_s"] = timing.get("encode_s", 0.0) + t1 - t0
        timing["predict_s"] = timing.get("predict_s", 0.0) + time.perf_counter() - t1
    return np.mean(probs, axis=0)


def main(argv: list[str]) -> int:
    a = parse(PredictArgs, argv, USAGE)
    fmt = a.format or ("jsonl" if str(a.output).endswith(".jsonl") else "csv")
    if a.output != "-" and Path(a.output).exists() and not a.overwrite:
        raise UserError(f"output={a.output} exists; predict does not overwrite files.",
                        "Choose another output= or pass overwrite=true.")
    device = resolve_device(a.device)
    check_precision(a.precision, device)
    ckpts = load_classifiers(Path(a.run), a.direction, device)
    classes, multi = ckpts[0][1]["classes"], ckpts[0][1].get("multi_label", False)
    threshold = a.threshold if a.threshold is not None else run_threshold(Path(a.run), ckpts)
    texts = read_texts(a.input, text_columns(a, ckpts[0][1]))
    timing: dict = {}
    probs = ensemble_proba(ckpts, texts, a.bs, device, a.precision, timing) if texts else np.zeros((0, len(classes)))
    if a.verbose:
        spent = timing.get("predict_s", 0.0)
        print(f"predict: {len(texts)} texts, {len(ckpts)} classifier(s), encoded in {timing.get('encode_s', 0.0):.3f} s, "
              f"classified in {spent:.3f} s ({len(texts) / spent if spent else 0:.1f} texts/s)", file=sys.stderr)
    rows = []
    for text, p in zip(texts, probs):
        row = {"text": text}
        if multi:
            above = sorted(np.nonzero(p >= threshold)[0], key=lambda j: -p[j])
            row.update(label=[classes[j] for j in above], scores={classes[j]: round(float(p[j]), 5) for j in above},
                       threshold=threshold)
        else:
            row["label"] = classes[int(p.argmax())]
        rows.append({**row, **{f"p_{c}": round(float(x), 5) for c, x in zip(classes, p)}})
    payload = render(rows, fmt, multi)
    if a.output == "-":
        sys.stdout.write(payload)
    else:
        atomic_write_bytes(Path(a.output), lambda f: f.write(payload.encode()))
    return 0


def render(rows: list[dict], fmt: str, multi: bool) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            if multi:  # every label above the threshold, most probable first: "a|b", "a=0.91|b=0.62"
                r = {**r, "label": "|".join(r["label"]), "scores": "|".join(f"{k}={v:.3f}" for k, v in r["scores"].items())}
            w.writerow(r)
    return buf.getvalue()
