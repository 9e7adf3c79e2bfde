"""Stage 1 (paper §3.1): general-domain language-model pretraining.

Fit the tokenizer/vocabulary on the general corpus, then train an AWD-LSTM LM per direction.
"""
from __future__ import annotations

from ..data import load_pretraining_corpus
from ..data.tokenizers import fit_numericalizer
from ..data.token_cache import token_cache_dir
from .common import Run
from .lm import build_lm_from, encode, train_lm


def run(cfg) -> dict:
    run = Run(cfg)
    corpus = load_pretraining_corpus(cfg.dataset, cfg.data_root)
    numericalizer = fit_numericalizer(corpus.train_texts, cfg.tokenizer)
    cache = token_cache_dir(cfg)
    train_docs, valid_docs = encode(numericalizer, corpus.train_texts, cache), encode(numericalizer, corpus.valid_texts, cache)
    results = {}
    for direction in cfg.bidirectional.directions:
        if (done := run.finished_result(direction)) is not None:
            results[direction] = done
            continue
        model = build_lm_from(cfg, numericalizer)
        results[direction] = train_lm(run, model, numericalizer, train_docs, valid_docs, direction)
    return run.finish(results, vocab_size=len(numericalizer.itos), dataset=corpus.name)
