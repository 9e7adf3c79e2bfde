"""Stage 2 (paper §3.2): target-task LM fine-tuning with discriminative LRs and STLR.

Start from the pretrained LM (or from scratch with pretrained=null), carry its tokenizer, map
the target corpus' vocabulary onto the pretrained one, and train on the task's text
(train + unlabelled), validating on the task's validation text.
"""
from __future__ import annotations

from omegaconf import OmegaConf

from ..data import load_dataset
from ..data.token_cache import encode, fit_encode, index_dir, token_cache_dir
from ..data.types import joined
from ..data.tokenizers import numericalizer_from_state
from .context import RunContext
from .lm import METRICS, train_lms
from .sources import source_lms
from .wiring import check_callbacks


def target_vocabulary(cfg, texts, source, cache):
    """(numericalizer, ids of `texts`). SentencePiece is carried unchanged; a word vocabulary is
    rebuilt on the target text (new words become rows initialised at the mean embedding, as in
    the reference)."""
    tokenizer = cfg.tokenizer
    if source is not None:
        pretrained = numericalizer_from_state(source["numericalizer"])
        if pretrained.kind == "spm":
            return pretrained, encode(pretrained, texts, cache)
        tokenizer = OmegaConf.merge(cfg.tokenizer, {"name": pretrained.kind})
    return fit_encode(texts, tokenizer, cache)


def run(ctx: RunContext) -> dict:
    cfg = ctx.cfg
    directions = list(cfg.bidirectional.directions)
    check_callbacks(cfg, METRICS)
    source_dir, sources = source_lms(ctx, "pretrained")
    cache = token_cache_dir(cfg)
    data = load_dataset(cfg.dataset, cfg.data_root, index_dir=index_dir(cache))
    lm_texts = joined(data.train_texts, data.lm_extra, data.test_texts if cfg.dataset.use_test_for_lm else [])
    numericalizer, train_docs = target_vocabulary(cfg, lm_texts, sources[directions[0]], cache)
    valid_docs = encode(numericalizer, data.valid_texts, cache)
    results = train_lms(ctx, sources, numericalizer, train_docs, valid_docs)
    return ctx.finish(results, started_from=source_dir, dataset=data.name, warnings=data.warnings)
