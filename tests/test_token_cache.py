"""The on-disk cache of numericalized corpora (ulmfit_cli/data/token_cache.py)."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from ulmfit_cli.data import token_cache as tc
from ulmfit_cli.data.tokenizers import WordNumericalizer, fit_numericalizer

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "",
    "THIS is GREAT!!!! Don't you think so, Mr. Smith?",
    "line one\nline two\n\nline three",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u2014 unicode",
] * 3


@pytest.fixture
def numer() -> WordNumericalizer:
    return fit_numericalizer(TEXTS, {"name": "word", "max_vocab": 100, "min_freq": 1})


def _files(d):
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def _equal(a, b) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))


def _no_encode(monkeypatch, numer):
    def boom(*a, **k):
        raise AssertionError("encode_many called on a cache hit")
    monkeypatch.setattr(numer, "encode_many", boom)


def test_miss_then_hit_is_memory_mapped(tmp_path, numer, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="ulmfit")
    expected = numer.encode_many(TEXTS)
    first = tc.cached_encode(numer, TEXTS, tmp_path, min_chars=0)
    assert _equal(first, expected)
    names = _files(tmp_path)
    assert len(names) == 2 and names[0].endswith(".offsets.npy") and names[1].endswith(".tokens.npy")
    assert names[0].split(".")[0] == names[1].split(".")[0] == tc.cache_key(numer, TEXTS)[:32]
    assert any("token cache miss" in r.getMessage() for r in caplog.records)

    caplog.clear()
    _no_encode(monkeypatch, numer)
    second = tc.cached_encode(numer, TEXTS, tmp_path, min_chars=0)
    assert _equal(second, expected)
    assert any("token cache hit" in r.getMessage() for r in caplog.records)
    base = second[0]
    while not isinstance(base, np.memmap) and getattr(base, "base", None) is not None:
        base = base.base
    assert isinstance(base, np.memmap)
    assert all(not a.flags.writeable for a in second)
    # zero-copy: consecutive documents are adjacent slices of one buffer
    assert second[1].__array_interface__["data"][0] == \
        second[0].__array_interface__["data"][0] + second[0].nbytes
    assert _files(tmp_path) == names


def test_fitted_vocabulary_is_cached_beside_the_ids(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="ulmfit")
    cfg = {"name": "word", "max_vocab": 100, "min_freq": 1}
    expected = fit_numericalizer(TEXTS, cfg)
    monkeypatch.setattr(tc, "CACHE_MIN_CHARS", 0)
    num, docs = tc.fit_encode(TEXTS, cfg, tmp_path)
    assert num.itos == expected.itos and _equal(docs, expected.encode_many(TEXTS))
    assert sum(n.endswith(".vocab.json") for n in _files(tmp_path)) == 1 and len(_files(tmp_path)) == 3

    def boom(*a, **k):
        raise AssertionError("tokenized on a cache hit")
    monkeypatch.setattr(tc, "fit_and_encode", boom)
    monkeypatch.setattr(WordNumericalizer, "encode_many", boom)
    again, docs2 = tc.fit_encode(TEXTS, cfg, tmp_path)
    assert again.itos == expected.itos and _equal(docs2, docs)
    assert any("vocabulary of" in r.getMessage() and "read" in r.getMessage() for r in caplog.records)
    with pytest.raises(AssertionError, match="tokenized"):  # other settings or texts: fitted again
        tc.fit_encode(TEXTS, {**cfg, "max_vocab": 50}, tmp_path)
    with pytest.raises(AssertionError, match="tokenized"):
        tc.fit_encode(TEXTS[:-1], cfg, tmp_path)


def test_damaged_vocabulary_is_fitted_again(tmp_path, monkeypatch, caplog):
    cfg = {"name": "word", "max_vocab": 100, "min_freq": 1}
    monkeypatch.setattr(tc, "CACHE_MIN_CHARS", 0)
    num, docs = tc.fit_encode(TEXTS, cfg, tmp_path)
    vocab = next(p for p in tmp_path.iterdir() if p.name.endswith(".vocab.json"))
    vocab.write_text('{"kind": "word", "itos": [')
    again, docs2 = tc.fit_encode(TEXTS, cfg, tmp_path)
    assert again.itos == num.itos and _equal(docs2, docs)
    assert any("unreadable vocabulary" in r.getMessage() for r in caplog.records)
    assert tc._load_vocab(vocab) is not None  # rewritten whole


def test_spm_vocabulary_with_its_model_bytes_round_trips(tmp_path, monkeypatch):
    texts = [f"the {w} sat on the mat near a {w} tree." for w in ("cat", "dog", "bird", "fox")] * 60
    cfg = {"name": "spm", "vocab_size": 60}
    monkeypatch.setattr(tc, "CACHE_MIN_CHARS", 0)
    num, docs = tc.fit_encode(texts, cfg, tmp_path)
    monkeypatch.setattr(tc, "fit_and_encode", lambda *a, **k: pytest.fail("fitted on a hit"))
    again, docs2 = tc.fit_encode(texts, cfg, tmp_path)
    assert again.state() == num.state() and _equal(docs2, docs)


def test_key_depends_on_tokenizer_and_texts(tmp_path, numer):
    tc.cached_encode(numer, TEXTS, tmp_path, min_chars=0)
    other = fit_numericalizer(TEXTS[:3], {"name": "word", "max_vocab": 100, "min_freq": 1})
    assert other.itos != numer.itos
    changed = TEXTS[:-1] + [TEXTS[-1] + "!"]
    # moving a boundary between two texts must change the key, as must the order
    split = ["ab", "c"] + TEXTS
    keys = {tc.cache_key(numer, TEXTS), tc.cache_key(other, TEXTS), tc.cache_key(numer, changed),
            tc.cache_key(numer, ["a", "bc"] + TEXTS), tc.cache_key(numer, split),
            tc.cache_key(numer, TEXTS[::-1]), tc.cache_key(numer, TEXTS[:-1])}
    assert len(keys) == 7
    # same vocabulary, different max_vocab/min_freq in the state: still a different entry (conservative)
    same_itos = WordNumericalizer(numer.itos, max_vocab=7, min_freq=9)
    assert tc.cache_key(same_itos, TEXTS) != tc.cache_key(numer, TEXTS)
    assert tc.cache_key(WordNumericalizer(numer.itos, numer.max_vocab, numer.min_freq), TEXTS) == \
        tc.cache_key(numer, TEXTS)

    out = tc.cached_encode(other, TEXTS, tmp_path, min_chars=0)
    assert _equal(out, other.encode_many(TEXTS))
    out = tc.cached_encode(numer, changed, tmp_path, min_chars=0)
    assert _equal(out, numer.encode_many(changed))
    assert len(_files(tmp_path)) == 6


@pytest.mark.parametrize("damage", ["truncate_tokens", "truncate_offsets", "delete_offsets", "garbage_tokens",
                                    "wrong_offsets"])
def test_damaged_entry_is_recomputed(tmp_path, numer, damage, monkeypatch):
    expected = numer.encode_many(TEXTS)
    tc.cached_encode(numer, TEXTS, tmp_path, min_chars=0)
    tok, off = tc._paths(tmp_path, tc.cache_key(numer, TEXTS))
    if damage == "truncate_tokens":
        tok.write_bytes(tok.read_bytes()[:-12])
    elif damage == "truncate_offsets":
        off.write_bytes(off.read_bytes()[:100])
    elif damage == "delete_offsets":
        off.unlink()
    elif damage == "garbage_tokens":
        tok.write_bytes(b"not an npy file at all")
    else:
        np.save(off, np.arange(len(TEXTS) + 1, dtype=np.int64))
    out = tc.cached_encode(numer, TEXTS, tmp_path, min_chars=0)
    assert _equal(out, expected)
    # rewritten: the next call is a clean hit with the right arrays
    _no_encode(monkeypatch, numer)
    again = tc.cached_encode(numer, TEXTS, tmp_path, min_chars=0)
    assert _equal(again, expected)


@pytest.mark.parametrize("how", ["file_in_the_way", "permission_denied", "chmod"])
def test_unwritable_cache_dir_only_warns(tmp_path, numer, monkeypatch, caplog, how):
    if how == "file_in_the_way":
        (tmp_path / "blocker").write_text("x")
        cache_dir = tmp_path / "blocker" / "cache"
    elif how == "permission_denied":
        cache_dir = tmp_path / "cache"

        def denied(*a, **k):
            raise PermissionError(13, "Permission denied")
        import ulmfit_cli.fileutil as fileutil  # the atomic writer the cache uses
        monkeypatch.setattr(fileutil.tempfile, "mkstemp", denied)
    else:
        if os.geteuid() == 0:
            pytest.skip("root ignores directory permissions")
        cache_dir = tmp_path / "ro"
        cache_dir.mkdir()
        cache_dir.chmod(0o555)
    caplog.set_level(logging.INFO, logger="ulmfit")
    try:
        out = tc.cached_encode(numer, TEXTS, cache_dir, min_chars=0)
    finally:
        if how == "chmod":
            cache_dir.chmod(0o755)
    assert _equal(out, numer.encode_many(TEXTS))
    assert any(r.levelno == logging.WARNING and "could not write" in r.getMessage() for r in caplog.records)
    if cache_dir.is_dir():
        assert not any(p.suffix == ".npy" for p in cache_dir.iterdir())
        assert not any(p.name.endswith(".tmp") for p in cache_dir.iterdir())


def test_disabled_or_small_inputs_write_nothing(tmp_path, numer):
    expected = numer.encode_many(TEXTS)
    assert _equal(tc.cached_encode(numer, TEXTS, None, min_chars=0), expected)
    # below the size threshold: not cached
    assert _equal(tc.cached_encode(numer, TEXTS, tmp_path / "c"), expected)
    assert not (tmp_path / "c").exists()
    # empty input
    assert len(tc.cached_encode(numer, [], tmp_path / "e", min_chars=0)) == 0


def test_empty_corpus_entry_round_trips(tmp_path, numer, monkeypatch):
    texts = ["", "", ""]
    expected = numer.encode_many(texts)
    tc.cached_encode(numer, texts, tmp_path, min_chars=0)
    _no_encode(monkeypatch, numer)
    assert _equal(tc.cached_encode(numer, texts, tmp_path, min_chars=0), expected)


def test_token_cache_dir_from_config(tmp_path, monkeypatch):
    monkeypatch.setenv("ULMFIT_DATA", str(tmp_path / "data"))
    assert tc.token_cache_dir({"token_cache": None, "data_root": None}) == tmp_path / "data" / "token_cache"
    # data_root (the corpora, maybe shared or read-only) does not move the cache
    assert tc.token_cache_dir({"token_cache": None, "data_root": str(tmp_path / "d")}) == tmp_path / "data" / "token_cache"
    assert tc.token_cache_dir({"token_cache": str(tmp_path / "tc"), "data_root": None}) == tmp_path / "tc"
    for off in ("off", "OFF", "false", "False", "none", False):
        assert tc.token_cache_dir({"token_cache": off, "data_root": None}) is None


def test_stage_config_accepts_token_cache():
    """The typed stage schema declares the key, and `_common.yaml` defaults it (env override)."""
    pytest.importorskip("hydra")
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from ulmfit_cli.config import register

    register()
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        for name in ("pretrain", "finetune_lm", "train_clf"):
            assert compose(name).token_cache in (None, os.environ.get("ULMFIT_TOKEN_CACHE"))
            assert tc.token_cache_dir(compose(name, overrides=["token_cache=off"])) is None


def test_cached_documents_are_views_made_on_demand(tmp_path, numer):
    from ulmfit_cli.data.batching import LMStream

    expected = numer.encode_many(TEXTS)
    tc.cached_encode(numer, TEXTS, tmp_path, min_chars=0)
    docs = tc.cached_encode(numer, TEXTS, tmp_path, min_chars=0)
    assert isinstance(docs, tc.DocIds) and len(docs) == len(TEXTS)
    assert np.array_equal(docs[-1], expected[-1]) and np.array_equal(docs[1], expected[1]) and len(docs[1]) == 1
    assert _equal(docs[2:6], expected[2:6]) and _equal(list(docs), expected)
    assert docs.lengths().tolist() == [len(d) for d in expected]
    with pytest.raises(IndexError):
        docs[len(TEXTS)]
    a, b = LMStream(docs, 2, 5, seed=1), LMStream(expected, 2, 5, seed=1)
    assert all(np.array_equal(x.x, y.x) and np.array_equal(x.y, y.y) for x, y in zip(a.epoch(0), b.epoch(0)))
