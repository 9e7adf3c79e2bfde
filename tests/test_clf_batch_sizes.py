"""A classifier trains on any number of documents with any batch size: a last training batch too
small for BatchNorm (one document, or one per process) is merged into the batch before it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ulmfit
from ulmfit_cli.data.batching import ClassifierBatches


def docs_and_labels(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(5, 50, size=int(k)) for k in rng.integers(3, 40, size=n)], rng.integers(0, 3, size=n)


@pytest.mark.parametrize("bs", [4, 8, 32])
def test_one_document_left_over_joins_the_batch_before(bs):
    docs, labels = docs_and_labels(3 * bs + 1)
    batches = ClassifierBatches(docs, labels, bs, 1, 10, seed=0)
    assert len(batches) == 3
    for epoch in range(3):
        got = list(batches.epoch(epoch))
        assert len(got) == 3 and sorted(len(b.idx) for b in got) == [bs, bs, bs + 1]
        assert sorted(int(i) for b in got for i in b.idx) == list(range(3 * bs + 1))  # every document, once
        assert all(len(b.y) == len(b.idx) == b.x.size(0) for b in got)


def test_two_documents_left_over_are_kept_on_one_process():
    docs, labels = docs_and_labels(3 * 8 + 2)
    batches = ClassifierBatches(docs, labels, 8, 1, 10)
    assert len(batches) == 4 and sorted(len(b.idx) for b in batches.epoch(0)) == [2, 8, 8, 8]


@pytest.mark.parametrize("n,world,batches", [(3 * 8 + 3, 2, 3), (3 * 8 + 4, 2, 4), (3 * 8 + 5, 3, 3), (3 * 8 + 6, 3, 4)])
def test_a_rank_slice_of_one_document_is_merged_under_ddp(n, world, batches):
    docs, labels = docs_and_labels(n)
    seen = []
    for rank in range(world):
        loader = ClassifierBatches(docs, labels, 8, 1, 10, rank=rank, world_size=world)
        got = list(loader.epoch(0))
        assert len(loader) == len(got) == batches
        assert all(len(b.idx) >= 2 for b in got)
        seen += [int(i) for b in got for i in b.idx]
    assert sorted(seen) == list(range(n))


def test_train_clf_with_k_times_bs_plus_one_documents(tmp_path):
    """A real CSV whose training split is 4 x 16 + 1 documents: trains, scores and finishes."""
    rng = np.random.default_rng(1)
    words = {"pos": ["great", "superb", "fine", "lovely"], "neg": ["awful", "bad", "dull", "poor"]}

    def write(name: str, n: int) -> None:
        rows = ["text,label"]
        for _ in range(n):
            label = str(rng.choice(["pos", "neg"]))
            rows.append(f"{' '.join(rng.choice(words[label], size=6))} movie,{label}")
        (tmp_path / name).write_text("\n".join(rows) + "\n")

    write("train.csv", 4 * 16 + 1)
    write("valid.csv", 20)
    write("test.csv", 20)
    ulmfit("train-clf", "experiment=quickstart", "progress=none", "lm=null", "bidirectional=fwd", "dataset=csv",
           f"dataset.train_file={tmp_path / 'train.csv'}", f"dataset.valid_file={tmp_path / 'valid.csv'}",
           f"dataset.test_file={tmp_path / 'test.csv'}", "train.bs=16", "train.epochs=2", cwd=tmp_path)
    run = next((tmp_path / "outputs" / "train-clf").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_train"] == 65
    steps = [int(line.split(",")[3]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert steps[:2] == [4, 4]  # 4 batches an epoch, the 65th document in one of them
