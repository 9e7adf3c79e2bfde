"""`ulmfit evaluate run=<train-clf run dir> [split=test|valid] [direction=all|fwd|bwd]`.

Reads the split of the dataset the classifier was trained on (as recorded in its config)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from ..config import DatasetConfig
from ..data import load_dataset
from ..errors import UserError
from ..runtime import resolve_device
from ..stages.clf import label_ids, scores
from .args import parse
from .predict import ensemble_proba, load_classifiers, run_threshold

USAGE = "usage: ulmfit evaluate run=<train-clf run dir> [split=test|valid] [direction=all|fwd|bwd] [data_root=DIR] [bs=64] [device=auto]"


@dataclass
class EvaluateArgs:
    run: str = "???"
    split: str = "test"
    direction: str = "all"
    data_root: Optional[str] = None
    bs: int = 64
    device: str = "auto"
    verbose: bool = False


def main(argv: list[str]) -> int:
    a = parse(EvaluateArgs, argv, USAGE)
    if a.split not in ("valid", "test", "train"):
        raise UserError(f"split={a.split} is not a split.", "Use split=test, valid or train.")
    device = resolve_device(a.device)
    ckpts = load_classifiers(Path(a.run), a.direction, device)
    ckpt = ckpts[0][1]
    cfg = OmegaConf.create(ckpt["config"])
    # onto the schema: a checkpoint written before a dataset key existed still reads its data
    dataset = OmegaConf.merge(OmegaConf.structured(DatasetConfig), cfg.dataset)
    data = load_dataset(dataset, a.data_root or cfg.get("data_root"), lm_files=False)
    texts, labels = getattr(data, f"{a.split}_texts"), getattr(data, f"{a.split}_labels")
    probs = ensemble_proba(ckpts, texts, a.bs, device)
    multi = ckpt.get("multi_label", False)
    threshold = run_threshold(Path(a.run), ckpts) if multi else 0.5
    result = scores(probs, label_ids(labels, ckpt["classes"], multi), multi, threshold)
    result = {"run": a.run, "split": a.split, "directions": [n for n, _ in ckpts], "n": len(texts), **result}
    print(json.dumps(result, indent=2))
    return 0
