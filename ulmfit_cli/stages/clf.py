"""Classifier pieces shared by train-clf, evaluate and predict."""
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


def scores(probs: np.ndarray, labels: np.ndarray, multi_label: bool = False, threshold: float = 0.5) -> dict:
    """loss, accuracy and error (%) of probabilities against gold labels; for multi-label also
    micro/macro F1 and exact-match accuracy at `threshold`."""
    eps = 1e-7
    if multi_label:
        gold, pred = labels.astype(bool), probs >= threshold
        f1_micro, f1_macro = f1_scores(pred, gold)
        loss = float(-(gold * np.log(probs + eps) + (~gold) * np.log(1 - probs + eps)).mean())
        acc = float((pred == gold).all(1).mean())
        return {"loss": loss, "accuracy": acc, "error": 100 * (1 - acc), "f1_micro": f1_micro,
                "f1_macro": f1_macro, "threshold": float(threshold)}
    # A label unseen in train (id -1) has no probability: such rows count as errors in accuracy
    # and are left out of the loss (indexing with -1 would score them on the last class).
    known = np.flatnonzero(labels >= 0)
    loss = float(-np.log(probs[known, labels[known]] + eps).mean()) if len(known) else float("nan")
    acc = float((probs.argmax(1) == labels).mean())
    return {"loss": loss, "accuracy": acc, "error": 100 * (1 - acc)}


def f1_scores(pred: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    """(micro F1, macro F1) of boolean [n, classes] predictions; a class with neither gold nor
    predicted positives scores 1 in the macro mean, since nothing was missed or invented."""
    tp, fp, fn = (pred & gold).sum(0), (pred & ~gold).sum(0), (~pred & gold).sum(0)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    denom = 2 * tp + fp + fn
    per_class = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0)
    return float(micro), float(per_class.mean())


THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


def tune_threshold(probs: np.ndarray, gold: np.ndarray) -> float:
    """The probability cut-off with the best micro F1 on (validation) data; ties go to the one
    nearest 0.5, so a flat optimum does not drift to an extreme."""
    gold = gold.astype(bool)
    best = max(THRESHOLD_GRID, key=lambda t: (round(f1_scores(probs >= t, gold)[0], 6), -abs(t - 0.5)))
    return float(best)


def all_negative_f1(gold: np.ndarray) -> float:
    """Micro F1 of predicting no label at all (0 when any gold label exists): the floor a
    multi-label model must clear."""
    return f1_scores(np.zeros_like(gold, dtype=bool), gold.astype(bool))[0]


def most_frequent_label_f1(train_gold: np.ndarray, gold: np.ndarray) -> float:
    """Micro F1 of giving every row the label most frequent in train."""
    pred = np.zeros_like(gold, dtype=bool)
    pred[:, int(train_gold.sum(0).argmax())] = True
    return f1_scores(pred, gold.astype(bool))[0]
