"""Corpus readers: turn the files of one dataset on disk into a `TextDataset`.

`load_dataset` is the entry point: it picks the corpus parser (corpora.py), adds the unlabelled text
of dataset.lm_files, and hands the result to splits.finish, which treats every corpus the same way.
The file formats live in formats.py. Bad input raises `UserError` naming the file or key and the
fix; recoverable oddities (undecodable bytes, empty rows, labels unseen in train) become strings in
`TextDataset.warnings`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ulmfit_cli.data.corpora import READERS, resolve, user_base
from ulmfit_cli.data.download_registry import default_data_root
from ulmfit_cli.data.formats import columns_split, decode, file_format, read_bytes, table_columns, text_columns
from ulmfit_cli.data.splits import check_numbers, finish
from ulmfit_cli.data.types import TextDataset
from ulmfit_cli.errors import UserError

__all__ = ["load_dataset"]


def load_dataset(cfg: Any, data_root: str | os.PathLike | None = None, lm_files: bool = True,
                 index_dir: Path | None = None) -> TextDataset:
    """Read the corpus `cfg.name` (a DatasetConfig or a DictConfig with the same fields).
    `lm_files=False` skips dataset.lm_files, for callers that never use `lm_extra`; `index_dir`:
    where to keep what was learned about a large file (see file_index), None for nowhere."""
    name = cfg.name
    if name == "sample":
        # Imported here so the readers do not depend on the synthetic generator, and vice versa.
        from ulmfit_cli.data.sample import generate_sample

        data = generate_sample(cfg)
        cap = cfg.max_docs
        extra = _read_lm_files(cfg, data.warnings) if lm_files else []
        data.lm_extra = (data.lm_extra + extra)[: int(cap) if cap else None]
        return data
    reader = READERS.get(name)
    if reader is None:
        raise UserError(
            f"Unknown dataset name {name!r} (dataset.name).",
            f"Use one of: sample, {', '.join(sorted(READERS))}.",
        )
    check_numbers(cfg)
    raw = reader(cfg, _dataset_dir(cfg, data_root), index_dir)
    raw.warnings = list(raw.warnings or [])
    raw.lm_extra = list(raw.lm_extra or []) + (_read_lm_files(cfg, raw.warnings) if lm_files else [])
    return finish(cfg, raw)


def _dataset_dir(cfg: Any, data_root: str | os.PathLike | None) -> Path:
    data_dir = cfg.data_dir
    if data_dir:
        return Path(data_dir).expanduser()
    root = Path(data_root).expanduser() if data_root else default_data_root()
    return root / cfg.name


def _txt_lines(path: Path, warnings: list[str]) -> list[str]:
    return [line.strip() for line in decode(read_bytes(path), path, warnings).splitlines() if line.strip()]


def _txt_folder(folder: Path, warnings: list[str]) -> list[str]:
    """One document per .txt file (IMDb's unsup/ layout), subfolders included, in path order."""
    texts, bad = [], 0
    for f in sorted(folder.rglob("*.txt")):
        raw = f.read_bytes()
        try:
            texts.append(raw.decode("utf-8-sig").strip())
        except UnicodeDecodeError:
            bad += 1
            texts.append(raw.decode("utf-8-sig", errors="replace").strip())
    if bad:
        warnings.append(f"{folder}: {bad} file(s) were not valid UTF-8; bad bytes were replaced by U+FFFD.")
    return texts


def _lm_file(path: Path, cfg: Any, warnings: list[str]) -> list[str]:
    if path.is_dir():
        return _txt_folder(path, warnings)
    fmt = file_format(path, cfg, "in dataset.lm_files", lm=True)
    if fmt == "txt":
        return _txt_lines(path, warnings)
    present, get_col = table_columns(path, fmt, warnings)
    missing = [c for c in text_columns(cfg) if c not in present]
    if missing:
        raise UserError(
            f"{path} (in dataset.lm_files) has no column {missing[0]!r}; its columns are {[str(c) for c in present]}.",
            "lm_files tables are read with the same dataset.text_cols as the labelled files: "
            f"rename the column to {missing[0]!r}, or save the texts as .txt (one document per line).",
        )
    return columns_split(str(path), present, get_col, cfg, labelled=False).texts


def _read_lm_files(cfg: Any, warnings: list[str]) -> list[str]:
    """The texts of dataset.lm_files, in the order given: unlabelled text that LM fine-tuning adds
    to the training text (like IMDb's unsup reviews), so `use_unsup=false` leaves them out."""
    names = cfg.lm_files or []
    names = [names] if isinstance(names, str) else list(names)
    if not names or not bool(cfg.use_unsup):
        return []
    base = user_base(cfg)
    texts: list[str] = []
    for name in names:
        path = resolve(base, str(name))
        if not path.exists():
            raise UserError(
                f"{path} (in dataset.lm_files) does not exist.",
                "Fix the entry of dataset.lm_files= (relative paths are resolved against dataset.data_dir=, "
                "else the current folder).",
            )
        docs = [t for t in _lm_file(path, cfg, warnings) if t is not None and str(t).strip()]
        if not docs:
            what = "no text (no .txt file with any)" if path.is_dir() else "no text"
            raise UserError(f"{path} (in dataset.lm_files) holds {what}.",
                            "Remove it from dataset.lm_files= or put documents in it.")
        texts.extend(str(t) for t in docs)
    return texts
