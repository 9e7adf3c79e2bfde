"""The sentencepiece tokenizer (`tokenizer=spm`), trained with the pretraining run and carried with
every later checkpoint. It sees the raw text after `fix_html` only; newlines are kept as a ``"\\n"``
piece (id 9), the text between them is encoded line by line."""
from __future__ import annotations

import io
import os
import random
import re
from typing import Iterable, Iterator, Sequence

import numpy as np

from ...errors import UserError
from .pool import chunks, long_enough, n_workers
from .base import STATE_VERSION, TOKENIZERS, Numericalizer, as_sequence, cfg_get
from .specials import BOS, BOS_ID, EOS, EOS_ID, NEWLINE, PAD, PAD_ID, SPECIAL_TOKENS, UNK, UNK_ID
from .word_rules import fix_html

SPM_MODEL_TYPES = ("unigram", "bpe")
_SPM_MAX_LINE = 8000
_re_spm_too_high = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_re_sentence_end = re.compile(r"(?<=[.!?])\s+")
_re_spm_lines = re.compile(r"[ \t\r\f\v]*\n\s*")


def _spm_lines(text: str) -> list[str]:
    """fix_html'd text split on newlines (runs of newlines and surrounding blanks collapse)."""
    return _re_spm_lines.split(text) if "\n" in text else [text]


def _spm_sentences(texts: Iterable[str]) -> Iterator[str]:
    """The lines sentencepiece trains on: fix_html'd, stripped, not blank, and a line longer than
    `_SPM_MAX_LINE` cut at its sentence ends (and, failing those, every `_SPM_MAX_LINE` characters)."""
    for t in texts:
        for line in _spm_lines(fix_html(t)):
            line = line.strip()
            if len(line) <= _SPM_MAX_LINE:
                if line:
                    yield line
                continue
            for sent in _re_sentence_end.split(line):
                for a in range(0, len(sent), _SPM_MAX_LINE):
                    piece = sent[a:a + _SPM_MAX_LINE].strip()
                    if piece:
                        yield piece


def _spm_training_sentences(texts: Sequence[str], max_sentences: int, max_chars: int, seed: int = 0) -> list[str]:
    """Every training line of `texts`, in order, when there are at most `max_sentences` of them
    with at most `max_chars` characters in all (0: no limit); else a uniform sample of them (the same
    for the same texts and seed) of at most `max_sentences` lines and about `max_chars` characters.

    sentencepiece holds what it trains on many times over (about 15 bytes per character, unigram),
    so the budget, not the corpus, bounds the memory: past it the lines are only counted, and the
    sampled ones are collected in a second pass over `texts`."""
    kept: list[str] | None = []
    n = chars = 0
    for line in _spm_sentences(texts):
        n += 1
        chars += len(line)
        if kept is not None:
            kept.append(line)
            if (max_sentences and n > max_sentences) or (max_chars and chars > max_chars):
                kept = None  # over the budget: count the rest, then sample
    if kept is not None:
        return kept
    k = min(n, max_sentences or n, max(1, n * max_chars // chars) if max_chars else n)
    picked = sorted(random.Random(seed).sample(range(n), k))
    out, at = [], 0
    for i, line in enumerate(_spm_sentences(texts)):
        if i == picked[at]:
            out.append(line)
            at += 1
            if at == k:
                break
    return out


class SpmNumericalizer(Numericalizer):
    kind = "spm"

    def __init__(self, model_proto: bytes, requested_vocab_size: int | None = None,
                 model_type: str | None = None):
        import sentencepiece as spm

        self.model_proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        n = self.sp.get_piece_size()
        self.itos = [self.sp.id_to_piece(i) for i in range(n)]
        if self.itos[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ValueError(f"sentencepiece model does not start with the special tokens: {self.itos[:9]}")
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.nl_id = self.stoi.get(NEWLINE)
        self.requested_vocab_size = requested_vocab_size
        self.model_type = model_type

    # -- training
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, model_type: str = "unigram",
              character_coverage: float = 0.9999, max_sentences: int = 2_000_000,
              max_chars: int = 50_000_000, num_threads: int | None = None) -> "SpmNumericalizer":
        import sentencepiece as spm

        if model_type not in SPM_MODEL_TYPES:
            raise UserError(f"tokenizer.model_type={model_type!r} is not a sentencepiece model type.",
                            f"Use one of: {', '.join(SPM_MODEL_TYPES)}.")
        n_reserved = len(SPECIAL_TOKENS) + 1  # + the newline piece
        if vocab_size <= n_reserved:
            raise UserError(f"tokenizer.vocab_size={vocab_size} leaves no room beside the "
                            f"{n_reserved} reserved pieces.", "Set tokenizer.vocab_size to a few thousand.")
        for knob, value in (("max_sentences", max_sentences), ("max_chars", max_chars)):
            if value < 0:
                raise UserError(f"tokenizer.{knob}={value} is negative.",
                                f"Set tokenizer.{knob} to the most sentencepiece may train on, or 0 for no limit.")
        sents = _spm_training_sentences(as_sequence(texts), max_sentences, max_chars)
        if not sents:
            raise UserError("The corpus given to sentencepiece has no text.",
                            "Check the dataset's text columns.")
        threads = num_threads or min(16, os.cpu_count() or 1)
        requested = int(vocab_size)
        size = requested
        tried: set[int] = set()
        while True:
            buf = io.BytesIO()
            try:
                spm.SentencePieceTrainer.train(
                    sentence_iterator=iter(sents), model_writer=buf, vocab_size=size,
                    model_type=model_type, character_coverage=float(character_coverage),
                    input_sentence_size=int(max_sentences or 0), shuffle_input_sentence=True,
                    unk_id=UNK_ID, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID,
                    unk_piece=UNK, pad_piece=PAD, bos_piece=BOS, eos_piece=EOS,
                    user_defined_symbols=SPECIAL_TOKENS[4:] + [NEWLINE], unk_surface=UNK,
                    max_sentence_length=4 * _SPM_MAX_LINE + 16, num_threads=threads,
                    minloglevel=2)
                break
            except RuntimeError as e:
                tried.add(size)
                m = _re_spm_too_high.search(str(e))
                if m and int(m.group(2)) > n_reserved and int(m.group(2)) not in tried:
                    size = int(m.group(2))
                    continue
                raise UserError(f"sentencepiece could not train a vocabulary of {requested} pieces "
                                f"on this corpus ({e}).",
                                "Use a larger corpus or a smaller tokenizer.vocab_size, "
                                "or tokenizer.character_coverage closer to 1.") from None
        return cls(buf.getvalue(), requested_vocab_size=requested, model_type=model_type)

    # -- encode / decode
    def encode(self, text: str) -> np.ndarray:
        text = fix_html(text)
        if "\n" in text and self.nl_id is not None:
            lines = _spm_lines(text.strip())
            pieces = self.sp.encode(lines)
            ids = [BOS_ID]
            for k, p in enumerate(pieces):
                if k:
                    ids.append(self.nl_id)
                ids.extend(p)
            return np.array(ids, dtype=np.int32)
        ids = self.sp.encode(text)
        return np.array([BOS_ID] + ids, dtype=np.int32)

    def encode_chunks(self, texts: Sequence[str], workers: int = 1) -> Iterator[list[np.ndarray]]:
        """Sentencepiece is C++: a large input goes in chunks, each a batch encoded with its own
        threads (workers of them)."""
        texts = as_sequence(texts)
        nw = n_workers(workers)
        threaded = nw > 1 and long_enough(texts)
        for a, b in chunks(texts, 1):
            part = texts[a:b]
            yield self._encode_batch(part, nw) if threaded else [self.encode(t) for t in part]

    def _encode_batch(self, texts: list[str], threads: int) -> list[np.ndarray]:
        fixed = [fix_html(t) for t in texts]
        simple = [i for i, t in enumerate(fixed) if "\n" not in t or self.nl_id is None]
        out: list[np.ndarray | None] = [None] * len(texts)
        if simple:
            enc = self.sp.encode([fixed[i] for i in simple], num_threads=threads)
            for i, ids in zip(simple, enc):
                out[i] = np.array([BOS_ID] + ids, dtype=np.int32)
        for i, t in enumerate(texts):
            if out[i] is None:
                out[i] = self.encode(t)
        return out  # type: ignore[return-value]

    def decode(self, ids: Iterable[int]) -> str:
        n = len(self.itos)
        ids = [int(i) for i in ids]
        ids = [i for i in ids if i not in (BOS_ID, PAD_ID) and 0 <= i < n]
        if self.nl_id is None or self.nl_id not in ids:
            return self.sp.decode(ids)
        lines, cur = [], []
        for i in ids:
            if i == self.nl_id:
                lines.append(cur)
                cur = []
            else:
                cur.append(i)
        lines.append(cur)
        return "\n".join(self.sp.decode(seg) for seg in lines)

    # -- state
    def state(self) -> dict:
        return {"kind": "spm", "version": STATE_VERSION, "model_proto": self.model_proto,
                "itos": list(self.itos), "vocab_size": len(self.itos),
                "requested_vocab_size": self.requested_vocab_size, "model_type": self.model_type}

    @classmethod
    def from_state(cls, state: dict) -> "SpmNumericalizer":
        return cls(state["model_proto"], requested_vocab_size=state.get("requested_vocab_size"),
                   model_type=state.get("model_type"))


@TOKENIZERS.register("spm", reads=("vocab_size", "model_type", "character_coverage", "max_sentences", "max_chars"),
                     load=SpmNumericalizer.from_state)
def fit_spm(texts: Iterable[str], cfg, workers: int = 1) -> SpmNumericalizer:
    """SentencePiece (unigram or bpe) of vocab_size pieces, trained on up to max_sentences lines of
    about max_chars characters in all (a uniform sample of the corpus's lines past either)."""
    return SpmNumericalizer.train(
        texts,
        vocab_size=int(cfg_get(cfg, "vocab_size", 8000)),
        model_type=str(cfg_get(cfg, "model_type", "unigram")),
        character_coverage=float(cfg_get(cfg, "character_coverage", 0.9999)),
        max_sentences=int(cfg_get(cfg, "max_sentences", 2_000_000) or 0),
        max_chars=int(cfg_get(cfg, "max_chars", 50_000_000) or 0),
    )
