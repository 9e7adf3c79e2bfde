"""Documents read from their file on demand (data/file_texts.py), the WikiText reader built on them,
and the chunked, spilled tokenization that keeps a large corpus out of memory."""
from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ulmfit_cli.config import DatasetConfig, TokenizerConfig
from ulmfit_cli.data import load_dataset
from ulmfit_cli.data import token_cache as tc
from ulmfit_cli.data.corpora import _wiki_articles, _wiki_file_articles
from ulmfit_cli.data.file_texts import FileTexts
from ulmfit_cli.data.formats import decode
from ulmfit_cli.data.tokenizers import fit_numericalizer, pool, split_ids
from ulmfit_cli.data.tokenizers.base import fit_and_encode
from ulmfit_cli.data.tokenizers.ids import IdWriter
from ulmfit_cli.errors import UserError

TRICKY = {
    "plain": b" = A = \n \n x y\n = = S = = \n z\n = B = \n w\n",
    "crlf": b" = A = \r\n \r\n x y\r\n = B = \r\n w\r\n",
    "bom": b"\xef\xbb\xbf = A = \n x\n = B = \n y",
    "blank_before_first_heading": b" \n \xc2\xa0\n = A = \n x\n",
    "text_before_first_heading": b"intro\n = A = \n x\n",
    "no_heading": b"a\nb\n\nc",
    "empty": b"",
    "only_blank_lines": b"\n \n\n",
    "heading_after_u2028": " = A = \n x\u2028 = B = \n y\n".encode(),
    "heading_after_nel": " = A = \n x\u0085 = B = \n y\n".encode(),
    "lone_cr": b" = A = \r x\r = B = \ry",
    "bad_byte": b" = A = \n x \xff\n = B = \n y\n",
    "one_letter_heading": " = \u00e9 = \n x\n = b = \n y\n".encode(),
}
PIECES = [b" = T = ", b"= T =", b" = = S = = ", b"", b" ", b"text", b"\xff", "\u2028".encode(), b"\r", b"\x0c",
          b" = \xc3\xa9 = ", b"=", b" = x", "\x85".encode(), b"a\xc2\x85 = T = ", b"\xc2\xa0"]


def _random_files(n: int) -> dict[str, bytes]:
    rng = random.Random(0)
    out = {}
    for k in range(n):
        parts = [rng.choice(PIECES) for _ in range(rng.randint(0, 12))]
        ends = [rng.choice([b"\n", b"\r\n", b"\n", b""]) for _ in parts]
        out[f"random{k}"] = (b"\xef\xbb\xbf" if rng.random() < .1 else b"") + b"".join(p + e for p, e in zip(parts, ends))
    return out


@pytest.mark.parametrize("name,raw", list(TRICKY.items()) + list(_random_files(300).items()))
def test_wikitext_read_on_demand_equals_read_whole(tmp_path, name, raw):
    path = tmp_path / "wiki.train.tokens"
    path.write_bytes(raw)
    whole_warnings, lazy_warnings = [], []
    whole = _wiki_articles(decode(raw, path, whole_warnings))
    lazy = _wiki_file_articles(path, lazy_warnings)
    assert isinstance(lazy, FileTexts) and list(lazy) == whole and lazy_warnings == whole_warnings
    assert all(lazy.sizes() >= [len(t) for t in whole])


def test_a_file_texts_is_a_sequence_that_pickles_as_spans(tmp_path):
    path = tmp_path / "wiki.train.tokens"
    path.write_bytes(b"".join(f" = T{i} = \n body {i}\n".encode() for i in range(50)))
    texts = _wiki_file_articles(path, [])
    assert len(texts) == 50 and texts[3] == "= T3 =\nbody 3" and texts[-1] == "= T49 =\nbody 49"
    assert texts[10:13] == ["= T10 =\nbody 10", "= T11 =\nbody 11", "= T12 =\nbody 12"]
    assert list(texts.take([5, 2])) == [texts[5], texts[2]]
    assert texts + ["x"] == list(texts) + ["x"] and ["x"] + texts == ["x"] + list(texts)
    with pytest.raises(IndexError):
        texts[50]
    part = texts[40:]
    blob = pickle.dumps(part)
    assert len(blob) < 2000 and b"body 45" not in blob  # spans, not text
    assert pickle.loads(blob) == part
    path.write_bytes(path.read_bytes().replace(b"body 45", b"BODY 45"))  # same size, a later time
    os.utime(path, ns=(texts.stamp[1] + 10**9, texts.stamp[1] + 10**9))
    with pytest.raises(UserError, match="changed while this run was reading it"):
        pickle.loads(blob)[5]


def test_wikitext_dataset_keeps_its_train_split_in_the_file(tmp_path):
    article = " = Title {n} = \n \n Para of {n} .\n"
    (tmp_path / "wiki.train.tokens").write_text("".join(article.format(n=i) for i in range(40)), encoding="utf-8")
    (tmp_path / "wiki.valid.tokens").write_text(article.format(n="v"), encoding="utf-8")
    (tmp_path / "wiki.test.tokens").write_text(article.format(n="t"), encoding="utf-8")
    ds = load_dataset(DatasetConfig(name="wikitext103", data_dir=str(tmp_path), max_train_examples=30))
    assert isinstance(ds.train_texts, FileTexts) and len(ds.train_texts) == 30
    every = {f"= Title {i} =\nPara of {i} ." for i in range(40)}
    assert set(ds.train_texts) < every and len(set(ds.train_texts)) == 30
    # shuffled by split_seed like any corpus: the same order every time
    again = load_dataset(DatasetConfig(name="wikitext103", data_dir=str(tmp_path), max_train_examples=30))
    assert list(again.train_texts) == list(ds.train_texts) != sorted(ds.train_texts)


@pytest.mark.parametrize("to_file", [False, True])
def test_id_writer_maps_every_chunk_through_the_table(tmp_path, to_file):
    writer = IdWriter(tmp_path / "ids.npy" if to_file else None)
    chunks = [np.array([0, 1, 2], np.int32), np.array([], np.int32), np.array([2, 2, 0, 3], np.int32)]
    for c in chunks:
        writer.append(c)
    out = writer.finish(np.array([7, 8, 9, 10], np.int32))
    assert out.dtype == np.int32 and out.tolist() == [7, 8, 9, 9, 9, 7, 10]
    if to_file:
        assert isinstance(out, np.memmap) and np.load(tmp_path / "ids.npy").tolist() == out.tolist()


def test_id_writer_discard_leaves_nothing(tmp_path):
    writer = IdWriter(tmp_path / "ids.npy")
    writer.append(np.arange(5, dtype=np.int32))
    writer.discard()
    assert list(tmp_path.iterdir()) == []


def test_chunks_bound_the_characters_a_process_holds():
    texts = ["x" * 100] * 1000 + ["y" * 5000]
    bounds = pool.chunks(texts, 2, chunk_chars=1000)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(texts)
    assert all(a < b and b == c for (a, b), (c, _) in zip(bounds, bounds[1:]))
    sizes = [sum(map(len, texts[a:b])) for a, b in bounds]
    assert max(sizes[:-1]) <= 1100 and len(bounds) >= 100
    assert pool.chunks(["a", "b"], 2) == [(0, 1), (1, 2)] and pool.chunks([], 2) == []


def _entries(cache: Path) -> list[str]:
    """The token cache's entries, without index/ (what was learned about the corpus file, kept or
    not by the file's age: see test_file_index.py)."""
    return sorted(p.name for p in cache.iterdir() if p.name != "index")


def _corpus_file(path: Path, n_articles: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    words = ["alpha", "Beta", "GAMMA", "delta", "don't", "!!!!", "x", "y"] + [f"w{i}" for i in range(300)]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_articles):
            f.write(f" = Article {i % 100} = \n")  # a bounded set of words: the test is of the text, not its vocabulary
            for _ in range(rng.randint(1, 4)):
                f.write(" " + " ".join(rng.choice(words) for _ in range(rng.randint(1, 60))) + " \n \n")


@pytest.mark.parametrize("workers", [1, 2])
def test_chunked_one_pass_over_a_file_equals_fit_then_encode(tmp_path, monkeypatch, workers):
    path = tmp_path / "wiki.train.tokens"
    _corpus_file(path, 400)
    texts = _wiki_file_articles(path, [])
    monkeypatch.setattr(pool, "PARALLEL_MIN_CHARS", 0)
    monkeypatch.setattr(pool, "CHUNK_CHARS", 5000)  # dozens of chunks
    cfg = TokenizerConfig(min_freq=2, max_vocab=200)
    expected = fit_numericalizer(list(texts), cfg)
    for out in (None, tmp_path / "spill.npy"):
        num, flat, lens = fit_and_encode(texts, cfg, workers, out)
        assert num.itos == expected.itos
        assert all(np.array_equal(a, expected.encode(t)) for a, t in zip(split_ids(flat, lens), texts))


def test_cache_miss_writes_the_ids_once_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    path = tmp_path / "wiki.train.tokens"
    _corpus_file(path, 200)
    texts = _wiki_file_articles(path, [])
    monkeypatch.setattr(tc, "CACHE_MIN_CHARS", 0)
    cfg = {"name": "word", "max_vocab": 100, "min_freq": 1}
    num, docs = tc.fit_encode(texts, cfg, tmp_path / "cache")
    names = _entries(tmp_path / "cache")
    assert len(names) == 3 and not any("tmp" in n for n in names)
    again, docs2 = tc.fit_encode(texts, cfg, tmp_path / "cache")
    assert again.itos == num.itos and all(np.array_equal(a, b) for a, b in zip(docs, docs2))
    assert all(np.array_equal(a, num.encode(t)) for a, t in zip(docs2, texts))

    def stop(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(pool, "CHUNK_CHARS", 500)
    monkeypatch.setattr("ulmfit_cli.data.tokenizers.word.vocabulary", stop)  # after the ids are written
    with pytest.raises(KeyboardInterrupt):
        tc.fit_encode(texts, {**cfg, "max_vocab": 50}, tmp_path / "cache")
    assert _entries(tmp_path / "cache") == names


@pytest.mark.parametrize("workers", [1, 2])
def test_cache_miss_of_encode_writes_chunk_by_chunk_and_a_stop_leaves_nothing(tmp_path, monkeypatch, workers):
    """A corpus encoded with a vocabulary it was not fitted on (the valid split, finetune-lm's
    target corpus): the same ids as `encode`, read from the entry's file, and no file left by a stop."""
    path = tmp_path / "wiki.train.tokens"
    _corpus_file(path, 400)
    texts = _wiki_file_articles(path, [])
    num = fit_numericalizer(list(texts)[:50], TokenizerConfig(min_freq=1, max_vocab=150))
    monkeypatch.setattr(pool, "PARALLEL_MIN_CHARS", 0)
    monkeypatch.setattr(pool, "CHUNK_CHARS", 5000)  # dozens of chunks
    docs = tc.cached_encode(num, texts, tmp_path / "cache", workers, min_chars=0)
    assert len(docs) == len(texts) and all(np.array_equal(a, num.encode(t)) for a, t in zip(docs, texts))
    assert isinstance(docs, tc.DocIds) and isinstance(docs.tokens.base, np.memmap)
    names = _entries(tmp_path / "cache")
    assert len(names) == 2 and not any("tmp" in n for n in names)

    seen = []

    def stop_at_the_third_chunk(*a, **k):
        seen.append(1)
        if len(seen) == 3:
            raise KeyboardInterrupt
        return write(*a, **k)
    write = IdWriter.append
    monkeypatch.setattr(IdWriter, "append", stop_at_the_third_chunk)
    other = fit_numericalizer(list(texts)[50:100], TokenizerConfig(min_freq=1, max_vocab=150))
    with pytest.raises(KeyboardInterrupt):
        tc.cached_encode(other, texts, tmp_path / "cache", workers, min_chars=0)
    assert _entries(tmp_path / "cache") == names


def _peak_growth_mb(tmp_path: Path, n_articles: int, how: str = "fit") -> tuple[float, float]:
    """(the peak RSS a process gains reading a WikiText folder and fitting + encoding its train file
    into the cache (`how`="fit"), or encoding it with a vocabulary fitted before ("encode"), the
    train file's size), both in MB."""
    corpus, tiny = tmp_path / f"corpus{n_articles}", tmp_path / f"tiny{n_articles}"
    for folder, n in ((corpus, n_articles), (tiny, 3000)):
        folder.mkdir()
        _corpus_file(folder / "wiki.train.tokens", n)
        for name in ("valid", "test"):
            (folder / f"wiki.{name}.tokens").write_text(" = V = \n a b c \n", encoding="utf-8")
    script = textwrap.dedent(f"""
        import resource
        from ulmfit_cli.config import DatasetConfig, TokenizerConfig
        from ulmfit_cli.data import file_texts, load_pretraining_corpus
        from ulmfit_cli.data.token_cache import encode, fit_encode
        from ulmfit_cli.data.tokenizers import pool

        # what is held at once, whatever the corpus: a block of the file read, a chunk tokenized
        file_texts._BLOCK, pool.CHUNK_CHARS = 1 << 20, 500_000

        def fit(folder):
            data = load_pretraining_corpus(DatasetConfig(name="wikitext103", data_dir=folder))
            return fit_encode(data.train_texts, TokenizerConfig(max_vocab=1000), folder + "/cache")

        def encode_only(folder):
            data = load_pretraining_corpus(DatasetConfig(name="wikitext103", data_dir=folder))
            return encode(vocab, data.train_texts, folder + "/cache-encoded")

        vocab = fit({str(tiny)!r})[0]  # every import and the worker pool's set-up, before the baseline
        run = {{"fit": lambda folder: fit(folder)[1], "encode": encode_only}}[{how!r}]
        run({str(tiny)!r})
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert len(run({str(corpus)!r})) == {n_articles}
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return float(out), (corpus / "wiki.train.tokens").stat().st_size / 2**20


@pytest.mark.parametrize("how", ["fit", "encode"])
def test_peak_memory_of_a_file_corpus_does_not_grow_with_it(tmp_path, how):
    """The paths a pretraining run takes (fit: the train split), and encoding with a vocabulary
    fitted before (encode: the valid split, finetune-lm's corpora), on a corpus and on one four times
    its size: the peak grows by a small part of the text added (0.2-0.3x here; reading it whole, as
    strings split into lines and joined into articles, grew it by 3.9x the text added in fit, and
    holding every document's ids until they were all made by 3.2x in encode)."""
    small, small_mb = _peak_growth_mb(tmp_path, 15000, how)
    large, large_mb = _peak_growth_mb(tmp_path, 60000, how)
    assert large_mb - small_mb > 15
    assert large - small < 0.5 * (large_mb - small_mb), (small, large, small_mb, large_mb)


def test_finetune_lm_keeps_a_files_documents_in_the_file_when_nothing_is_added(tmp_path):
    """finetune-lm's text is train + unlabelled + (test): with only a file's train split, that
    split itself (a list would hold a 100M-token corpus in memory, 3 GB at its peak)."""
    from ulmfit_cli.data.types import joined

    path = tmp_path / "wiki.train.tokens"
    _corpus_file(path, 20)
    texts = _wiki_file_articles(path, [])
    assert joined(texts, [], []) is texts and joined([], texts) is texts
    assert joined(texts, ["extra"], []) == list(texts) + ["extra"] and joined([], []) == []
