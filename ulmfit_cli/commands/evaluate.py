"""`ulmfit evaluate run=<train-clf run dir> [split=test|valid] [input=<labelled file>] [direction=all|fwd|bwd]`.

Reads the split of the dataset the classifier was trained on (as recorded in its config), or a
new labelled file (input=), read with the run's own columns and label separator unless
text_col= / label_col= say otherwise."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from ..config import DatasetConfig
from ..data import load_dataset
from ..errors import UserError
from ..runtime import resolve_device
from ..stages.clf import label_ids
from ..training.scoring import scores
from .args import parse
from .predict import ensemble_proba, load_classifiers, run_threshold

USAGE = ("usage: ulmfit evaluate run=<train-clf run dir> [split=test|valid] [direction=all|fwd|bwd] [data_root=DIR] "
         "[input=<labelled .csv|.tsv|.jsonl|.parquet> [text_col=<the run's>] [label_col=<the run's>]] [bs=64] [device=auto]")


@dataclass
class EvaluateArgs:
    run: str = "???"
    split: Optional[str] = None  # test, unless input= names a file of its own
    direction: str = "all"
    data_root: Optional[str] = None
    input: Optional[str] = None
    text_col: Optional[str] = None
    label_col: Optional[str] = None
    bs: int = 64
    device: str = "auto"
    verbose: bool = False


def main(argv: list[str]) -> int:
    a = parse(EvaluateArgs, argv, USAGE)
    if a.input is not None and (a.split is not None or a.data_root is not None):
        given = " and ".join(f"{k}={v}" for k, v in (("split", a.split), ("data_root", a.data_root)) if v is not None)
        raise UserError(f"input={a.input} and {given} both name what to score: input= is a file of its own, "
                        "split= and data_root= pick from the run's dataset.", "Give one or the other.")
    a.split = a.split or "test"
    if a.split not in ("valid", "test", "train"):
        raise UserError(f"split={a.split} is not a split.", "Use split=test, valid or train.")
    device = resolve_device(a.device)
    ckpts = load_classifiers(Path(a.run), a.direction, device)
    ckpt = ckpts[0][1]
    cfg = OmegaConf.create(ckpt["config"])
    # onto the schema: a checkpoint written before a dataset key existed still reads its data
    dataset = OmegaConf.merge(OmegaConf.structured(DatasetConfig), cfg.dataset)
    if a.input is not None:
        texts, labels = read_input(a, dataset, ckpt["classes"])
    else:
        data = load_dataset(dataset, a.data_root or cfg.get("data_root"), lm_files=False)
        texts, labels = getattr(data, f"{a.split}_texts"), getattr(data, f"{a.split}_labels")
    probs = ensemble_proba(ckpts, texts, a.bs, device)
    multi = ckpt.get("multi_label", False)
    threshold = run_threshold(Path(a.run), ckpts) if multi else 0.5
    result = scores(probs, label_ids(labels, ckpt["classes"], multi), multi, threshold)
    where = {"input": a.input} if a.input is not None else {"split": a.split}
    result = {"run": a.run, **where, "directions": [n for n, _ in ckpts], "n": len(texts), **result}
    print(json.dumps(result, indent=2))
    return 0


def read_input(a, dataset, classes: list[str]) -> tuple[list[str], list]:
    """A labelled file's texts and labels, read as the run's dataset reads its files."""
    from ..data.formats import read_labelled_file  # here: the split path reads through load_dataset

    path = Path(a.input)
    if not path.is_file():
        raise UserError(f"input={a.input}: no such file.", "Give a labelled .csv, .tsv, .jsonl or .parquet file.")
    columns = {"text_cols": None if a.text_col is None else [a.text_col], "label_col": a.label_col}
    dataset = OmegaConf.merge(dataset, {k: v for k, v in columns.items() if v is not None})
    if dataset.label_col is None:
        raise UserError(f"input={a.input}: this run's dataset has no label column.", "Name it with label_col=.")
    texts, labels, warnings = read_labelled_file(path, dataset, classes, "input", ("text_col", "label_col"))
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return texts, labels
