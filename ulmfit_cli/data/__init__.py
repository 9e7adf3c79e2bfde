"""Corpora in, TextDataset out (see types.py); nothing here knows about models."""
from __future__ import annotations

from .types import TextDataset


def load_dataset(cfg, data_root: str | None = None, lm_files: bool = True, index_dir=None) -> TextDataset:
    from .readers import load_dataset as read

    return read(cfg, data_root, lm_files=lm_files, index_dir=index_dir)


def load_pretraining_corpus(cfg, data_root: str | None = None, index_dir=None) -> TextDataset:
    """The general-domain text a `pretrain` run reads.

    For `dataset=sample` that is the sample's general-domain half (the labelled reviews are the
    target task), so one experiment config can drive all three stages of the quickstart.
    """
    if cfg.name == "sample":
        from .sample import generate_general_corpus

        return generate_general_corpus(cfg)
    # dataset.lm_files is target-task text for LM fine-tuning, never pretraining data.
    return load_dataset(cfg, data_root, lm_files=False, index_dir=index_dir)
