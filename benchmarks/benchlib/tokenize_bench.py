"""Tokenization speed: fit_numericalizer and encode_many (word and spm) on WikiText-2 valid."""
from __future__ import annotations

import time

from .common import WIKI_VALID


def one(lines: list[str], name: str, cfg: dict, quick: bool) -> dict:
    from ulmfit_cli.data.tokenizers import fit_numericalizer

    t0 = time.perf_counter()
    numer = fit_numericalizer(lines, cfg)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids = numer.encode_many(lines)
    enc_s = time.perf_counter() - t0
    n_tok = int(sum(len(a) for a in ids))
    return {"bench": "tokenize", "size": "wikitext2-valid" + ("[:300]" if quick else ""),
            "system": f"ulmfit-{name}", "status": "ok", "throughput": n_tok / enc_s,
            "unit": "tokens/s", "median_step_s": enc_s, "steps": 1, "fit_s": fit_s,
            "fit_tokens_per_s": n_tok / fit_s, "n_tokens": n_tok, "n_chars": sum(map(len, lines)),
            "n_docs": len(lines), "vocab_size": len(numer.itos)}


def bench_tokenize(quick: bool) -> list[dict]:
    if not WIKI_VALID.is_file():
        return [{"bench": "tokenize", "size": "-", "system": f"ulmfit-{k}", "status": f"no data ({WIKI_VALID})"}
                for k in ("word", "spm")]
    lines = [ln for ln in WIKI_VALID.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if quick:
        lines = lines[:300]
    return [one(lines, "word", {"name": "word", "max_vocab": 60000, "min_freq": 2}, quick),
            one(lines, "spm", {"name": "spm", "vocab_size": 1000 if quick else 8000, "model_type": "unigram"}, quick)]
