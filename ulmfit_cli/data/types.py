"""The one in-memory shape every corpus reader returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


@dataclass
class TextDataset:
    """Texts and (optional) labels of one corpus, split three ways.

    `lm_extra` holds unlabelled text used only for language modelling (e.g. IMDb's 50k
    `unsup` reviews, the files of `dataset.lm_files`). Labels are strings (class names); `classes` lists them in a fixed,
    sorted order. A pure LM corpus (WikiText) has labels None and classes [].
    For multi-label datasets each label is a list of strings. A large plain-text corpus's texts
    are a `FileTexts`: a Sequence whose documents are read from the file when they are used.
    """

    name: str
    train_texts: Sequence[str]
    valid_texts: Sequence[str]
    test_texts: Sequence[str]
    train_labels: list | None = None
    valid_labels: list | None = None
    test_labels: list | None = None
    lm_extra: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return self.train_labels is not None


def joined(*parts: Sequence[str]) -> Sequence[str]:
    """The texts of `parts` in order: the one part that has any as it is (a `FileTexts` then stays
    on disk, where a list would hold the corpus in memory), else a list of them all."""
    nonempty = [p for p in parts if len(p)]
    if len(nonempty) == 1:
        return nonempty[0]
    return [t for p in nonempty for t in p]
