"""Every classifier is reported beside the majority class and TF-IDF + logistic regression fitted
on the same split, with a warning when the model does not beat the linear one."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FAST, ulmfit
from ulmfit_cli.stages.baselines import check_beats, majority, tfidf_logreg

WORDS = {0: ["great", "superb", "lovely", "fine"], 1: ["awful", "dull", "poor", "bad"], 2: ["long", "short", "old", "new"]}


def corpus(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    texts = [" ".join(rng.choice(WORDS[int(c)], 3)) + " the movie was here" for c in y]
    return texts, y


def test_tfidf_logreg_learns_a_lexical_task_and_reports_both_splits():
    (tr, ytr), (va, yva), (te, yte) = corpus(300, 0), corpus(60, 1), corpus(60, 2)
    yte[:6] = (yte[:6] + 1) % 3  # 6 of 60 test labels made wrong: at most 90% is possible
    out = tfidf_logreg({"train": tr, "valid": va, "test": te}, {"train": ytr, "valid": yva, "test": yte}, multi=False)
    assert out["val_accuracy"] == 1.0 and out["val_error"] == 0.0
    assert out["test_accuracy"] == pytest.approx(0.9) and out["test_error"] == pytest.approx(10.0)
    assert out["train_docs"] == 300


def test_majority_and_the_warning_when_the_model_loses():
    ys = {"train": np.array([0, 0, 1]), "test": np.array([0, 1, 1, 1])}
    assert majority(ys, multi=False) == {"majority_test_accuracy": 0.25}
    results = {"fwd": {"val_accuracy": 0.6, "test_accuracy": 0.9}, "bwd": {"val_accuracy": 0.5, "test_accuracy": 0.5},
               "ensemble": {"val_accuracy": 0.7, "test_accuracy": 0.95}}
    warnings = check_beats(results, {"val_accuracy": 0.8, "test_accuracy": 0.9}, multi=False)
    assert len(warnings) == 1 and "ensemble" in warnings[0] and "validation" in warnings[0] and "0.7000" in warnings[0]
    assert check_beats(results, {"val_accuracy": 0.1, "test_accuracy": 0.1}, multi=False) == []


def test_train_clf_summary_holds_the_tfidf_baseline(tmp_path):
    ulmfit("train-clf", *FAST, "lm=null", "bidirectional=fwd", "unfreeze=none", cwd=tmp_path)
    run = next((tmp_path / "outputs" / "train-clf").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    base = summary["baselines"]["tfidf_lr"]
    assert 0.5 < base["test_accuracy"] <= 1.0 and base["test_error"] == pytest.approx(100 * (1 - base["test_accuracy"]))
    assert 0 <= summary["majority_test_accuracy"] <= 1
    lost = summary["results"]["fwd"]["val_accuracy"] < base["val_accuracy"]
    assert lost == any("does not beat TF-IDF" in w for w in summary["warnings"])
