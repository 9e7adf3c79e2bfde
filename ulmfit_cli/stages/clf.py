"""Classifier pieces shared by train-clf, evaluate and predict (the scores: training/scoring.py)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.batching import ClassifierBatches
from ..distributed import Ranks
from ..models.heads import TextClassifier
from ..training.loop import StepOut, autocast_for


def clf_step(device: torch.device, multi_label: bool):
    """Cross-entropy (or BCE for multi-label) of a batch. `forward` runs the model (the Trainer
    passes it, or it wrapped in DistributedDataParallel); the loss is scaled by the batch's `share`
    of the global batch so that DDP's mean over ranks is the one-process mean."""

    def step(forward, batch) -> StepOut:
        x, y = batch.x.to(device, non_blocking=True), batch.y.to(device, non_blocking=True)
        logits = forward(x).float()
        if multi_label:
            loss = F.binary_cross_entropy_with_logits(logits, y.float())
        else:
            loss = F.cross_entropy(logits, y)
        return StepOut(loss * batch.share, x.size(0))

    return step


def label_ids(labels, classes: list[str], multi_label: bool) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    if multi_label:
        y = np.zeros((len(labels), len(classes)), dtype=np.float32)
        for r, labs in enumerate(labels):
            for lab in labs:
                if lab in index:
                    y[r, index[lab]] = 1.0
        return y
    return np.array([index.get(str(lab), -1) for lab in labels], dtype=np.int64)


@torch.no_grad()
def predict_proba(model: TextClassifier, docs: list[np.ndarray], *, bs: int, pad_id: int, reverse: bool,
                  device: torch.device, precision: str = "fp32", multi_label: bool = False) -> np.ndarray:
    """Class probabilities in the order of `docs`, whatever order the length-sorted batches take."""
    model.eval()
    out = None
    batches = ClassifierBatches(docs, None, bs, pad_id, model.bptt, shuffle=False, reverse=reverse)
    for batch in batches.epoch():
        with autocast_for(device, precision):
            logits = model(batch.x.to(device)).float()
        probs = torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1)
        if out is None:
            out = np.zeros((len(docs), probs.size(1)), dtype=np.float32)
        out[batch.idx] = probs.cpu().numpy()
    return out


def sharded_predict_proba(model: TextClassifier, docs: list[np.ndarray], ranks: Ranks, **kw) -> np.ndarray:
    """predict_proba with the documents dealt round-robin over the data-parallel ranks; every rank
    gets all probabilities, in the order of `docs`."""
    if not ranks.enabled:
        return predict_proba(model, docs, **kw)
    mine = np.arange(ranks.rank, len(docs), ranks.world_size)
    parts = ranks.gather_objects((mine, predict_proba(model, [docs[i] for i in mine], **kw)))
    out = np.zeros((len(docs), next(p.shape[1] for _, p in parts if p is not None)), dtype=np.float32)
    for idx, p in parts:
        if len(idx):
            out[idx] = p
    return out
