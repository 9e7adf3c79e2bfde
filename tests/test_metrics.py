"""A metric is declared once (training/metrics.py): metrics.csv's columns, the trackers' figures, the
report's direction and summary.json's figures follow from it; an undeclared key is an error in the
tests (conftest sets ULMFIT_STRICT_METRICS) and a warning plus a recorded column in a user's run."""
from __future__ import annotations

import csv
import logging
import json

import pytest

from ulmfit_cli.reporting.run_files import MetricsWriter, write_summary
from ulmfit_cli.reporting.trackers.common import row_metrics
from ulmfit_cli.training.metrics import CSV_COLUMNS, METRICS, higher_is_better

# DESIGN.md's outputs contract: metrics.csv has at least these, first, in this order.
CONTRACT = ["stage", "direction", "epoch", "step", "split", "loss", "accuracy", "perplexity", "lr", "throughput",
            "elapsed_s"]


def read(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_columns_are_the_declared_ones_in_order():
    assert CSV_COLUMNS == CONTRACT + ["grad_norm", "skipped_batches", "f1_micro", "f1_macro"]
    assert all(METRICS[c].in_csv for c in CSV_COLUMNS) and not METRICS["error"].in_csv


def test_directions_of_summary_figures():
    assert [higher_is_better(m) for m in ("fwd.val_accuracy", "ensemble.test_error", "fwd.val_perplexity",
                                          "val_f1_macro", "majority_test_accuracy", "tfidf_lr.val_loss",
                                          "wall_time_s", "lr")] == [True, False, False, True, True, False, None, None]


def test_an_undeclared_key_is_an_error_under_strict_and_nothing_is_written(tmp_path):
    w = MetricsWriter(tmp_path / "metrics.csv", stage="train-clf")
    w({"direction": "fwd", "epoch": 1, "step": 3, "split": "valid", "loss": 0.5})
    with pytest.raises(ValueError, match=r"undeclared metric\(s\) auroc; declare each in ulmfit_cli/training/metrics"):
        w({"direction": "fwd", "epoch": 2, "step": 6, "split": "valid", "loss": 0.4, "auroc": 0.9})
    assert len(read(tmp_path / "metrics.csv")) == 2  # the header and the first row only


def test_without_strict_an_undeclared_key_is_warned_about_and_kept_in_a_new_column(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("ULMFIT_STRICT_METRICS")
    w = MetricsWriter(tmp_path / "metrics.csv", stage="train-clf")
    w({"direction": "fwd", "epoch": 1, "step": 3, "split": "valid", "loss": 0.5, "error": 12.5})  # declared, not a column
    with caplog.at_level(logging.WARNING, logger="ulmfit"):
        w({"direction": "fwd", "epoch": 2, "step": 6, "split": "valid", "loss": 0.25, "auroc": 0.875})
    assert "undeclared metric(s) auroc" in caplog.text
    rows = read(tmp_path / "metrics.csv")
    assert rows[0] == CSV_COLUMNS + ["auroc"]
    assert [r[rows[0].index("loss")] for r in rows[1:]] == ["0.5", "0.25"]
    assert [r[-1] for r in rows[1:]] == ["", "0.875"]
    again = MetricsWriter(tmp_path / "metrics.csv", stage="train-clf")  # a resumed run keeps the column
    again({"direction": "fwd", "epoch": 3, "step": 9, "split": "valid", "auroc": 0.5})
    assert read(tmp_path / "metrics.csv")[-1][-1] == "0.5" and again.rows() == 3


def test_trackers_get_the_figures_not_the_keys_that_name_the_row():
    step, figures = row_metrics({"stage": "pretrain", "direction": "bwd", "epoch": 2, "step": 40, "split": "valid",
                                 "loss": 1.5, "perplexity": 4.5, "error": 10.0})
    assert step == 40 and figures == {"bwd/valid/loss": 1.5, "bwd/valid/perplexity": 4.5, "bwd/valid/error": 10.0,
                                      "bwd/epoch": 2.0}


def test_summary_figures_must_be_declared(tmp_path):
    common = dict(stage="train-clf", started_from=None, wall_time_s=1.0, device="cpu", precision="fp32")
    write_summary(tmp_path, results={"fwd": {"val_error": 5.0, "test_f1_micro": 0.5, "epochs": 3}}, **common)
    assert json.loads((tmp_path / "summary.json").read_text())["results"]["fwd"]["val_error"] == 5.0
    with pytest.raises(ValueError, match=r"summary.json's results.fwd has undeclared metric\(s\) val_auroc"):
        write_summary(tmp_path / "x", results={"fwd": {"val_auroc": 0.5}}, **common)
