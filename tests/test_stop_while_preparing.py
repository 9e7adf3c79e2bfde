"""A signal before training starts (reading and tokenizing a large corpus can take minutes) stops the
run at once, leaves no half-written cache file and no worker behind; once training has started it
lets the batch finish and saves, as before."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_file_texts import _corpus_file
from ulmfit_cli.data.tokenizers import pool
from ulmfit_cli.errors import StoppedPreparing
from ulmfit_cli.runtime import StopFlag, stop_on_signals


def test_a_signal_before_training_stops_at_once_and_after_it_lets_the_batch_finish():
    flag = StopFlag()
    with stop_on_signals(flag), pytest.raises(StoppedPreparing, match="before training began"):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here
    flag = StopFlag(training=True)
    with stop_on_signals(flag):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
    assert flag.requested


def _note(texts):
    """A chunk's work: a line in the file its texts name, then a pause."""
    with open(texts[0], "a") as f:
        f.write("chunk\n")
    time.sleep(0.3)
    return len(texts)


def test_a_chunk_pool_left_early_runs_no_more_than_the_chunks_in_flight(tmp_path, monkeypatch):
    monkeypatch.setattr(pool, "PARALLEL_MIN_CHARS", 0)
    log = tmp_path / "chunks.log"
    texts = [str(log)] * 1600  # 2 workers: 8 chunks (4 per worker)
    parts = pool.imap_chunks(_note, texts, 2)
    assert next(parts) == 200
    parts.close()  # as when the consumer stops with an exception
    # two chunks in flight per worker: the first 4 ran at the most, the other 4 never started
    assert 1 <= len(log.read_text().splitlines()) <= 4
    whole = tmp_path / "whole.log"
    assert sum(pool.imap_chunks(_note, [str(whole)] * 1600, 2)) == 1600
    assert len(whole.read_text().splitlines()) == 8  # the control: read to the end, every chunk runs


@pytest.mark.integration
def test_sigterm_while_tokenizing_a_large_corpus_stops_the_run_within_seconds(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _corpus_file(corpus / "wiki.train.tokens", 120000)  # ~44 MB: tokenizing takes a while on 2 cores
    for name in ("valid", "test"):
        (corpus / f"wiki.{name}.tokens").write_text(" = V = \n a b c \n", encoding="utf-8")
    run, cache = tmp_path / "run", tmp_path / "cache"
    proc = subprocess.Popen([str(Path(sys.executable).with_name("ulmfit")), "pretrain", "dataset=wikitext103",
                             f"dataset.data_dir={corpus}", "model=tiny", f"token_cache={cache}", "progress=none",
                             f"hydra.run.dir={run}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not any(cache.glob("*.tmp")):  # ids are being written: tokenizing has begun
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    time.sleep(1)
    signalled = time.perf_counter()
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    took = time.perf_counter() - signalled
    assert proc.returncode == 130, out
    assert "Stopped by a signal before training began" in out and "Traceback" not in out, out
    assert took < 10, took
    assert not (run / "summary.json").exists() and not (run / "checkpoints").exists()
    # the half-written ids were removed (index/ may hold where the articles start: that was finished)
    assert [p.name for p in cache.iterdir() if p.name != "index"] == []
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
    assert workers == ""
