"""Every metric a run records, declared once: what it is, which way is better, which stages write it.

metrics.csv's columns are the declarations with `in_csv`, in this order; the trackers get a row's
declared figures; summary.json's figures are `<val|test>_<metric>` of declared metrics; `ulmfit report`
and keep_best/early_stopping read `higher_is_better`. A row or a result with an undeclared key is an
error under ULMFIT_STRICT_METRICS=1 (the tests set it); a run warns and still records it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

LM_STAGES = ("pretrain", "finetune-lm")
ALL_STAGES = (*LM_STAGES, "train-clf")
STRICT_ENV = "ULMFIT_STRICT_METRICS"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # key (names the row) | float | int | text
    higher_is_better: bool | None  # None: not a score (a setting, a count, a timing)
    stages: tuple[str, ...]
    meaning: str
    # a metrics.csv column; False: a row may carry it (the trackers get it) but metrics.csv leaves it out
    in_csv: bool = True
    timing: bool = False  # wall-clock: differs between identical runs


def _declare(*metrics: Metric) -> dict[str, Metric]:
    return {m.name: m for m in metrics}


METRICS = _declare(
    Metric("stage", "key", None, ALL_STAGES, "the stage that wrote the row"),
    Metric("direction", "key", None, ALL_STAGES, "fwd or bwd: the direction of the model the row is about"),
    Metric("epoch", "key", None, ALL_STAGES, "epochs finished when the row was measured"),
    Metric("step", "key", None, ALL_STAGES, "optimizer steps finished when the row was measured"),
    Metric("split", "key", None, ALL_STAGES, "train (means over the epoch), valid or test"),
    Metric("loss", "float", False, ALL_STAGES, "cross-entropy (BCE for multi-label); train rows without AR/TAR"),
    Metric("accuracy", "float", True, ALL_STAGES, "next-token accuracy (LMs); exact-match accuracy (classifiers)"),
    Metric("perplexity", "float", False, LM_STAGES, "exp(loss) of the language model"),
    Metric("lr", "float", None, ALL_STAGES, "learning rate of the top layer group at the row's step"),
    Metric("throughput", "float", None, ALL_STAGES, "tokens/s (LMs) or examples/s (classifiers) while training",
           timing=True),
    Metric("elapsed_s", "float", None, ALL_STAGES, "seconds of training (and evaluating) of this direction so far",
           timing=True),
    Metric("grad_norm", "float", None, ALL_STAGES, "mean gradient norm over the epoch's steps, before clipping"),
    Metric("skipped_batches", "int", None, ALL_STAGES, "batches skipped for a non-finite loss (train.on_nan=skip)"),
    Metric("f1_micro", "float", True, ("train-clf",), "micro-averaged F1 at the tuned threshold (multi-label)"),
    Metric("f1_macro", "float", True, ("train-clf",), "macro-averaged F1 at the tuned threshold (multi-label)"),
    Metric("error", "float", False, ("train-clf",), "100 x (1 - accuracy): the paper's test error in %",
           in_csv=False),
    Metric("threshold", "float", None, ("train-clf",), "probability cut-off tuned on validation (multi-label)",
           in_csv=False),
)
CSV_COLUMNS = [m.name for m in METRICS.values() if m.in_csv]
SPLITS = ("val", "test")  # summary.json's figures: <split>_<metric>


def strict() -> bool:
    """Whether an undeclared key raises (tests) rather than being warned about and recorded."""
    return os.environ.get(STRICT_ENV, "") not in ("", "0")


def metric_of(name: str) -> Metric | None:
    """The declared metric a figure's name is about: `fwd.val_error`, `test_f1_micro`,
    `majority_test_accuracy`, `accuracy` (None for a name that measures no declared metric)."""
    base = name.rsplit(".", 1)[-1]
    ends = [m for m in METRICS.values() if m.kind != "key" and (base == m.name or base.endswith("_" + m.name))]
    return max(ends, key=lambda m: len(m.name)) if ends else None


def higher_is_better(name: str) -> bool | None:
    """Which way `name` (a metrics.csv column or a summary figure as sweep.csv names it) is better;
    None for a figure that is not a score or not declared."""
    m = metric_of(name)
    return m.higher_is_better if m else None


def undeclared_figures(results: dict) -> list[str]:
    """The `<split>_<metric>` keys of one direction's results whose metric is not declared."""
    out = []
    for key in results:
        split, _, metric = key.partition("_")
        if split in SPLITS and metric not in METRICS:
            out.append(key)
    return out
