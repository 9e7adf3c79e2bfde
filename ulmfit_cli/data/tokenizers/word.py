"""The word tokenizer (`tokenizer=word`): fastai-style rules (word_rules.py) and a vocabulary of the
most frequent tokens."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ...errors import UserError
from .ids import IdWriter
from .pool import imap_chunks, map_chunks, n_workers, worth_it
from .base import STATE_VERSION, TOKENIZERS, Numericalizer, as_sequence, cfg_get
from .specials import SPECIAL_TOKENS, UNK, UNK_ID
from .word_rules import word_detokenize, word_tokenize


class _StoI(dict):
    """dict whose missing keys map to UNK_ID (so `map(stoi.__getitem__, toks)` stays in C)."""

    def __missing__(self, key: str) -> int:
        return UNK_ID


class WordNumericalizer(Numericalizer):
    kind = "word"

    def __init__(self, itos: Sequence[str], max_vocab: int | None = None, min_freq: int | None = None):
        itos = list(itos)
        if itos[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ValueError("a word vocabulary must start with the 9 special tokens in order")
        self.itos = itos
        self.stoi = _StoI({t: i for i, t in enumerate(itos)})
        if len(self.stoi) != len(itos):
            raise ValueError("duplicate tokens in the word vocabulary")
        self.max_vocab = max_vocab
        self.min_freq = min_freq

    @classmethod
    def from_counter(cls, counts: Counter, max_vocab: int = 60000, min_freq: int = 2) -> "WordNumericalizer":
        if max_vocab < len(SPECIAL_TOKENS):
            raise UserError(f"tokenizer.max_vocab={max_vocab} is smaller than the "
                            f"{len(SPECIAL_TOKENS)} special tokens.", "Set tokenizer.max_vocab to at least 9.")
        min_freq = max(1, int(min_freq))
        specials = set(SPECIAL_TOKENS)
        cands = [(t, c) for t, c in counts.items() if c >= min_freq and t not in specials]
        cands.sort(key=lambda tc: (-tc[1], tc[0]))  # most frequent first, ties alphabetical
        itos = SPECIAL_TOKENS + [t for t, _ in cands[: max_vocab - len(SPECIAL_TOKENS)]]
        return cls(itos, max_vocab=max_vocab, min_freq=min_freq)

    def tokenize(self, text: str) -> list[str]:
        return word_tokenize(text)

    def encode(self, text: str) -> np.ndarray:
        return np.array(list(map(self.stoi.__getitem__, word_tokenize(text))), dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        itos, n = self.itos, len(self.itos)
        return word_detokenize([itos[i] if 0 <= i < n else UNK for i in (int(x) for x in ids)])

    def state(self) -> dict:
        return {"kind": "word", "version": STATE_VERSION, "itos": list(self.itos),
                "max_vocab": self.max_vocab, "min_freq": self.min_freq}

    @classmethod
    def from_state(cls, state: dict) -> "WordNumericalizer":
        return cls(state["itos"], max_vocab=state.get("max_vocab"), min_freq=state.get("min_freq"))



def count_tokens(texts: list[str]) -> Counter:
    c: Counter = Counter()
    for t in texts:
        c.update(word_tokenize(t))
    return c


class _Grow(dict):
    """dict that numbers each new key as it is first looked up (a chunk's own, local vocabulary)."""

    def __missing__(self, key: str) -> int:
        self[key] = n = len(self)
        return n


def tokenize_chunk(texts: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every text's tokens as ids into a vocabulary of this chunk's own: (its tokens in id order,
    the ids of all texts concatenated (int32), each text's token count (int64))."""
    local = _Grow()
    get = local.__getitem__
    ids: list[int] = []
    lens = np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        before = len(ids)
        ids.extend(map(get, word_tokenize(t)))
        lens[i] = len(ids) - before
    return list(local), np.array(ids, dtype=np.int32), lens


def vocabulary(counts: Counter, cfg) -> WordNumericalizer:
    """The numericalizer of `counts` under the `tokenizer.max_vocab` / `min_freq` of `cfg`."""
    return WordNumericalizer.from_counter(counts, max_vocab=int(cfg_get(cfg, "max_vocab", 60000)),
                                          min_freq=int(cfg_get(cfg, "min_freq", 2)))


def check_has_text(total_tokens: int, n_texts: int) -> None:
    if total_tokens <= n_texts:  # only xxbos tokens
        raise UserError("The corpus given to the word tokenizer has no text.",
                        "Check the dataset's text columns.")


def fit_encode_word(texts: Sequence[str], cfg, workers: int = 1,
                    out: Path | None = None) -> tuple[WordNumericalizer, np.ndarray, np.ndarray]:
    """`fit_word` and `encode_many` in one tokenization pass. Each chunk of texts is tokenized once
    into ids of its own; here its tokens get corpus-wide provisional ids (numbered as first seen),
    counted and written out (`IdWriter`: to `out`, a .npy file, when given), and the chunk is let
    go. The counts make the vocabulary; a table from provisional ids onto it (UNK for what it left
    out) then gives what `encode` gives text by text. What is held at once is one chunk and the
    corpus's distinct tokens, however large the corpus.
    Returns (numericalizer, every text's ids concatenated (int32), each text's length (int64))."""
    nw = n_workers(workers)
    parts = imap_chunks(tokenize_chunk, texts, nw if worth_it(texts, nw) else 1)
    seen, counts, lens = _Grow(), np.zeros(0, np.int64), []
    writer = IdWriter(out)
    try:
        for local, ids, chunk_lens in parts:
            provisional = np.fromiter(map(seen.__getitem__, local), dtype=np.int32, count=len(local))[ids]
            more = np.bincount(provisional, minlength=len(seen))  # as long as `seen`, which only grows
            more[:len(counts)] += counts
            counts = more
            writer.append(provisional)
            lens.append(chunk_lens)
        check_has_text(int(counts.sum()), len(texts))
        num = vocabulary(Counter(dict(zip(seen, counts.tolist()))), cfg)
        table = np.fromiter(map(num.stoi.__getitem__, seen), dtype=np.int32, count=len(seen))
        flat = writer.finish(table)
    except BaseException:
        writer.discard()
        raise
    return num, flat, np.concatenate(lens) if lens else np.zeros(0, np.int64)


@TOKENIZERS.register("word", reads=("max_vocab", "min_freq"), load=WordNumericalizer.from_state,
                     fit_encode=fit_encode_word)
def fit_word(texts: Iterable[str], cfg, workers: int = 1) -> WordNumericalizer:
    """fastai-style rules (xxmaj, xxup, xxrep, xxwrep, xxbos) and the max_vocab most frequent tokens
    seen min_freq times."""
    texts = as_sequence(texts)
    nw = n_workers(workers)
    counts: Counter = Counter()
    for part in (map_chunks(count_tokens, texts, nw) if worth_it(texts, nw) else [count_tokens(texts)]):
        counts.update(part)
    check_has_text(sum(counts.values()), len(texts))
    return vocabulary(counts, cfg)
