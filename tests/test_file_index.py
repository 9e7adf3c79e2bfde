"""What a run learns about a large corpus file (where its documents start, their digest), kept in the
token cache's index/ so that a second run reads neither the file nor its documents (data/file_index.py)."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from ulmfit_cli.config import DatasetConfig
from ulmfit_cli.data import file_index, load_dataset
from ulmfit_cli.data import corpora
from ulmfit_cli.data import token_cache as tc
from ulmfit_cli.data.corpora import _wiki_file_articles
from ulmfit_cli.data.file_texts import FileTexts

ARTICLES = "".join(f" = Title {i} = \n \n Body of {i} , caf\u00e9 .\n" for i in range(60))


def _old(path, seconds=60):
    """Set the file's times back, as for a corpus written some time ago (its change time stays now)."""
    then = time.time_ns() - seconds * 10**9
    os.utime(path, ns=(then, then))


@pytest.fixture
def trusted(monkeypatch):
    """Index a file however recently it changed (the change time that utime sets is now)."""
    monkeypatch.setattr(file_index, "RECENT_NS", 0)


def _no_scan(monkeypatch):
    def scan(*a, **k):
        raise AssertionError("the file was scanned again")
    monkeypatch.setattr(corpora, "scan_lines", scan)


def test_kept_arrays_round_trip_and_a_changed_file_is_not_matched(tmp_path, trusted):
    path = tmp_path / "f.txt"
    path.write_bytes(b"abc\n")
    st = file_index.identity(path)
    name = file_index.key(st, b"what")
    assert file_index.keep(tmp_path / "index", name, path, st, {"a": np.arange(3), "n": np.int64(7)})
    kept = file_index.load(tmp_path / "index", name)
    assert kept["a"].tolist() == [0, 1, 2] and int(kept["n"]) == 7
    assert file_index.key(st, b"other") != name
    # the same size and the same modification time, other bytes: the change time tells them apart
    time.sleep(0.05)  # past a tick of the filesystem's clock
    path.write_bytes(b"abd\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = file_index.identity(path)
    assert again.st_size == st.st_size and again.st_mtime_ns == st.st_mtime_ns
    assert file_index.key(again, b"what") != name


def test_a_file_changed_while_read_or_just_now_is_not_kept(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    path.write_bytes(b"abc\n")
    st = file_index.identity(path)
    index = tmp_path / "index"
    assert not file_index.keep(index, "n", path, st, {"a": np.arange(3)})  # written just now
    monkeypatch.setattr(file_index, "RECENT_NS", 0)
    path.write_bytes(b"abcd\n")  # changed while it was being read
    assert not file_index.keep(index, "n", path, st, {"a": np.arange(3)})
    assert not index.exists() and not file_index.keep(None, "n", path, st, {"a": np.arange(3)})


def test_an_unreadable_index_entry_is_computed_again(tmp_path, trusted, caplog):
    index = tmp_path / "index"
    index.mkdir()
    (index / "n.npz").write_bytes(b"not a zip")
    assert file_index.load(index, "n") is None and "unreadable" in caplog.text
    assert file_index.load(index, "missing") is None and file_index.load(None, "n") is None


def test_wikitext_articles_are_found_once(tmp_path, monkeypatch, trusted):
    path = tmp_path / "wiki.train.tokens"
    path.write_bytes(ARTICLES.encode() + b" = Bad = \n x \xff\n")
    _old(path)
    first_warnings, warnings = [], []
    first = _wiki_file_articles(path, first_warnings, tmp_path / "index")
    _no_scan(monkeypatch)
    again = _wiki_file_articles(path, warnings, tmp_path / "index")
    assert np.array_equal(again.starts, first.starts) and np.array_equal(again.ends, first.ends)
    assert list(again) == list(first) and len(first) == 61 and warnings == first_warnings != []
    path.write_bytes(ARTICLES.encode())  # changed: found again, from the new bytes
    monkeypatch.undo()
    monkeypatch.setattr(file_index, "RECENT_NS", 0)
    changed = _wiki_file_articles(path, [], tmp_path / "index")
    assert len(changed) == 60 and changed[-1] == "= Title 59 =\nBody of 59 , caf\u00e9 ."


def test_the_digest_of_a_files_documents_is_computed_once(tmp_path, monkeypatch, trusted):
    path = tmp_path / "wiki.train.tokens"
    path.write_text(ARTICLES, encoding="utf-8")
    _old(path)
    texts = _wiki_file_articles(path, [])
    expected = tc._digest(list(texts))
    index = tmp_path / "index"
    assert tc.texts_digest(texts, index) == expected
    part = texts.take([3, 1, 2])
    assert tc.texts_digest(part, index) == tc._digest(list(part)) != expected

    def unread(self, i):
        raise AssertionError("a document was read")
    monkeypatch.setattr(FileTexts, "_read", unread)
    assert tc.texts_digest(texts, index) == expected and tc.texts_digest(part, index) != expected
    # other spans or another transform of the same file are other documents
    with pytest.raises(AssertionError, match="was read"):
        tc.texts_digest(texts.take([0, 1]), index)
    with pytest.raises(AssertionError, match="was read"):
        tc.texts_digest(FileTexts(path, texts.starts, texts.ends), index)
    assert len(list(index.iterdir())) == 2


def test_a_second_run_reads_neither_the_file_nor_its_documents(tmp_path, monkeypatch, trusted):
    """The stages' path: the reader and the token cache share the cache's index/."""
    (tmp_path / "wiki.train.tokens").write_text(ARTICLES * 20, encoding="utf-8")
    for split in ("valid", "test"):
        (tmp_path / f"wiki.{split}.tokens").write_text(ARTICLES, encoding="utf-8")
    for p in tmp_path.glob("wiki.*"):
        _old(p)
    monkeypatch.setattr(tc, "CACHE_MIN_CHARS", 0)
    cache = tmp_path / "cache"
    cfg = DatasetConfig(name="wikitext103", data_dir=str(tmp_path))
    tokenizer = {"name": "word", "max_vocab": 100, "min_freq": 1}

    def run():
        data = load_dataset(cfg, index_dir=tc.index_dir(cache), lm_files=False)
        return tc.fit_encode(data.train_texts, tokenizer, cache)
    num, docs = run()
    monkeypatch.setattr(FileTexts, "_read", lambda self, i: pytest.fail("a document was read"))
    _no_scan(monkeypatch)
    num2, docs2 = run()
    assert num2.itos == num.itos and len(docs2) == len(docs)
    assert all(np.array_equal(a, b) for a, b in zip(docs, docs2))
