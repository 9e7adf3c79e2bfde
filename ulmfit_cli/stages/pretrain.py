"""Stage 1 (paper §3.1): general-domain language-model pretraining.

Fit the tokenizer/vocabulary on the general corpus, then train an AWD-LSTM LM per direction.
"""
from __future__ import annotations

from ..data import load_pretraining_corpus
from ..data.token_cache import token_cache_dir
from ..data.tokenizers import fit_numericalizer
from .model_io import lm_from
from .context import RunContext
from .lm import encode, train_lm


def run(ctx: RunContext) -> dict:
    cfg = ctx.cfg
    corpus = load_pretraining_corpus(cfg.dataset, cfg.data_root)
    numericalizer = fit_numericalizer(corpus.train_texts, cfg.tokenizer)
    cache = token_cache_dir(cfg)
    train_docs, valid_docs = encode(numericalizer, corpus.train_texts, cache), encode(numericalizer, corpus.valid_texts, cache)
    results = {}
    for direction in cfg.bidirectional.directions:
        if (done := ctx.finished(direction)) is not None:
            results[direction] = done["result"]
            continue
        model = lm_from(cfg.model, numericalizer)
        results[direction] = train_lm(ctx, model, numericalizer, train_docs, valid_docs, direction)
    return ctx.finish(results, vocab_size=len(numericalizer.itos), dataset=corpus.name)
