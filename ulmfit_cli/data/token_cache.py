"""Numericalized corpora cached on disk, so a second run skips tokenization.

`cached_encode(numericalizer, texts, cache_dir)` returns what ``numericalizer.encode_many(texts)``
returns (one ``np.int32`` array per text). The result is stored under ``cache_dir`` as two
``.npy`` files named by a key::

    <key[:32]>.tokens.npy    every text's ids, concatenated (1-D int32)
    <key[:32]>.offsets.npy   int64, len(texts) + 1: text i is tokens[off[i]:off[i+1]]

The key is a sha256 over a format version, the tokenizer (its full `state()`, which holds the
vocabulary and, for sentencepiece, the model, plus the source of the ``tokenizers`` package, so a change to
the word rules cannot return stale ids) and the texts (count, then each text's length and utf-8
bytes). On a hit both files are opened with ``mmap_mode="r"`` and the returned arrays are
read-only, zero-copy views into the token file: the corpus is paged in by the OS as it is read.

Files are written to a temporary name in the same directory and renamed (offsets last), so a
reader never sees a half-written pair; a missing, truncated or otherwise inconsistent pair is
treated as a miss and rewritten. A cache directory that cannot be written only logs a warning.

Inputs of fewer than `CACHE_MIN_CHARS` characters in all are encoded directly (they take well under
a second, and test runs on small samples then leave nothing on disk).

Stage configs: ``token_cache`` (default null = ``<data root>/token_cache``, i.e. next to the
corpora in ``$ULMFIT_DATA`` or ``~/.cache/ulmfit``, or ``data_root``/token_cache when that is set);
a path to use another directory; ``off`` to disable. See `token_cache_dir`.
"""
from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..fileutil import atomic_write_bytes
from .file_index import code_id, remembered
from .file_texts import FileTexts
from .tokenizers import fit_and_encode, numericalizer_from_state, split_ids
from .tokenizers.base import as_sequence, encode_flat
from .tokenizers.pool import text_sizes

log = logging.getLogger("ulmfit")

FORMAT_VERSION = 1
# Below this many characters (all texts together) the cache is skipped: encoding is fast enough.
CACHE_MIN_CHARS = 1_000_000
_OFF_VALUES = frozenset({"off", "false", "no", "none", "0", "disable", "disabled"})
_TOKENIZER_SOURCES = Path(__file__).with_name("tokenizers")


@functools.cache
def _tokenizer_code_digest() -> str:
    try:
        h = hashlib.sha256()
        for source in sorted(_TOKENIZER_SOURCES.glob("*.py")):
            h.update(source.name.encode() + b"\0" + source.read_bytes())
        return h.hexdigest()
    except OSError:
        return "unknown"


def _json_default(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray, memoryview)):
        return "sha256:" + hashlib.sha256(bytes(o)).hexdigest()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return repr(o)


def texts_digest(texts: Sequence[str], index: Path | None = None) -> bytes:
    """sha256 over the texts: their count, then each one's length and utf-8 bytes (order matters).
    The digest of documents read from a file is kept in the `index` folder (see file_index) and
    read back from there while the file is unchanged."""
    if index is None or not isinstance(texts, FileTexts):
        return _digest(texts)
    parts = (b"texts-digest", texts.starts.tobytes(), texts.ends.tobytes(), code_id(texts.transform), code_id(_digest))
    _, kept = remembered(index, texts.path, parts, lambda st: {"digest": np.frombuffer(_digest(texts), np.uint8)})
    return kept["digest"].tobytes()


def index_dir(cache_dir: Path | str | None) -> Path | None:
    """Where what was learned about a cached corpus's files is kept: the cache's ``index/``."""
    return None if cache_dir is None else Path(cache_dir) / "index"


def _digest(texts: Sequence[str]) -> bytes:
    h = hashlib.sha256()
    h.update(len(texts).to_bytes(8, "little"))
    upd = h.update
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        upd(len(b).to_bytes(8, "little"))
        upd(b)
    return h.digest()


def cache_key(numericalizer, texts: Sequence[str], digest: bytes | None = None) -> str:
    """sha256 hex over format version, tokenizer state + code, and the texts (`digest`: their
    `texts_digest`, when the caller has it already)."""
    h = hashlib.sha256()
    h.update(f"ulmfit-token-cache/v{FORMAT_VERSION}\0".encode())
    h.update(type(numericalizer).__name__.encode() + b"\0")
    h.update(json.dumps(numericalizer.state(), sort_keys=True, ensure_ascii=True,
                        default=_json_default).encode("ascii") + b"\0")
    h.update(_tokenizer_code_digest().encode() + b"\0")
    h.update(digest if digest is not None else _digest(texts))
    return h.hexdigest()


def fit_key(tokenizer_cfg: Any, digest: bytes) -> str:
    """sha256 hex naming the vocabulary fitted on some texts: format version, the tokenizer's
    settings and code, the texts' digest."""
    h = hashlib.sha256()
    h.update(f"ulmfit-vocab-cache/v{FORMAT_VERSION}\0".encode())
    h.update(json.dumps(plain(tokenizer_cfg), sort_keys=True, default=repr).encode() + b"\0")
    h.update(_tokenizer_code_digest().encode() + b"\0" + digest)
    return h.hexdigest()


def plain(cfg: Any) -> Any:
    """A DictConfig, dataclass or mapping as plain data."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return dict(cfg)


def token_cache_dir(cfg: Any) -> Path | None:
    """The cache directory a stage config asks for (`token_cache`), or None when off.

    The default is the user's cache (`$ULMFIT_DATA` or ~/.cache/ulmfit, + /token_cache), never
    `data_root`: a corpus folder may be shared or read-only and is no place for derived files.
    """
    setting = getattr(cfg, "token_cache", None) if not isinstance(cfg, dict) else cfg.get("token_cache")
    if setting is False:
        return None
    if setting is None or (isinstance(setting, str) and setting.strip().lower() in ("", "null", "default")):
        from .download_registry import default_data_root

        return default_data_root() / "token_cache"
    if isinstance(setting, str) and setting.strip().lower() in _OFF_VALUES:
        return None
    return Path(str(setting)).expanduser()


def _paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    stem = key[:32]
    return cache_dir / f"{stem}.tokens.npy", cache_dir / f"{stem}.offsets.npy"


def _load(tok_path: Path, off_path: Path, n: int) -> "DocIds | None":
    """The cached arrays, or None if the pair is missing or inconsistent."""
    if not (tok_path.is_file() and off_path.is_file()):
        return None
    try:
        off = np.load(off_path, mmap_mode="r", allow_pickle=False)
        tokens = np.load(tok_path, mmap_mode="r", allow_pickle=False)
        if (off.ndim != 1 or off.shape[0] != n + 1 or off.dtype != np.int64
                or tokens.ndim != 1 or tokens.dtype != np.int32):
            raise ValueError("unexpected shape or dtype")
        off = np.asarray(off)  # small: len(texts) + 1
        if off[0] != 0 or off[-1] != tokens.shape[0] or (n and bool((np.diff(off) < 0).any())):
            raise ValueError("offsets do not match the token file")
    except Exception as e:  # truncated / corrupt / wrong format: recompute
        log.warning("token cache: ignoring unreadable entry %s (%s); re-encoding", tok_path.name, e)
        return None
    return DocIds(tokens, off)


class DocIds(Sequence):
    """Every document's ids as a view of one (memory-mapped) array, made when it is asked for.

    A list of a million views would be a million objects held through training, several hundred MB
    whose pages, mixed with the corpus text's, the allocator cannot give back; here a document costs
    its offset. Indexing gives a read-only int32 view; a slice gives a list of them."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray):
        self.tokens = np.asarray(tokens)  # a plain ndarray over the map: a memmap slice carries its attributes
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"document {i} of {len(self)}")
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        """Every document's length (int64), without making the views."""
        return np.diff(self.offsets)


def _warn_unwritable(cache_dir, e: OSError) -> None:
    log.warning("token cache: could not write %s (%s); continuing without the cache "
                "(set token_cache=<dir> or token_cache=off)", cache_dir, e)


def _workers(texts: Sequence[str]) -> int:
    """Two processes for a corpus large enough to repay starting them (many texts, or a few long ones)."""
    return 2 if len(texts) > 20000 or _chars(texts) > 10_000_000 else 1


def _offsets(lens: np.ndarray) -> np.ndarray:
    off = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=off[1:])
    return off


def cached_encode(numericalizer, texts: Sequence[str], cache_dir: Path | str | None, workers: int = 1,
                  min_chars: int = CACHE_MIN_CHARS, digest: bytes | None = None) -> list[np.ndarray]:
    """``numericalizer.encode_many(texts, workers)``, cached in `cache_dir` (None: no cache).

    On a hit the arrays are read-only views into a memory-mapped file. Inputs of fewer than
    `min_chars` characters are not cached.
    """
    texts = as_sequence(texts)
    if cache_dir is None or _chars(texts) < min_chars:
        return numericalizer.encode_many(texts, workers=workers)
    t0 = time.perf_counter()
    cache_dir = Path(cache_dir)
    key = cache_key(numericalizer, texts, digest or texts_digest(texts, index_dir(cache_dir)))
    tok_path, off_path = _paths(cache_dir, key)
    docs = _load(tok_path, off_path, len(texts))
    if docs is not None:
        n_tok = int(docs.lengths().sum())
        log.info("token cache hit: %s tokens in %.2f s (%s)", f"{n_tok:,}", time.perf_counter() - t0, tok_path)
        return docs
    spill = _spill_path(cache_dir, key[:32])
    flat, lens = encode_flat(numericalizer, texts, workers, spill)
    log.info("token cache miss: encoded %s tokens in %.2f s", f"{len(flat):,}", time.perf_counter() - t0)
    if spill is None:
        return split_ids(flat, lens)
    _keep(spill, (tok_path, off_path), lens, cache_dir)
    # the ids are read from that file as a hit reads them: a large corpus's ids then cost page
    # cache the OS can drop, not memory of this process
    return DocIds(flat, _offsets(lens))


def _keep(spill: Path, paths: tuple[Path, Path], lens: np.ndarray, cache_dir: Path, then=None) -> None:
    """Make the ids written to `spill` (whole and synced) the token file of the entry at `paths`,
    write its offsets, then `then()` (what marks a larger entry complete). If the cache cannot be
    written, warn and drop the file (its map stays readable until let go)."""
    try:
        os.replace(spill, paths[0])
        atomic_write_bytes(paths[1], lambda f: np.save(f, _offsets(lens), allow_pickle=False))  # marks the pair
        if then is not None:
            then()
    except OSError as e:
        _warn_unwritable(cache_dir, e)
        spill.unlink(missing_ok=True)


def _state_json(state: dict) -> bytes:
    return json.dumps(state, default=lambda o: {"__bytes__": base64.b64encode(bytes(o)).decode("ascii")}
                      if isinstance(o, (bytes, bytearray)) else _json_default(o)).encode("utf-8")


def _state_from_json(raw: bytes) -> dict:
    return json.loads(raw, object_hook=lambda d: base64.b64decode(d["__bytes__"]) if set(d) == {"__bytes__"} else d)


def _load_vocab(path: Path):
    try:
        return numericalizer_from_state(_state_from_json(path.read_bytes())) if path.is_file() else None
    except Exception as e:  # unreadable or from another format: fit again
        log.warning("token cache: ignoring unreadable vocabulary %s (%s); fitting again", path.name, e)
        return None


def fit_encode(texts: Sequence[str], tokenizer_cfg: Any, cache_dir=None):
    """(numericalizer, token ids per text): the vocabulary fitted on `texts` and `texts` encoded
    with it, as `fit_numericalizer` then `encode` give them. Under `cache_dir` both are kept, the
    vocabulary named by the texts and the tokenizer settings, so a second run neither tokenizes
    nor counts: it hashes the texts and maps the cached ids. The ids are written to the cache as
    they are made, so a corpus of any size is held in memory one chunk at a time."""
    workers = _workers(texts)
    if cache_dir is None or _chars(texts) < CACHE_MIN_CHARS:
        numericalizer, flat, lens = fit_and_encode(texts, tokenizer_cfg, workers)
        return numericalizer, split_ids(flat, lens)
    t0 = time.perf_counter()
    digest = texts_digest(texts, index_dir(cache_dir))
    key = fit_key(tokenizer_cfg, digest)[:32]
    vocab_path = Path(cache_dir) / f"{key}.vocab.json"
    numericalizer = _load_vocab(vocab_path)
    if numericalizer is not None:
        log.info("token cache: vocabulary of %s tokens read in %.2f s (%s)", f"{len(numericalizer.itos):,}",
                 time.perf_counter() - t0, vocab_path)
        return numericalizer, cached_encode(numericalizer, texts, cache_dir, workers, min_chars=0, digest=digest)
    spill = _spill_path(Path(cache_dir), key)
    try:
        numericalizer, flat, lens = fit_and_encode(texts, tokenizer_cfg, workers, spill)
    except BaseException:  # stopped or failed: no half-written ids are left behind
        if spill is not None:
            spill.unlink(missing_ok=True)
        raise
    log.info("token cache miss: fitted a vocabulary of %s and encoded %s tokens in %.2f s",
             f"{len(numericalizer.itos):,}", f"{len(flat):,}", time.perf_counter() - t0)
    if spill is None:
        return numericalizer, split_ids(flat, lens)
    _keep(spill, _paths(Path(cache_dir), cache_key(numericalizer, texts, digest)), lens, Path(cache_dir),
          then=lambda: atomic_write_bytes(vocab_path, lambda f: f.write(_state_json(numericalizer.state()))))
    return numericalizer, DocIds(flat, _offsets(lens))


def _spill_path(cache_dir: Path, key: str) -> Path | None:
    """A new temporary file in `cache_dir` for ids being made, or None (with a warning) when the
    directory cannot be written."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{key}.", suffix=".tokens.npy.tmp", dir=cache_dir)
        os.close(fd)
        return Path(name)
    except OSError as e:
        _warn_unwritable(cache_dir, e)
        return None


def _chars(texts: Sequence[str]) -> int:
    return int(text_sizes(texts).sum())


def encode(numericalizer, texts: list[str], cache_dir=None) -> list[np.ndarray]:
    """Token ids per text, as every stage encodes its corpus: cached on disk under `cache_dir`
    unless None, in two processes for a corpus large enough to repay starting them."""
    return cached_encode(numericalizer, texts, cache_dir, workers=_workers(texts))


__all__ = ["cached_encode", "encode", "fit_encode", "cache_key", "texts_digest", "token_cache_dir", "index_dir", "CACHE_MIN_CHARS", "FORMAT_VERSION"]
