"""train-clf scores the final weights on validation once: the last epoch's evaluation is reused
for the summary and the saved threshold, not recomputed (a full pass over e.g. 25k IMDb reviews)."""
from __future__ import annotations

import csv
import json
import sys

from conftest import FAST
from ulmfit_cli.commands import hydra_app
from ulmfit_cli.stages import train_clf


def test_final_valid_scores_reuse_the_last_evaluation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["ulmfit"])
    calls = []
    real = train_clf.sharded_predict_proba

    def counting(model, docs, ranks, **kw):
        calls.append(docs[0].tobytes())  # which split: valid and test differ in their first document
        return real(model, docs, ranks, **kw)

    monkeypatch.setattr(train_clf, "sharded_predict_proba", counting)
    hydra_app.run_stage("train-clf", [*FAST, "lm=null", "bidirectional=fwd", "unfreeze=none", "train.epochs=2",
                                "dataset.max_docs=120"])
    run = next((tmp_path / "outputs" / "train-clf").iterdir())
    # 2 epoch-end evaluations on valid + 1 final pass on test; no second pass over valid
    assert len(calls) == 3 and calls[0] == calls[1] != calls[2], len(calls)
    last_valid = [r for r in csv.DictReader(open(run / "metrics.csv")) if r["split"] == "valid"][-1]
    final = json.loads((run / "summary.json").read_text())["results"]["fwd"]
    assert abs(final["val_loss"] - float(last_valid["loss"])) < 1e-5
    assert abs(final["val_accuracy"] - float(last_valid["accuracy"])) < 1e-5
