"""Hugging Face `datasets` as a source of splits (dataset=hf): the optional extra `.[hf]`.

This module only turns a hub name or a local folder into one column table per ulmfit split;
corpora.py joins its text columns as formats.py does a CSV's, and splits.py checks labels and carves
missing splits as for any corpus.
Nothing here reaches the network by itself: a hub name goes through `load_dataset`, which
reads the local HF cache and honours HF_DATASETS_OFFLINE / HF_HUB_OFFLINE.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ulmfit_cli.errors import UserError

__all__ = ["Table", "hf_tables"]

# Used when dataset.split_map is not set: each ulmfit split from the HF split of the usual name,
# where the dataset has it; a missing valid/test is carved from train by the reader.
DEFAULT_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
# `lm` maps a split to unlabelled LM text (e.g. {lm: unsupervised} for the hub's imdb).
KNOWN_KEYS = ("train", "valid", "test", "lm")


@dataclass
class Table:
    """One split: `source` names it in messages, `get(col)` gives a column as Python values."""

    source: str
    columns: list[str]
    get: Callable[[str], list]


def _import_datasets():
    try:
        import datasets
    except ImportError as exc:
        raise UserError(
            "dataset=hf needs the Hugging Face `datasets` package, which is not installed.",
            "Install it with pip install -e '.[hf]' (or pip install 'datasets>=2.14').",
        ) from exc
    return datasets


def _looks_like_path(name: str) -> bool:
    """Hub names are `name` or `owner/name`; anything else is meant as a folder on disk."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def _load(datasets: Any, path: str, subset: str | None, base: Path | None) -> dict:
    local = Path(path).expanduser()
    if not local.is_absolute() and base is not None:
        local = base / local
    if not local.exists() and _looks_like_path(path):
        raise UserError(
            f"dataset.path={path}: no such folder ({local}).",
            "Point dataset.path= at a folder written by save_to_disk (relative paths start at dataset.data_dir=, "
            "else the current folder), or give a hub name such as imdb.",
        )
    saved = (local / "dataset_dict.json").is_file() or (local / "state.json").is_file()
    try:
        if saved:
            loaded = datasets.load_from_disk(str(local))
        else:  # a hub name (from the HF cache when offline), or a folder of data files
            loaded = datasets.load_dataset(str(local) if local.exists() else path, subset)
    except Exception as exc:  # the library raises many types; each means "could not load this"
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UserError(
            f"dataset.path={path}: Hugging Face datasets could not load it ({type(exc).__name__}: {detail}).",
            "Check the name (and dataset.subset= for a dataset with several configurations). With "
            "HF_DATASETS_OFFLINE=1 only datasets already in the local HF cache load; "
            "a save_to_disk folder always does.",
        ) from exc
    if isinstance(loaded, datasets.Dataset):  # one split saved on its own
        return {"train": loaded}
    return dict(loaded)


def _mapping(split_map: dict | None, found: dict, path: str) -> dict[str, str]:
    names = sorted(found)
    if split_map is None:
        mapping = {ours: theirs for ours, theirs in DEFAULT_SPLITS.items() if theirs in found}
        if "train" not in mapping:
            raise UserError(
                f"dataset.path={path} has no 'train' split; its splits are {names}.",
                "Name the split to train on: dataset.split_map={train: <split>} "
                "(valid and test are then carved from it).",
            )
        return mapping
    pairs = list(split_map.items()) if hasattr(split_map, "items") else None
    mapping = {str(k): v for k, v in pairs or []}
    unknown = sorted(set(mapping) - set(KNOWN_KEYS))
    if pairs is None or unknown or "train" not in mapping or not all(isinstance(v, str) for v in mapping.values()):
        what = ("is not a mapping" if pairs is None else f"has unknown key(s) {unknown}" if unknown
                else "has no train entry" if "train" not in mapping else "maps a split to something other than a name")
        raise UserError(
            f"dataset.split_map={split_map} {what}.",
            "Its keys are train (required), valid, test and lm (unlabelled LM text), e.g. "
            "dataset.split_map={train: train, valid: validation, test: test}.",
        )
    for ours, theirs in mapping.items():
        if theirs not in found:
            instead = {"train": "", "lm": ", or leave lm out of dataset.split_map"}.get(
                ours, f", or leave {ours} out of dataset.split_map to carve it from train (dataset.valid_frac)")
            raise UserError(
                f"dataset.split_map.{ours}={theirs}: {path} has no split {theirs!r}; its splits are {names}.",
                f"Map {ours} to one of them{instead}.",
            )
    return mapping


def _class_names(datasets: Any, feature: Any) -> list[str] | None:
    """The names behind a ClassLabel column (or a list of ClassLabels, multi-label); else None."""
    if isinstance(feature, list) and len(feature) == 1:
        feature = feature[0]
    inner = getattr(feature, "feature", feature)  # Sequence / List wrap the element's feature
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


def _named(value: Any, names: list[str]) -> Any:
    """A ClassLabel index as its name; -1 (no label, as in hidden test sets) as None."""
    if isinstance(value, (list, tuple)):
        return [names[v] for v in value if v is not None and 0 <= v < len(names)]
    return names[value] if value is not None and 0 <= value < len(names) else None


def _table(datasets: Any, ds: Any, source: str) -> Table:
    def get(col: str) -> list:
        values = list(ds[col])
        names = _class_names(datasets, ds.features.get(col))
        if names is None:
            return values
        named = [_named(v, names) for v in values]
        if values and all(v is None for v in named):
            raise UserError(
                f"{source}: every value of the ClassLabel column {col!r} is -1 (no label), as in test sets "
                "whose labels are withheld.",
                "Leave that split out of dataset.split_map to carve it from train, e.g. "
                "dataset.split_map={train: train, valid: validation}.",
            )
        return named

    return Table(source, list(ds.column_names), get)


def hf_tables(path: str, subset: str | None, split_map: dict | None, base: Path | None) -> dict[str, Table]:
    """ulmfit split name (train, valid, test, lm) -> its Table, for the splits the map names."""
    datasets = _import_datasets()
    found = _load(datasets, path, subset, base)
    mapping = _mapping(split_map, found, path)
    return {ours: _table(datasets, found[theirs], f"{path} (split {theirs!r})") for ours, theirs in mapping.items()}
