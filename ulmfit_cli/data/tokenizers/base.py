"""What every tokenizer shares: the `Numericalizer` interface, the registry of tokenizers by name
(`tokenizer=word|spm`) and the way back from a checkpoint's state.

A `Numericalizer`'s whole state is plain data (str/int/float/bool/list/dict/bytes), so it can be
stored in a checkpoint that is loaded with ``torch.load(weights_only=True)`` and rebuilt with
`numericalizer_from_state`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ...errors import UserError
from ...registry import Registry
from .ids import IdWriter
from .pool import chunks, encode_in_workers, n_workers, worth_it
from .specials import BOS_ID, EOS_ID, PAD_ID, UNK_ID

STATE_VERSION = 1
# Each tokenizer's builder fit(texts, cfg, workers) -> Numericalizer, the `tokenizer.*` knobs it reads,
# and `load`: its Numericalizer from a checkpoint's state (the state's "kind" is the name).
TOKENIZERS = Registry("tokenizer")


def cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    """A key of a TokenizerConfig, DictConfig or dict; `default` where it is absent or unset."""
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    try:
        return getattr(cfg, key)
    except AttributeError:
        return default
    except Exception:  # omegaconf missing value etc.
        return default


class Numericalizer:
    """text -> np.int32 ids (first id is xxbos) and back; state is plain data."""

    kind: str = ""
    itos: list[str]
    stoi: dict[str, int]

    pad_id = PAD_ID
    bos_id = BOS_ID
    unk_id = UNK_ID
    eos_id = EOS_ID

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def state(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def identity(self) -> str:
        """sha256 hex of the itos list: equal identities <=> same id -> token mapping."""
        return itos_identity(self.itos)

    def encode_many(self, texts: Sequence[str], workers: int = 1) -> list[np.ndarray]:
        """Encode every text; results in input order. Uses worker processes when workers > 1
        and the input holds at least pool.PARALLEL_MIN_CHARS characters."""
        return [ids for part in self.encode_chunks(texts, workers) for ids in part]

    def encode_chunks(self, texts: Sequence[str], workers: int = 1) -> Iterator[list[np.ndarray]]:
        """`encode_many` of consecutive runs of `texts` (pool.chunks), one run at a time."""
        texts = as_sequence(texts)
        nw = n_workers(workers)
        if worth_it(texts, nw):
            yield from encode_in_workers(self, texts, nw)
            return
        for a, b in chunks(texts, 1):
            yield [self.encode(t) for t in texts[a:b]]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, size={len(self)}, id={self.identity()[:12]})"


def itos_identity(itos: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(itos), ensure_ascii=False).encode("utf-8")).hexdigest()


def fit_numericalizer(texts: Iterable[str], cfg: Any, workers: int = 1) -> Numericalizer:
    """Build a vocabulary from `texts` following `cfg` (TokenizerConfig / DictConfig / dict)."""
    return TOKENIZERS[cfg_get(cfg, "name", "word")].build(texts, cfg, workers)


def fit_and_encode(texts: Sequence[str], cfg: Any, workers: int = 1,
                   out: Path | None = None) -> tuple[Numericalizer, np.ndarray, np.ndarray]:
    """`fit_numericalizer(texts, cfg)` and its `encode_many(texts)`, as (numericalizer, every text's
    ids concatenated (int32), each text's length (int64)): in one tokenization pass where the
    tokenizer offers one (`fit_encode` in its registration), else fit, then encode. With `out` (a
    .npy path) the ids are written there as they are made and returned as a read-only map of it."""
    option = TOKENIZERS[cfg_get(cfg, "name", "word")]
    if "fit_encode" in option.info:
        return option.info["fit_encode"](texts, cfg, workers, out)
    numericalizer = option.build(texts, cfg, workers)
    return (numericalizer, *encode_flat(numericalizer, texts, workers, out))


def encode_flat(numericalizer: Numericalizer, texts: Sequence[str], workers: int = 1,
                out: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`numericalizer.encode_many(texts)` as (every text's ids concatenated (int32), each text's
    length (int64)), made a chunk at a time; with `out` (a .npy path) the ids are written there as
    they are made and returned as a read-only map of it, so a corpus of any size is held one chunk
    at a time. A run stopped part way leaves no file at `out`."""
    writer, lens = IdWriter(out), []
    try:
        for docs in numericalizer.encode_chunks(as_sequence(texts), workers):
            lens.append(np.fromiter(map(len, docs), dtype=np.int64, count=len(docs)))
            if docs:
                writer.append(np.concatenate(docs))
        flat = writer.finish()
    except BaseException:
        writer.discard()
        raise
    return flat, np.concatenate(lens) if lens else np.zeros(0, np.int64)


def as_sequence(texts: Iterable[str]) -> Sequence[str]:
    """`texts` itself when it can be indexed (a list, or documents read from a file on demand),
    else a list of it."""
    return texts if isinstance(texts, Sequence) else list(texts)


def split_ids(flat: np.ndarray, lens: np.ndarray) -> list[np.ndarray]:
    """Per-text views of concatenated ids, `lens` long each."""
    return np.split(flat, np.cumsum(lens)[:-1]) if len(lens) else []


def numericalizer_from_state(state: dict) -> Numericalizer:
    """Rebuild a numericalizer from `Numericalizer.state()` (e.g. read from a checkpoint)."""
    if not isinstance(state, dict) or "kind" not in state:
        raise UserError("The tokenizer state in this checkpoint is missing or malformed.",
                        "Use a checkpoint written by this program, or re-run the stage that made it.")
    kind = state["kind"]
    version = state.get("version", STATE_VERSION)
    if version > STATE_VERSION:
        raise UserError(f"The tokenizer state has version {version}; this program reads up to "
                        f"{STATE_VERSION}.", "Upgrade ulmfit_cli, or re-run the stage that made it.")
    if kind not in TOKENIZERS:
        raise UserError(f"The tokenizer state has unknown kind {kind!r}.",
                        f"Valid kinds: {', '.join(TOKENIZERS.names())}; re-run the stage that made the checkpoint.")
    return TOKENIZERS[kind].info["load"](state)
