"""Split and label normalisation: what every corpus goes through once its files are parsed.

A parser (corpora.py) hands back a `Raw` of `Split`s; `finish` drops rows that cannot be trained on,
parses multi-labels, carves valid/test out of train where the corpus has none, applies the caps and
fixes the class list, so every corpus behaves the same way. Recoverable oddities (empty rows, labels
unseen in train) become strings in `TextDataset.warnings`.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ulmfit_cli.data.types import TextDataset
from ulmfit_cli.errors import UserError


@dataclass
class Split:
    """One split as read from disk; `source` is what error messages and warnings name."""

    texts: Sequence[str]  # a list, or documents read from their file on demand (FileTexts)
    labels: list | None
    source: str


@dataclass
class Raw:
    """What a reader found. A split left None is carved out of train by `finish`."""

    train: Split
    valid: Split | None = None
    test: Split | None = None
    lm_extra: list[str] | None = None
    warnings: list[str] | None = None


def check_numbers(cfg: Any) -> None:
    frac = cfg.valid_frac
    if not 0 <= float(frac) < 0.5:
        raise UserError(
            f"dataset.valid_frac={frac} is out of range.", "Use a fraction in [0, 0.5), e.g. dataset.valid_frac=0.1."
        )
    for key in ("max_train_examples", "max_docs"):
        value = getattr(cfg, key)
        if value is not None and int(value) < 1:
            raise UserError(f"dataset.{key}={value} must be a positive number.", f"Use dataset.{key}=null for no cap.")


_FLOAT_INTEGER = re.compile(r"-?\d+\.0+")


def _label_name(label: Any) -> str:
    """A label as text. `1.0` is `1`: a label column with one empty cell is float to pandas and
    parquet, so one file says 1.0 where the others say 1, and they must be one class."""
    text = str(label).strip()
    return text.split(".")[0] if _FLOAT_INTEGER.fullmatch(text) else text


def normalise(split: Split, cfg: Any, warnings: list[str]) -> Split:
    """Drop rows that cannot be trained on (empty text, missing label) and parse multi-labels."""
    if split.labels is None and getattr(split.texts, "all_nonblank", False):
        return split  # documents read from a file on demand, each made with text in it
    multi, sep = bool(cfg.multi_label), str(cfg.label_sep)
    texts: list[str] = []
    labels: list | None = [] if split.labels is not None else None
    empty_text = empty_label = 0
    for i, text in enumerate(split.texts):
        text = "" if text is None else str(text)
        if not text.strip():
            empty_text += 1
            continue
        if labels is not None:
            label = split.labels[i]
            if multi:
                parts = label if isinstance(label, (list, tuple)) else ([] if label is None else str(label).split(sep))
                label = sorted({_label_name(p) for p in parts if str(p).strip()})
            else:
                label = "" if label is None else _label_name(label)
                if not label:
                    empty_label += 1
                    continue
            labels.append(label)
        texts.append(text)
    if empty_text:
        warnings.append(f"{split.source}: dropped {empty_text} row(s) with empty text.")
    if empty_label:
        warnings.append(f"{split.source}: dropped {empty_label} row(s) with an empty label.")
    if not texts:
        raise UserError(
            f"{split.source} holds no usable rows (no rows, or every text/label is empty).",
            "Check the file and dataset.text_cols= / dataset.label_col=.",
        )
    return Split(texts, labels, split.source)


def _take(split: Split, idx: list[int], source: str | None = None) -> Split:
    labels = [split.labels[i] for i in idx] if split.labels is not None else None
    take = getattr(split.texts, "take", None)  # documents read on demand stay so
    return Split(take(idx) if take else [split.texts[i] for i in idx], labels, source or split.source)


def _carve(train: Split, n: int, what: str) -> tuple[Split, Split]:
    """The first n rows of the shuffled train split become `what`; the rest stay train."""
    head = _take(train, list(range(n)), f"{train.source} (carved {what})")
    return head, _take(train, list(range(n, len(train.texts))))


def _subset(split: Split, n: int | None, seed: int) -> Split:
    """A seeded random subset kept in file order: a sorted file (IMDb: all neg, then all pos)
    must not turn into one class when capped."""
    if n is None or len(split.texts) <= n:
        return split
    return _take(split, sorted(random.Random(seed).sample(range(len(split.texts)), n)))


def _label_set(labels: list) -> set[str]:
    out: set[str] = set()
    for label in labels:
        out.update(label) if isinstance(label, list) else out.add(label)
    return out


def _split_three_ways(train: Split, valid: Split | None, test: Split | None, seed: int,
                      frac: float) -> tuple[Split, Split, Split]:
    """Shuffle train once with split_seed (so carving and max_train_examples take random rows, the
    same every time), then carve the splits the dataset does not have from it."""
    order = list(range(len(train.texts)))
    random.Random(seed).shuffle(order)
    train = _take(train, order)
    n_carve = int(round(len(order) * frac))
    if frac > 0:
        n_carve = max(1, n_carve)
    carves = (valid is None) + (test is None)
    if carves and len(order) - carves * n_carve < 1:
        raise UserError(
            f"{train.source} has only {len(order)} usable row(s), too few to carve valid/test with valid_frac={frac}.",
            "Add rows, or give dataset.valid_file= / dataset.test_file=.",
        )
    if valid is None:
        valid, train = _carve(train, n_carve, "valid")
    if test is None:
        test, train = _carve(train, n_carve, "test")
    return train, valid, test


def _classes(source: str, train: Split, valid: Split, test: Split, warnings: list[str]) -> list[str]:
    """The classes of the whole train split (before the caps, so a quick capped run keeps the same
    label set and indices as the full one); labels only valid/test have are a warning."""
    if train.labels is None:
        return []
    classes = sorted(_label_set(train.labels))
    if len(classes) < 2:
        raise UserError(
            f"The labels of {source} hold only {len(classes)} class(es) {classes}; a classifier needs two or more.",
            "Check dataset.label_col= names the label column (or set it to null for an unlabelled LM corpus).",
        )
    for split, what in ((valid, "valid"), (test, "test")):
        warn_unseen(split, what, classes, warnings)
    return classes


def warn_unseen(split: Split, what: str, classes: list[str], warnings: list[str]) -> None:
    if split.labels is None:
        return
    known = set(classes)
    unseen = [lab for lab in split.labels if not _label_set([lab]) <= known]
    if unseen:
        names = sorted(_label_set(unseen) - known)
        more = f" (and {len(names) - 5} more)" if len(names) > 5 else ""
        how = ("those labels are left out of the scores" if isinstance(unseen[0], (list, tuple)) else
               "these rows count as errors in accuracy and are left out of the loss")
        warnings.append(f"{split.source}: {len(unseen)} {what} row(s) carry labels not seen in train: "
                        f"{names[:5]}{more}; {how}.")


def finish(cfg: Any, raw: Raw) -> TextDataset:
    warnings = list(raw.warnings or [])
    seed = int(cfg.split_seed)
    train = normalise(raw.train, cfg, warnings)
    valid = normalise(raw.valid, cfg, warnings) if raw.valid is not None else None
    test = normalise(raw.test, cfg, warnings) if raw.test is not None else None
    if test is not None and Path(test.source).resolve() == Path(train.source).resolve():
        # Evaluating on the training rows would report a meaningless score.
        warnings.append(
            f"The train and test files are the same ({train.source}); carving a test split from it instead."
        )
        test = None
    train, valid, test = _split_three_ways(train, valid, test, seed, float(cfg.valid_frac))
    classes = _classes(raw.train.source, train, valid, test, warnings)

    # max_train_examples keeps the first rows of the already shuffled train split; max_docs caps
    # every split (train included) for quick experiments.
    for cap in (cfg.max_train_examples, cfg.max_docs):
        if cap is not None:
            train = _take(train, list(range(min(int(cap), len(train.texts)))))
    doc_cap = int(cfg.max_docs) if cfg.max_docs is not None else None
    valid, test = _subset(valid, doc_cap, seed), _subset(test, doc_cap, seed)
    lm_extra = [t for t in (raw.lm_extra or []) if t and t.strip()][:doc_cap]
    return TextDataset(name=str(cfg.name), train_texts=train.texts, valid_texts=valid.texts, test_texts=test.texts,
                       train_labels=train.labels, valid_labels=valid.labels, test_labels=test.labels,
                       lm_extra=lm_extra, classes=classes, warnings=warnings)
