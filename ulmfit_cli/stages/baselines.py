"""The cheap baselines every classifier is scored against: the majority class, and TF-IDF (word
1-2-grams) + logistic regression fitted on the same training split (summary.json's `baselines`,
beside the models' `results`). A run that does not beat the linear model says so in its log and
summary.json, so nobody needs a separate script to find out.
"""
from __future__ import annotations

import logging

import numpy as np

from ..training.scoring import all_negative_f1, f1_scores, most_frequent_label_f1

log = logging.getLogger("ulmfit")

MAX_TFIDF_DOCS = 200_000  # beyond this the baseline is fitted on a random sample (memory, minutes)


def majority(ys: dict, multi: bool) -> dict:
    """What a model that ignores the text scores on test."""
    if multi:
        return {"all_negative_test_f1_micro": all_negative_f1(ys["test"]),
                "most_frequent_label_test_f1_micro": most_frequent_label_f1(ys["train"], ys["test"])}
    train = ys["train"][ys["train"] >= 0]
    return {"majority_test_accuracy": float(np.mean(ys["test"] == np.bincount(train).argmax()))}


def tfidf_logreg(texts: dict, ys: dict, multi: bool, seed: int = 0) -> dict:
    """val_/test_ accuracy and error (%) of TF-IDF + logistic regression (micro F1 too for multi-label)."""
    # scikit-learn takes about a second to import: only train-clf pays it, and only here
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    x, y = list(texts["train"]), ys["train"]
    keep = np.arange(len(x)) if multi else np.nonzero(y >= 0)[0]
    if len(keep) > MAX_TFIDF_DOCS:
        keep = np.sort(np.random.default_rng(seed).choice(keep, MAX_TFIDF_DOCS, replace=False))
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2 if len(keep) > 1000 else 1, sublinear_tf=True)
    train_x = vec.fit_transform([x[i] for i in keep])
    model = LogisticRegression(C=4.0, max_iter=2000)
    model = OneVsRestClassifier(model) if multi else model
    model.fit(train_x, y[keep].astype(int) if multi else y[keep])
    out = {}
    for split, prefix in (("valid", "val"), ("test", "test")):
        pred = model.predict(vec.transform(list(texts[split])))
        gold = ys[split]
        acc = float((pred == gold).all(1).mean() if multi else (pred == gold).mean())
        out.update({f"{prefix}_accuracy": acc, f"{prefix}_error": 100 * (1 - acc)})
        if multi:
            out[f"{prefix}_f1_micro"] = f1_scores(pred.astype(bool), gold.astype(bool))[0]
    out["train_docs"] = int(len(keep))
    return out


def check_beats(results: dict, baseline: dict, multi: bool) -> list[str]:
    """A warning for each of validation and test where the best model does worse than `baseline`."""
    best_name = "ensemble" if "ensemble" in results else next(iter(results))
    best, key = results[best_name], "f1_micro" if multi else "accuracy"
    warnings = []
    for prefix, split in (("val", "validation"), ("test", "test")):
        mine, theirs = best[f"{prefix}_{key}"], baseline[f"{prefix}_{key}"]
        if mine < theirs:
            warnings.append(f"the classifier ({best_name}) does not beat TF-IDF + logistic regression on {split}: "
                            f"{key} {mine:.4f} against {theirs:.4f}. On this data a linear model is the one to beat; "
                            "more LM fine-tuning, more classifier epochs or another schedule.lr may close the gap.")
    for w in warnings:
        log.warning(w)
    return warnings
