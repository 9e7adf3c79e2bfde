"""Tests of the embedded `sample` dataset (ulmfit_cli/data/sample.py).

Besides shape, determinism and config caps, these tests check the *design*: without any
neural net, a bag-of-words Naive Bayes trained on the 300 labelled reviews stays clearly
below the ceiling, while the same Naive Bayes over word clusters learnt from unlabelled text
only (document co-occurrence -> PPMI -> SVD -> k-means) does far better. That gap is the
signal a pretrained / fine-tuned language model can exploit.
"""
from __future__ import annotations

import dataclasses
import random
import time
import tracemalloc
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from ulmfit_cli.data import sample as sample_mod
from ulmfit_cli.data.sample import (
    CLASSES,
    N_GENERAL_TEST,
    N_GENERAL_TRAIN,
    N_GENERAL_VALID,
    N_TEST,
    N_TRAIN,
    N_UNLABELLED,
    N_VALID,
    generate_general_corpus,
    generate_sample,
    sentiment_lexicon,
)
from ulmfit_cli.data.types import TextDataset


@pytest.fixture(scope="module")
def ds() -> TextDataset:
    return generate_sample()


@pytest.fixture(scope="module")
def general() -> TextDataset:
    return generate_general_corpus()


def _all_texts(d: TextDataset) -> list[str]:
    return d.train_texts + d.valid_texts + d.test_texts + d.lm_extra


# --------------------------------------------------------------------------------------------
# Tiny numpy analysis toolkit (no scikit-learn)
# --------------------------------------------------------------------------------------------

def _binary_matrix(docs: list[list[str]], vocab: dict[str, int]) -> np.ndarray:
    X = np.zeros((len(docs), len(vocab)))
    for i, doc in enumerate(docs):
        cols = [vocab[w] for w in doc if w in vocab]
        X[i, cols] = 1.0
    return X


class NaiveBayes:
    """Binarised multinomial Naive Bayes with add-one smoothing, two or more classes."""

    def fit(self, docs: list[list[str]], y: np.ndarray) -> "NaiveBayes":
        self.vocab = {w: i for i, w in enumerate(sorted({w for d in docs for w in d}))}
        X = _binary_matrix(docs, self.vocab)
        n_classes = int(y.max()) + 1
        counts = np.stack([X[y == c].sum(0) for c in range(n_classes)]) + 1.0
        self.log_p = np.log(counts / counts.sum(1, keepdims=True))
        self.log_prior = np.log(np.bincount(y, minlength=n_classes) / len(y))
        return self

    def predict(self, docs: list[list[str]]) -> np.ndarray:
        X = _binary_matrix(docs, self.vocab)
        return np.argmax(X @ self.log_p.T + self.log_prior, axis=1)


def _word_vectors(texts: list[str], dims: int = 10, min_df: int = 2) -> tuple[dict[str, int], np.ndarray]:
    """Unit word vectors from document-level co-occurrence (PPMI + truncated eigendecomposition)."""
    docs = [set(t.split()) for t in texts]
    df = Counter(w for d in docs for w in d)
    vocab = {w: i for i, w in enumerate(sorted(w for w, c in df.items() if c >= min_df))}
    B = _binary_matrix([list(d) for d in docs], vocab)
    C = B.T @ B
    np.fill_diagonal(C, 0.0)
    row = C.sum(1, keepdims=True)
    with np.errstate(divide="ignore"):
        pmi = np.log(C * C.sum() / (row @ row.T + 1e-12))
    ppmi = np.where(np.isfinite(pmi), np.maximum(pmi, 0.0), 0.0)
    vals, vecs = np.linalg.eigh(ppmi)
    top = np.argsort(-np.abs(vals))[:dims]
    E = vecs[:, top] * np.sqrt(np.abs(vals[top]))
    E /= np.linalg.norm(E, axis=1, keepdims=True) + 1e-12
    return vocab, E


def _kmeans(E: np.ndarray, k: int, iters: int = 30) -> np.ndarray:
    """Spherical k-means with deterministic farthest-point initialisation."""
    centres = [E[0]]
    dist = np.full(len(E), np.inf)
    for _ in range(1, k):
        dist = np.minimum(dist, ((E - centres[-1]) ** 2).sum(1))
        centres.append(E[int(np.argmax(dist))])
    C = np.stack(centres)
    for _ in range(iters):
        assign = np.argmax(E @ C.T, axis=1)
        for j in range(k):
            members = E[assign == j]
            if len(members):
                m = members.mean(0)
                C[j] = m / (np.linalg.norm(m) + 1e-12)
    return np.argmax(E @ C.T, axis=1)


def _labels(d: TextDataset, labels: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(d.classes)}
    return np.array([index[lab] for lab in labels])


def _clustered(texts: list[str], word_to_cluster: dict[str, str]) -> list[list[str]]:
    return [[word_to_cluster[w] for w in t.split() if w in word_to_cluster] for t in texts]


@pytest.fixture(scope="module")
def accuracies(ds: TextDataset) -> dict[str, float]:
    y_train, y_test = _labels(ds, ds.train_labels), _labels(ds, ds.test_labels)
    train_docs = [t.split() for t in ds.train_texts]
    test_docs = [t.split() for t in ds.test_texts]

    bow = NaiveBayes().fit(train_docs, y_train)
    acc_bow = float((bow.predict(test_docs) == y_test).mean())

    # Word clusters learnt from the unlabelled reviews only; the classifier still sees only
    # the 300 labelled training reviews.
    vocab, E = _word_vectors(ds.lm_extra, dims=10)
    assign = _kmeans(E, 50)
    word_to_cluster = {w: f"cluster{assign[i]}" for w, i in vocab.items()}
    clustered = NaiveBayes().fit(_clustered(ds.train_texts, word_to_cluster), y_train)
    acc_clusters = float((clustered.predict(_clustered(ds.test_texts, word_to_cluster)) == y_test).mean())

    majority = float(np.bincount(y_test).max() / len(y_test))
    return {"bow": acc_bow, "clusters": acc_clusters, "majority": majority}


# --------------------------------------------------------------------------------------------
# Shape, sizes, determinism
# --------------------------------------------------------------------------------------------

def test_sizes_and_labels(ds: TextDataset) -> None:
    assert ds.name == "sample"
    assert (len(ds.train_texts), len(ds.valid_texts), len(ds.test_texts)) == (N_TRAIN, N_VALID, N_TEST)
    assert (N_TRAIN, N_VALID, N_TEST) == (300, 150, 500)
    assert len(ds.lm_extra) == N_UNLABELLED
    assert ds.labelled
    for texts, labels in ((ds.train_texts, ds.train_labels), (ds.valid_texts, ds.valid_labels),
                          (ds.test_texts, ds.test_labels)):
        assert len(labels) == len(texts)
        assert set(labels) == set(CLASSES)
    assert ds.classes == sorted(ds.classes) == ["negative", "positive"]
    assert ds.warnings == []


def test_general_corpus_shape(general: TextDataset) -> None:
    assert general.name == "sample_general"
    assert (len(general.train_texts), len(general.valid_texts), len(general.test_texts)) == (
        N_GENERAL_TRAIN, N_GENERAL_VALID, N_GENERAL_TEST)
    assert not general.labelled
    assert general.valid_labels is None and general.test_labels is None
    assert general.classes == [] and general.lm_extra == []


def test_texts_are_clean_tokenised_english(ds: TextDataset, general: TextDataset) -> None:
    for text in _all_texts(ds) + _all_texts(general):
        assert text and text.strip() == text
        assert text == text.lower()
        assert "  " not in text
        assert text.endswith(" .")


def test_token_budget(ds: TextDataset, general: TextDataset) -> None:
    """Roughly 300k-500k whitespace tokens in all, so a tiny LM trains in about a minute."""
    total = sum(len(t.split()) for t in _all_texts(ds) + _all_texts(general))
    assert 300_000 <= total <= 500_000
    # Labelled reviews are short, unlabelled ones longer.
    mean = lambda texts: sum(len(t.split()) for t in texts) / len(texts)  # noqa: E731
    assert mean(ds.train_texts) < 30 < mean(ds.lm_extra)


def test_memory_under_5mb() -> None:
    """Generating both corpora never holds more than 5 MB of Python objects (tracemalloc's peak),
    and what the two datasets keep is at least their characters (one byte each), so the
    measurement sees the texts themselves."""
    tracemalloc.start()
    try:
        kept = (generate_sample(), generate_general_corpus())
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    chars = sum(len(t) for d in kept for t in _all_texts(d))
    assert chars > 1_000_000  # the corpora are not empty: a small peak is not a vacuous one
    assert chars <= held <= peak < 5_000_000, (chars, held, peak)


def test_deterministic_and_independent_of_global_random_state() -> None:
    random.seed(1)
    a, ga = generate_sample(), generate_general_corpus()
    random.seed(2)
    b, gb = generate_sample(), generate_general_corpus()
    assert dataclasses.asdict(a) == dataclasses.asdict(b)
    assert dataclasses.asdict(ga) == dataclasses.asdict(gb)
    assert a.train_texts is not b.train_texts  # fresh lists: callers may mutate them


def test_generation_is_fast() -> None:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        generate_sample()
        generate_general_corpus()
        best = min(best, time.perf_counter() - t0)
    assert best < 1.0


def test_fixed_seed_ignores_split_seed() -> None:
    assert generate_sample(SimpleNamespace(split_seed=1)).train_texts == \
        generate_sample(SimpleNamespace(split_seed=2)).train_texts


def test_labels_balanced(ds: TextDataset) -> None:
    for labels in (ds.train_labels, ds.valid_labels, ds.test_labels):
        frac = labels.count("positive") / len(labels)
        assert 0.44 <= frac <= 0.56


# --------------------------------------------------------------------------------------------
# Config caps
# --------------------------------------------------------------------------------------------

def _dataset_config(**kw):
    config = pytest.importorskip("ulmfit_cli.config")
    return config.DatasetConfig(name="sample", **kw)


def _cfg_variants(**kw):
    yield SimpleNamespace(**kw)
    yield dict(kw)
    yield _dataset_config(**kw)
    omegaconf = pytest.importorskip("omegaconf")
    yield omegaconf.OmegaConf.structured(_dataset_config(**kw))


@pytest.mark.parametrize("variant", range(4))
def test_max_train_examples_keeps_first_n(ds: TextDataset, variant: int) -> None:
    cfg = list(_cfg_variants(max_train_examples=40, max_docs=None))[variant]
    small = generate_sample(cfg)
    assert small.train_texts == ds.train_texts[:40]
    assert small.train_labels == ds.train_labels[:40]
    assert small.valid_texts == ds.valid_texts and small.test_texts == ds.test_texts
    assert small.lm_extra == ds.lm_extra


@pytest.mark.parametrize("variant", range(4))
def test_max_docs_caps_every_split(ds: TextDataset, variant: int) -> None:
    cfg = list(_cfg_variants(max_train_examples=None, max_docs=100))[variant]
    small = generate_sample(cfg)
    assert small.train_texts == ds.train_texts[:100]
    assert small.valid_texts == ds.valid_texts[:100]
    assert small.test_texts == ds.test_texts[:100]
    assert small.lm_extra == ds.lm_extra[:100]
    assert small.test_labels == ds.test_labels[:100]
    assert small.classes == ds.classes


def test_both_caps_and_none(ds: TextDataset) -> None:
    both = generate_sample(SimpleNamespace(max_train_examples=250, max_docs=60))
    assert len(both.train_texts) == len(both.train_labels) == 60
    assert len(generate_sample(SimpleNamespace(max_train_examples=20, max_docs=60)).train_texts) == 20
    unset = generate_sample(_dataset_config())  # both None: full size
    assert dataclasses.asdict(unset) == dataclasses.asdict(ds)


def test_general_corpus_caps(general: TextDataset) -> None:
    small = generate_general_corpus(SimpleNamespace(max_docs=50, max_train_examples=None))
    assert small.train_texts == general.train_texts[:50]
    assert len(small.valid_texts) == len(small.test_texts) == 50


# --------------------------------------------------------------------------------------------
# The design: rare sentiment words, learnable from unlabelled co-occurrence
# --------------------------------------------------------------------------------------------

def test_lexicon_is_disjoint_and_distinct_from_distractors() -> None:
    lex = sentiment_lexicon()
    pos, neg = set(lex["positive"]), set(lex["negative"])
    assert len(pos) == len(lex["positive"]) >= 100 and len(neg) == len(lex["negative"]) >= 100
    assert not pos & neg
    neutral = set(sample_mod.NAMES + sample_mod.CITIES + sample_mod.COLOURS + sample_mod.INTENSIFIERS)
    for d in sample_mod.DOMAINS:
        neutral |= set(d.things + d.aspects + d.people + d.participles + d.neutral_adjectives)
    assert not (pos | neg) & neutral


def test_every_sentiment_word_occurs_in_unlabelled_text(ds: TextDataset, general: TextDataset) -> None:
    lex = sentiment_lexicon()
    counts = Counter(w for t in ds.lm_extra + _all_texts(general) for w in t.split())
    rare = {w: counts[w] for w in lex["positive"] + lex["negative"] if counts[w] < 3}
    assert not rare
    # The general corpus shares most of the sentiment vocabulary (pretraining helps too).
    gen_vocab = {w for t in general.train_texts for w in t.split()}
    shared = [w for w in lex["positive"] + lex["negative"] if w in gen_vocab]
    assert len(shared) >= 0.9 * len(lex["positive"] + lex["negative"])


def test_many_test_reviews_rely_on_rare_or_unseen_words(ds: TextDataset) -> None:
    lex = sentiment_lexicon()
    sentiment = set(lex["positive"] + lex["negative"])
    seen = Counter(w for t in ds.train_texts for w in set(t.split()))
    words = [[w for w in t.split() if w in sentiment] for t in ds.test_texts]
    assert all(words)  # every review expresses an opinion
    never = np.mean([all(seen[w] == 0 for w in ws) for ws in words])
    rarely = np.mean([all(seen[w] <= 2 for w in ws) for ws in words])
    assert never >= 0.05 and rarely >= 0.25


def test_majority_floor(accuracies: dict[str, float]) -> None:
    assert 0.5 <= accuracies["majority"] <= 0.56


def test_bag_of_words_on_labelled_data_is_sub_ceiling(accuracies: dict[str, float]) -> None:
    assert 0.65 <= accuracies["bow"] <= 0.82
    assert accuracies["bow"] >= accuracies["majority"] + 0.1  # but it does learn something


def test_clusters_from_unlabelled_text_help(accuracies: dict[str, float]) -> None:
    assert accuracies["clusters"] >= accuracies["bow"] + 0.10
    assert accuracies["clusters"] < 1.0  # label noise keeps it off 100%
