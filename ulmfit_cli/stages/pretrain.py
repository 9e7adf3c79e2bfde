"""Stage 1 (paper §3.1): general-domain language-model pretraining.

Fit the tokenizer/vocabulary on the general corpus, then train an AWD-LSTM LM per direction.
"""
from __future__ import annotations

from ..data import load_pretraining_corpus
from ..data.token_cache import encode, fit_encode, index_dir, token_cache_dir
from ..sysmem import return_freed_memory
from .context import RunContext
from .lm import METRICS, train_lms
from .wiring import check_callbacks


def run(ctx: RunContext) -> dict:
    cfg = ctx.cfg
    check_callbacks(cfg, METRICS)
    name, numericalizer, train_docs, valid_docs = numericalized_corpus(cfg)
    return_freed_memory()  # the texts' pages
    sources = {d: None for d in cfg.bidirectional.directions}  # from scratch
    results = train_lms(ctx, sources, numericalizer, train_docs, valid_docs)
    return ctx.finish(results, vocab_size=len(numericalizer.itos), dataset=name)


def numericalized_corpus(cfg):
    """(corpus name, numericalizer, train ids, valid ids). The texts end here: on a large corpus
    they would be most of the memory held through training."""
    cache = token_cache_dir(cfg)
    corpus = load_pretraining_corpus(cfg.dataset, cfg.data_root, index_dir(cache))
    numericalizer, train_docs = fit_encode(corpus.train_texts, cfg.tokenizer, cache)
    return corpus.name, numericalizer, train_docs, encode(numericalizer, corpus.valid_texts, cache)
