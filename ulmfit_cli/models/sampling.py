"""Sampling text from a `LanguageModel`: pure tensor functions, nothing here reads or writes files.

`generate` feeds the prompt once, then one token at a time, carrying the LSTM state between
steps (the model's own `hidden`), in eval mode (no dropout) and under `torch.no_grad`.
Each step's logits go through: banned ids -> -inf, temperature, top-k, top-p, then a draw.
"""
from __future__ import annotations

from typing import Iterable

import torch

NEG_INF = float("-inf")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature; < 1 sharpens the distribution, > 1 flattens it (must be > 0)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature}); use greedy decoding for 0")
    return logits if temperature == 1.0 else logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly the k largest logits of each row (ties broken by torch.topk), the rest -> -inf.

    k <= 0 or k >= vocabulary size: unchanged."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    idx = logits.topk(k, dim=-1).indices
    out = torch.full_like(logits, NEG_INF)
    return out.scatter(-1, idx, logits.gather(-1, idx))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most probable tokens whose mass is >= p.

    The most probable token is always kept; p >= 1: unchanged."""
    if p >= 1.0:
        return logits
    if p <= 0:
        raise ValueError(f"top_p must be in (0, 1] (got {p})")
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.float().softmax(-1)
    mass_before = probs.cumsum(-1) - probs  # mass of the tokens ranked above each one
    drop_sorted = mass_before >= p - 1e-6  # tolerance: a set whose mass is p up to rounding is enough
    drop_sorted[..., 0] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def mask_ids(logits: torch.Tensor, banned: Iterable[int]) -> torch.Tensor:
    """Banned token ids (e.g. xxpad, xxunk) can never be drawn."""
    banned = [int(i) for i in banned if 0 <= int(i) < logits.size(-1)]
    if not banned:
        return logits
    out = logits.clone()
    out[..., banned] = NEG_INF
    return out


def next_token(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
               banned: Iterable[int] = (), generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of (bs, vocab) logits -> (bs,) int64 ids. temperature=0 is greedy (argmax)."""
    logits = mask_ids(logits.float(), banned)
    if temperature == 0:
        return logits.argmax(-1)
    logits = top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def generate(model, ids: torch.Tensor, n_words: int, *, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, banned: Iterable[int] = (), generator: torch.Generator | None = None
             ) -> torch.Tensor:
    """Continue each row of `ids` (bs, prompt_len >= 1) by exactly `n_words` tokens.

    Returns the (bs, n_words) generated ids only. The model is put in eval mode (and given back
    in the mode it came in), and its carried hidden state is reset before and after.
    """
    if n_words < 1:
        raise ValueError(f"n_words must be >= 1 (got {n_words})")
    if ids.dim() != 2 or ids.size(1) < 1:
        raise ValueError("ids must be (batch, prompt_len) with prompt_len >= 1")
    banned = list(banned)
    was_training = model.training
    model.eval()
    model.reset()
    try:
        with torch.no_grad():
            logits = model(ids)[0][:, -1]
            out = []
            for step in range(n_words):
                tok = next_token(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                                 banned=banned, generator=generator)
                out.append(tok)
                if step + 1 < n_words:
                    logits = model(tok.unsqueeze(1))[0][:, -1]
        return torch.stack(out, 1)
    finally:
        model.reset()
        model.train(was_training)
