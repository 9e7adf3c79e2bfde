"""Text <-> token ids: a word-level tokenizer (fastai rules) and a sentencepiece one.

A `Numericalizer`'s whole state is plain data (str/int/float/bool/list/dict/bytes), so it can be
stored in a checkpoint that is loaded with ``torch.load(weights_only=True)`` and rebuilt with
`numericalizer_from_state`.

Both kinds share the 9 special tokens at ids 0..8, in this order::

    xxunk xxpad xxbos xxeos xxfld xxrep xxwrep xxup xxmaj

Word-level conventions (``WordNumericalizer``), applied in this order (like fastai.text.core):

1. `fix_html`: HTML entities / ``<br />`` -> newline, WikiText artefacts (``<unk>`` -> xxunk,
   `` @-@ `` -> ``-``, `` @,@ `` -> ``,``, `` @.@ `` -> ``.``, ``n 't`` -> ``n't``),
   ``...`` -> `` …``.
2. `replace_rep`: a non-space character repeated 4+ times -> `` xxrep {n} {c} ``
   (``"!!!!"`` -> ``xxrep 4 !``; ``"sooooo"`` -> ``s xxrep 5 o``).
3. Unicode NFC; curly apostrophes -> ``'``; newlines (with the whitespace around them) -> one ``"\\n"`` token.
4. Regex word tokenizer: abbreviations (``U.S.``, ``e.g.``, ``Mr.``), numbers with separators
   (``1,000.5``), contractions split as spaCy does (``don't`` -> ``do n't``, ``it's`` -> ``it 's``,
   ``can't`` -> ``ca n't``), words (letters/digits, inner apostrophes as in ``O'Brien``),
   ``\\n``, and every other non-space character as its own token (so ``/`` and ``#`` are
   always split, as fastai's `spec_add_spaces`; extra spaces never make tokens).
5. `replace_wrep` (on the tokens, before case folding): the same word 4+ times in a row ->
   ``xxwrep {n} {word}``.
6. Case: a token of 2+ characters in ALL CAPS -> ``xxup token``; a Capitalised token of 2+
   characters (no other capital) -> ``xxmaj token``; every token is lower-cased
   (so ``"I"`` -> ``"i"`` with no marker, as fastai).
7. ``xxbos`` first.

``"This is GREAT!!!!"`` -> ``xxbos xxmaj this is xxup great xxrep 4 !``.

Sentencepiece (``SpmNumericalizer``) sees the raw text after `fix_html` only; newlines are kept
as a ``"\\n"`` piece (id 9), the text between them is encoded line by line.
"""
from __future__ import annotations

import hashlib
import html
import io
import json
import os
import random
import re
import unicodedata
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Iterable, Sequence

import numpy as np

from ulmfit_cli.errors import UserError

# --------------------------------------------------------------------------- special tokens
UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ = (
    "xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj")
SPECIAL_TOKENS: list[str] = [UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ]
UNK_ID, PAD_ID, BOS_ID, EOS_ID, FLD_ID, REP_ID, WREP_ID, UP_ID, MAJ_ID = range(9)
NEWLINE = "\n"

STATE_VERSION = 1
TOKENIZER_KINDS = ("word", "spm")
SPM_MODEL_TYPES = ("unigram", "bpe")

# encode_many only starts worker processes when the input has at least this many characters.
PARALLEL_MIN_CHARS = 2_000_000


# --------------------------------------------------------------------------- text rules
def fix_html(x: str) -> str:
    """Various messy things seen in documents (fastai's fix_html, plus WikiText artefacts)."""
    if "&" in x:
        while "&amp;" in x:  # also undoes double escaping (&amp;amp;)
            x = x.replace("&amp;", "&")
        x = html.unescape(x)
    # entities whose '&' was lost upstream (fastai's list), line breaks, WikiText artefacts
    x = (x.replace("#39;", "'").replace("#146;", "'").replace("nbsp;", " ")
         .replace("#36;", "$").replace("\\n", "\n").replace("quot;", "'").replace("<br />", "\n")
         .replace("<br/>", "\n").replace("<br>", "\n").replace('\\"', '"').replace("<unk>", UNK)
         .replace(" @.@ ", ".").replace(" @-@ ", "-").replace(" @,@ ", ",")
         .replace("n 't", "n't").replace("...", " …"))
    return x


_re_rep = re.compile(r"(\S)\1{3,}")


def _rep_sub(m: re.Match) -> str:
    return f" {TK_REP} {len(m.group(0))} {m.group(1)} "


def replace_rep(t: str) -> str:
    """A non-space character repeated 4+ times: ``cccc`` -> `` xxrep 4 c ``."""
    return _re_rep.sub(_rep_sub, t)


_re_wrep = re.compile(r"(?<!\w)(\w+)(?:\s+\1(?!\w)){3,}")


def _wrep_sub(m: re.Match) -> str:
    return f" {TK_WREP} {len(m.group(0).split())} {m.group(1)} "


def replace_wrep(t: str) -> str:
    """Text-level form of the word-repetition rule: ``w w w w`` -> `` xxwrep 4 w ``.

    The tokenizer applies the same rule on its tokens (faster); this is kept for reference/reuse.
    """
    return _re_wrep.sub(_wrep_sub, t)


_re_newline = re.compile(r"\n\s*")

# Order matters: the first alternative that matches at a position wins.
_ABBREV = r"(?:mrs|mr|ms|dr|prof|jr|sr|st|vs|etc|inc|ltd)\."
_TOKEN_RE = re.compile(
    r"(?:[^\W\d_]\.){2,}"                          # U.S.  e.g.  i.e.
    rf"|(?i:{_ABBREV})"                            # Mr.  Dr.  etc.
    r"|\d+(?:[.,:]\d+)+"                           # 1,000  3.14  12:30
    r"|[^\W_]+?(?=[nN]'[tT](?![^\W_]))"            # do|n't  ca|n't
    r"|[nN]'[tT](?![^\W_])"                        # n't
    r"|'(?:[sSmMdD]|[lL][lL]|[vV][eE]|[rR][eE])(?![^\W_])"   # 's 'm 'd 'll 've 're
    r"|[^\W_]+(?:'(?!(?:[sSmMdD]|[lL][lL]|[vV][eE]|[rR][eE])(?![^\W_]))[^\W_]+)*"  # words, O'Brien
    r"|\n"
    r"|[^\w\s]|_"                                  # any other character, one at a time
)
_CONTRACTIONS = frozenset(["n't", "'s", "'m", "'d", "'ll", "'ve", "'re"])


def _collapse_wrep(toks: list[str]) -> list[str]:
    """Runs of 4+ identical word tokens -> xxwrep n word."""
    out: list[str] = []
    i, n = 0, len(toks)
    while i < n:
        t = toks[i]
        j = i + 1
        while j < n and toks[j] == t:
            j += 1
        run = j - i
        if run >= 4 and t[0] != "\n" and (t[0].isalnum() or t[0] == "_"):
            out.extend((TK_WREP, str(run), t))
        else:
            out.extend(toks[i:j])
        i = j
    return out


def word_tokenize(text: str) -> list[str]:
    """Apply the word-level rules and return the tokens, starting with xxbos."""
    text = fix_html(text)
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)  # so "e\u0301" stays one letter
    text = _re_rep.sub(_rep_sub, text)
    if "\u2019" in text:
        text = text.replace("\u2019", "'")
    if "\n" in text:
        text = _re_newline.sub("\n", text)
    toks = _TOKEN_RE.findall(text)
    # word repetition: only pay for the slow pass when two neighbours are equal
    if len(toks) >= 4 and any(map(str.__eq__, toks, toks[1:])):
        toks = _collapse_wrep(toks)
    out = [BOS]
    app = out.append
    for t in toks:
        lw = t.lower()
        if lw != t:
            if len(t) > 1 and lw not in _CONTRACTIONS:
                if t.isupper():
                    app(TK_UP)
                elif t[0].isupper() and t[1:] == lw[1:]:
                    app(TK_MAJ)
        app(lw)
    return out


_re_detok_before = re.compile(r" ([.,;:!?%)\]}…]|n't\b|'(?:s|m|d|ll|ve|re)\b)")
_re_detok_after = re.compile(r"([(\[{$]) ")
_re_detok_nl = re.compile(r" ?\n ?")
_SPECIAL_SET = frozenset(SPECIAL_TOKENS)


def _is_wordish(t: str) -> bool:
    return bool(t) and (t[-1].isalnum() or t[-1] == "_")


def word_detokenize(tokens: Sequence[str]) -> str:
    """Approximate inverse of `word_tokenize` (markers undone, spaces before punctuation removed).

    Also for sampled text: a case or repetition marker that is not followed by what it needs
    (a word; a count and a token) is dropped; a character repetition that followed a word
    (``s xxrep 5 o``, from ``sooooo``) is glued back onto it; double quotes are paired
    (opening one sticks to the next token, closing one to the previous); the lone pronoun
    ``i`` (lower-cased without a marker by the tokenizer) is written ``I``.
    """
    out: list[str] = []
    glue: list[bool] = []  # glue[k]: out[k] is joined to out[k-1] without a space

    def push(w: str, g: bool = False) -> None:
        if out and out[-1] == '"' and not glue[-1]:
            g = True  # the token after an opening quote
        out.append(w)
        glue.append(g)

    i, n = 0, len(tokens)
    open_quote = False
    while i < n:
        t = tokens[i]
        if t in (BOS, PAD):
            i += 1
        elif t in (TK_MAJ, TK_UP):
            if i + 1 < n and tokens[i + 1] not in _SPECIAL_SET:
                nxt = tokens[i + 1]
                push(nxt[:1].upper() + nxt[1:] if t == TK_MAJ else nxt.upper())
                i += 2
            else:
                i += 1  # dangling marker
        elif t in (TK_REP, TK_WREP):
            if i + 2 < n and tokens[i + 1].isdigit() and tokens[i + 2] not in _SPECIAL_SET:
                cnt, w = int(tokens[i + 1]), tokens[i + 2]
                after_word = i > 0 and tokens[i - 1] not in _SPECIAL_SET and bool(out) and _is_wordish(out[-1])
                push(w * cnt if t == TK_REP else " ".join([w] * cnt), t == TK_REP and _is_wordish(w) and after_word)
                i += 3
            else:
                i += 1  # dangling marker
        elif t == '"':
            push(t, open_quote)  # a closing quote sticks to the token before it
            open_quote = not open_quote
            i += 1
        else:
            push("I" if t == "i" else t)
            i += 1
    s = "".join(w if (k == 0 or glue[k]) else " " + w for k, w in enumerate(out))
    s = _re_detok_before.sub(r"\1", s)
    s = _re_detok_after.sub(r"\1", s)
    s = _re_detok_nl.sub("\n", s)
    return s.strip(" ")


# --------------------------------------------------------------------------- helpers
def _cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    try:
        return getattr(cfg, key)
    except AttributeError:
        return default
    except Exception:  # omegaconf missing value etc.
        return default


def _itos_identity(itos: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(itos), ensure_ascii=False).encode("utf-8")).hexdigest()


def _chunks(seq: Sequence, n_chunks: int) -> list[tuple[int, int]]:
    n = len(seq)
    size = max(1, -(-n // n_chunks))
    return [(i, min(n, i + size)) for i in range(0, n, size)]


# worker-process globals (ProcessPoolExecutor initializer)
_WORKER_NUM: "Numericalizer | None" = None


def _worker_init(state: dict) -> None:
    global _WORKER_NUM
    _WORKER_NUM = numericalizer_from_state(state)


def _worker_encode(texts: list[str]) -> list[np.ndarray]:
    assert _WORKER_NUM is not None
    return [_WORKER_NUM.encode(t) for t in texts]


def _worker_count(texts: list[str]) -> Counter:
    c: Counter = Counter()
    for t in texts:
        c.update(word_tokenize(t))
    return c


def _n_workers(workers: int) -> int:
    return max(1, min(int(workers or 1), os.cpu_count() or 1))


# --------------------------------------------------------------------------- base class
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
        return _itos_identity(self.itos)

    def encode_many(self, texts: Sequence[str], workers: int = 1) -> list[np.ndarray]:
        """Encode every text; results in input order. Uses worker processes when workers > 1
        and the input holds at least PARALLEL_MIN_CHARS characters."""
        texts = list(texts)
        nw = _n_workers(workers)
        if nw > 1 and len(texts) >= 2 and sum(map(len, texts)) >= PARALLEL_MIN_CHARS:
            # ~4 chunks per worker keeps the pool busy while limiting pickling overhead
            bounds = _chunks(texts, nw * 4)
            with ProcessPoolExecutor(max_workers=nw, initializer=_worker_init,
                                     initargs=(self.state(),)) as ex:
                parts = ex.map(_worker_encode, [texts[a:b] for a, b in bounds])
                out: list[np.ndarray] = []
                for p in parts:
                    out.extend(p)
            return out
        return [self.encode(t) for t in texts]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, size={len(self)}, id={self.identity()[:12]})"


# --------------------------------------------------------------------------- word
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


# --------------------------------------------------------------------------- sentencepiece
_SPM_MAX_LINE = 8000
_re_spm_too_high = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_re_sentence_end = re.compile(r"(?<=[.!?])\s+")
_re_spm_lines = re.compile(r"[ \t\r\f\v]*\n\s*")


def _spm_lines(text: str) -> list[str]:
    """fix_html'd text split on newlines (runs of newlines and surrounding blanks collapse)."""
    return _re_spm_lines.split(text) if "\n" in text else [text]


def _spm_training_sentences(texts: Iterable[str], max_sentences: int, seed: int = 0) -> list[str]:
    out: list[str] = []
    for t in texts:
        for line in _spm_lines(fix_html(t)):
            line = line.strip()
            if not line:
                continue
            if len(line) <= _SPM_MAX_LINE:
                out.append(line)
                continue
            for sent in _re_sentence_end.split(line):
                for a in range(0, len(sent), _SPM_MAX_LINE):
                    piece = sent[a:a + _SPM_MAX_LINE].strip()
                    if piece:
                        out.append(piece)
    if max_sentences and len(out) > max_sentences:
        out = random.Random(seed).sample(out, max_sentences)
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
              num_threads: int | None = None) -> "SpmNumericalizer":
        import sentencepiece as spm

        if model_type not in SPM_MODEL_TYPES:
            raise UserError(f"tokenizer.model_type={model_type!r} is not a sentencepiece model type.",
                            f"Use one of: {', '.join(SPM_MODEL_TYPES)}.")
        n_reserved = len(SPECIAL_TOKENS) + 1  # + the newline piece
        if vocab_size <= n_reserved:
            raise UserError(f"tokenizer.vocab_size={vocab_size} leaves no room beside the "
                            f"{n_reserved} reserved pieces.", "Set tokenizer.vocab_size to a few thousand.")
        sents = _spm_training_sentences(texts, max_sentences)
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

    def encode_many(self, texts: Sequence[str], workers: int = 1) -> list[np.ndarray]:
        """Sentencepiece is C++: batches are encoded with its own threads (workers of them)."""
        texts = list(texts)
        nw = _n_workers(workers)
        if nw <= 1 or sum(map(len, texts)) < PARALLEL_MIN_CHARS:
            return [self.encode(t) for t in texts]
        fixed = [fix_html(t) for t in texts]
        simple = [i for i, t in enumerate(fixed) if "\n" not in t or self.nl_id is None]
        out: list[np.ndarray | None] = [None] * len(texts)
        if simple:
            enc = self.sp.encode([fixed[i] for i in simple], num_threads=nw)
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


# --------------------------------------------------------------------------- module API
def fit_numericalizer(texts: Iterable[str], cfg: Any, workers: int = 1) -> Numericalizer:
    """Build a vocabulary from `texts` following `cfg` (TokenizerConfig / DictConfig / dict)."""
    name = _cfg_get(cfg, "name", "word")
    if name == "word":
        max_vocab = int(_cfg_get(cfg, "max_vocab", 60000))
        min_freq = int(_cfg_get(cfg, "min_freq", 2))
        texts = list(texts)
        nw = _n_workers(workers)
        if nw > 1 and len(texts) >= 2 and sum(map(len, texts)) >= PARALLEL_MIN_CHARS:
            counts: Counter = Counter()
            with ProcessPoolExecutor(max_workers=nw) as ex:
                for c in ex.map(_worker_count, [texts[a:b] for a, b in _chunks(texts, nw * 4)]):
                    counts.update(c)
        else:
            counts = _worker_count(texts)
        if sum(counts.values()) <= len(texts):  # only xxbos tokens
            raise UserError("The corpus given to the word tokenizer has no text.",
                            "Check the dataset's text columns.")
        return WordNumericalizer.from_counter(counts, max_vocab=max_vocab, min_freq=min_freq)
    if name == "spm":
        return SpmNumericalizer.train(
            texts,
            vocab_size=int(_cfg_get(cfg, "vocab_size", 8000)),
            model_type=str(_cfg_get(cfg, "model_type", "unigram")),
            character_coverage=float(_cfg_get(cfg, "character_coverage", 0.9999)),
            max_sentences=int(_cfg_get(cfg, "max_sentences", 2_000_000) or 0),
        )
    raise UserError(f"tokenizer.name={name!r} is not a tokenizer.",
                    f"Use tokenizer.name=word or tokenizer.name=spm (valid: {', '.join(TOKENIZER_KINDS)}).")


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
    if kind == "word":
        return WordNumericalizer.from_state(state)
    if kind == "spm":
        return SpmNumericalizer.from_state(state)
    raise UserError(f"The tokenizer state has unknown kind {kind!r}.",
                    f"Valid kinds: {', '.join(TOKENIZER_KINDS)}; re-run the stage that made the checkpoint.")


# --------------------------------------------------------------------------- embeddings
def _match_index(old_itos: Sequence[str], new_itos: Sequence[str]) -> tuple[list[int], list[int]]:
    old_stoi: dict[str, int] = {}
    for i, t in enumerate(old_itos):
        old_stoi.setdefault(t, i)
    new_idx, old_idx = [], []
    for j, t in enumerate(new_itos):
        i = old_stoi.get(t)
        if i is not None:
            new_idx.append(j)
            old_idx.append(i)
    return new_idx, old_idx


def map_embeddings(old_weight, old_itos: Sequence[str], new_itos: Sequence[str]):
    """Rows for `new_itos` from a matrix indexed by `old_itos` (fastai's match_embeds).

    Tokens found in `old_itos` keep their row exactly; the others get the mean of all old rows.
    Returns ``(new_weight, n_found)``; the input is not modified.
    """
    import torch

    w = old_weight.detach()
    if w.dim() != 2 or w.shape[0] != len(old_itos):
        raise ValueError(f"embedding of shape {tuple(w.shape)} does not match a vocabulary of "
                         f"{len(old_itos)} tokens")
    new_idx, old_idx = _match_index(old_itos, new_itos)
    mean = w.float().mean(0).to(w.dtype)
    new = mean.unsqueeze(0).repeat(len(new_itos), 1)
    if new_idx:
        new[torch.tensor(new_idx, dtype=torch.long, device=w.device)] = \
            w[torch.tensor(old_idx, dtype=torch.long, device=w.device)]
    return new, len(new_idx)


def map_bias(old_bias, old_itos: Sequence[str], new_itos: Sequence[str]):
    """Same as `map_embeddings` for a 1-D (decoder) bias: new entries get the mean bias."""
    b = old_bias.detach()
    if b.dim() != 1 or b.shape[0] != len(old_itos):
        raise ValueError(f"bias of shape {tuple(b.shape)} does not match a vocabulary of "
                         f"{len(old_itos)} tokens")
    new, found = map_embeddings(b.unsqueeze(1), old_itos, new_itos)
    return new.squeeze(1), found


__all__ = [
    "UNK", "PAD", "BOS", "EOS", "FLD", "TK_REP", "TK_WREP", "TK_UP", "TK_MAJ", "SPECIAL_TOKENS",
    "UNK_ID", "PAD_ID", "BOS_ID", "EOS_ID", "FLD_ID", "REP_ID", "WREP_ID", "UP_ID", "MAJ_ID",
    "Numericalizer", "WordNumericalizer", "SpmNumericalizer", "fit_numericalizer",
    "numericalizer_from_state", "map_embeddings", "map_bias", "fix_html", "replace_rep",
    "replace_wrep", "word_tokenize", "word_detokenize", "PARALLEL_MIN_CHARS",
]
