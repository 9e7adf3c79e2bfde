"""A pretrained model's embedding rows (and decoder bias) carried onto a new vocabulary, as
fastai's match_embeds: tokens both vocabularies hold keep their row, the others get the mean row."""
from __future__ import annotations

from typing import Sequence

import torch


def _match_index(old_itos: Sequence[str], new_itos: Sequence[str]) -> tuple[list[int], list[int]]:
    old_stoi: dict[str, int] = {}
    for i, t in enumerate(old_itos):
        old_stoi.setdefault(t, i)
    new_idx, old_idx = [], []
    for j, t in enumerate(new_itos):
        i = old_stoi.get(t)
        if i is not None:
            new_idx.append(j)
            old_idx.append(i)
    return new_idx, old_idx


def map_embeddings(old_weight, old_itos: Sequence[str], new_itos: Sequence[str]):
    """Rows for `new_itos` from a matrix indexed by `old_itos` (fastai's match_embeds).

    Tokens found in `old_itos` keep their row exactly; the others get the mean of all old rows.
    Returns ``(new_weight, n_found)``; the input is not modified.
    """
    w = old_weight.detach()
    if w.dim() != 2 or w.shape[0] != len(old_itos):
        raise ValueError(f"embedding of shape {tuple(w.shape)} does not match a vocabulary of "
                         f"{len(old_itos)} tokens")
    new_idx, old_idx = _match_index(old_itos, new_itos)
    mean = w.float().mean(0).to(w.dtype)
    new = mean.unsqueeze(0).repeat(len(new_itos), 1)
    if new_idx:
        new[torch.tensor(new_idx, dtype=torch.long, device=w.device)] = \
            w[torch.tensor(old_idx, dtype=torch.long, device=w.device)]
    return new, len(new_idx)


def map_bias(old_bias, old_itos: Sequence[str], new_itos: Sequence[str]):
    """Same as `map_embeddings` for a 1-D (decoder) bias: new entries get the mean bias."""
    b = old_bias.detach()
    if b.dim() != 1 or b.shape[0] != len(old_itos):
        raise ValueError(f"bias of shape {tuple(b.shape)} does not match a vocabulary of "
                         f"{len(old_itos)} tokens")
    new, found = map_embeddings(b.unsqueeze(1), old_itos, new_itos)
    return new.squeeze(1), found

