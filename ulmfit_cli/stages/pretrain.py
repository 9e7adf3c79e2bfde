"""Stage 1 (paper §3.1): general-domain language-model pretraining.

Fit the tokenizer/vocabulary on the general corpus, then train an AWD-LSTM LM per direction.
"""
from __future__ import annotations

from ..data import load_pretraining_corpus
from ..data.token_cache import encode, token_cache_dir
from ..data.tokenizers import fit_numericalizer
from .context import RunContext
from .lm import METRICS, train_lms
from .wiring import check_callbacks


def run(ctx: RunContext) -> dict:
    cfg = ctx.cfg
    check_callbacks(cfg, METRICS)
    corpus = load_pretraining_corpus(cfg.dataset, cfg.data_root)
    numericalizer = fit_numericalizer(corpus.train_texts, cfg.tokenizer)
    cache = token_cache_dir(cfg)
    train_docs, valid_docs = encode(numericalizer, corpus.train_texts, cache), encode(numericalizer, corpus.valid_texts, cache)
    sources = {d: None for d in cfg.bidirectional.directions}  # from scratch
    results = train_lms(ctx, sources, numericalizer, train_docs, valid_docs)
    return ctx.finish(results, vocab_size=len(numericalizer.itos), dataset=corpus.name)
