"""The scores of class probabilities against gold labels: loss, accuracy and error, multi-label F1,
the threshold tuned on validation, and the F1 of the trivial multi-label baselines.

What each figure means and which way is better is declared in training/metrics.py.
"""
from __future__ import annotations

import numpy as np


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
