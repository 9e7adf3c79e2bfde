"""The two heads ULMFiT puts on the AWD-LSTM: a tied softmax decoder and a concat-pooling classifier."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .awd_lstm import AWDLSTM, LockedDropout
from .accel.fused_softmax import cross_entropy_sum_and_hits, linear_cross_entropy


class LanguageModel(nn.Module):
    """AWD-LSTM + output dropout + linear decoder tied to the embedding.

    forward(ids) -> (logits, raw_last, dropped_last); the last two feed TAR and AR.
    forward(ids, targets) -> (mean cross-entropy, raw_last, dropped_last), as nanoGPT's forward(idx, targets).
    score(ids, targets) -> (summed cross-entropy, top-1 hits), for evaluation.
    With `fused_softmax` (the default) both run the decoder and the softmax in row chunks
    (models/accel/fused_softmax.py), so the (tokens x vocab) logits are never built; without it,
    the reference: the decoder's logits and F.cross_entropy.
    """

    def __init__(self, encoder: AWDLSTM, output_p: float = 0.4, tie_weights: bool = True, fused_softmax: bool = True):
        super().__init__()
        self.encoder = encoder
        self.fused_softmax = fused_softmax
        self.output_dp = LockedDropout(output_p)
        vocab, emb = encoder.encoder.weight.shape
        self.decoder = nn.Linear(emb, vocab)
        self.decoder.bias.data.zero_()
        if tie_weights:
            self.decoder.weight = encoder.encoder.weight

        self.hidden = None

    def reset(self) -> None:
        self.hidden = None

    def layer_groups(self) -> list[list[nn.Module]]:
        # Tied weights make the embedding the decoder: it sits with the head, at the top LR,
        # as in the reference split (rows mapped from a new vocabulary need the largest steps).
        groups = self.encoder.layer_groups()
        return groups[1:] + [groups[0] + [self.decoder]]

    def _features(self, ids: torch.Tensor):
        if self.hidden is not None and self.hidden[0][0].size(1) != ids.size(0):
            self.hidden = None
        raw_outputs, outputs, hidden = self.encoder(ids, self.hidden)
        # Truncated BPTT: the next batch continues from this state without back-propagating into it.
        self.hidden = [(h.detach(), c.detach()) for h, c in hidden]
        return raw_outputs[-1], self.output_dp(outputs[-1])

    @torch.no_grad()  # a score is two numbers: no graph, even when called with gradients on
    def score(self, ids: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
        _, dropped = self._features(ids)
        flat, tgt = dropped.reshape(-1, dropped.size(-1)), targets.reshape(-1)
        if self.fused_softmax:
            return cross_entropy_sum_and_hits(flat, self.decoder.weight, self.decoder.bias, tgt)
        logits = _at_least_fp32(self.decoder(flat))
        return float(F.cross_entropy(logits, tgt, reduction="sum")), int((logits.argmax(1) == tgt).sum())

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None):
        raw_last, dropped = self._features(ids)
        if targets is None:
            return self.decoder(dropped), raw_last, dropped
        flat, tgt = dropped.reshape(-1, dropped.size(-1)), targets.reshape(-1)
        if self.fused_softmax:
            ce = linear_cross_entropy(flat, self.decoder.weight, self.decoder.bias, tgt)
        else:
            ce = F.cross_entropy(_at_least_fp32(self.decoder(flat)), tgt)
        return ce, raw_last, dropped


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """The softmax in fp32 (or wider) whatever autocast made the logits, as the fused path does."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def masked_concat_pool(states: torch.Tensor, mask: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """[h_T ; maxpool ; meanpool] over time, padding (mask True) excluded; `last` indexes h_T."""
    keep = (~mask).unsqueeze(-1).to(states.dtype)
    lengths = keep.sum(1).clamp(min=1)
    mean = (states * keep).sum(1) / lengths
    neg = torch.finfo(states.dtype).min
    maxp = states.masked_fill(mask.unsqueeze(-1), neg).max(1).values
    h_last = states[torch.arange(states.size(0), device=states.device), last]
    return torch.cat([h_last, maxp, mean], dim=1)


def bpt3c_encode(encoder: AWDLSTM, ids: torch.Tensor, bptt: int, max_len: int, pad_id: int):
    """Runs long documents through the encoder in bptt chunks (BPTT for Text Classification).

    Input is padded by `pad_chunks`: each document starts on a chunk boundary, so a row is fed
    to the LSTM only from its first real chunk on (its state stays zero until then) and padding
    never enters the recurrence. Each chunk starts from the previous chunk's final state. Only
    the chunks within the last `max_len` tokens keep their states for pooling and get
    gradients; earlier ones run under no_grad, so memory does not grow with document length.
    Returns (states of the kept chunks, their padding mask, index of each row's last token).
    """
    bs, seq_len = ids.shape
    real = ids != pad_id
    first = real.to(torch.int8).argmax(1)  # first real token of each row
    last = seq_len - 1 - real.flip(1).to(torch.int8).argmax(1)
    hidden = [(ids.new_zeros(1, bs, r.n_out, dtype=torch.float), ids.new_zeros(1, bs, r.n_out, dtype=torch.float))
              for r in encoder.rnns]
    kept, kept_from = [], None
    with encoder.one_mask_per_pass():
        for s in range(0, seq_len, bptt):
            e = min(s + bptt, seq_len)
            rows = (first < e).nonzero().squeeze(1)
            every = rows.numel() == bs  # no row still before its first chunk: no gather, no scatter
            keep = e > seq_len - max_len
            with torch.set_grad_enabled(keep and torch.is_grad_enabled()):
                sub = hidden if every else [(h[:, rows], c[:, rows]) for h, c in hidden]
                _, outputs, new = encoder(ids[:, s:e] if every else ids[rows, s:e], sub)
                hidden = [(nh.detach().to(h.dtype), nc.detach().to(c.dtype)) if every else
                          (h.index_copy(1, rows, nh.detach().to(h.dtype)), c.index_copy(1, rows, nc.detach().to(c.dtype)))
                          for (h, c), (nh, nc) in zip(hidden, new)]
                if keep:
                    out = outputs[-1]
                    kept.append(out if every else out.new_zeros(bs, e - s, out.size(-1)).index_copy(0, rows, out))
                    kept_from = s if kept_from is None else kept_from
    states = torch.cat(kept, 1)
    return states, ~real[:, kept_from:], last - kept_from


class PoolingClassifier(nn.Module):
    """Two blocks of BatchNorm + Dropout + Linear on the concat-pooled states (ReLU between)."""

    def __init__(self, emb_size: int, n_classes: int, hidden: int = 50, ps=(0.4, 0.1)):
        super().__init__()
        sizes = [3 * emb_size, hidden, n_classes]
        layers: list[nn.Module] = []
        for i, (n_in, n_out, p) in enumerate(zip(sizes[:-1], sizes[1:], ps)):
            layers += [nn.BatchNorm1d(n_in), nn.Dropout(p), nn.Linear(n_in, n_out)]
            if i == 0:
                layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, states: torch.Tensor, mask: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        return self.layers(masked_concat_pool(states, mask, last))


class TextClassifier(nn.Module):
    """BPT3C encoder + pooling classifier; forward(ids) -> logits."""

    def __init__(self, encoder: AWDLSTM, n_classes: int, bptt: int, max_len: int,
                 pad_id: int, hidden: int = 50, ps=(0.4, 0.1)):
        super().__init__()
        self.encoder = encoder
        self.bptt, self.max_len, self.pad_id = bptt, max_len, pad_id
        self.head = PoolingClassifier(encoder.emb_size, n_classes, hidden, ps)

    def layer_groups(self) -> list[list[nn.Module]]:
        return self.encoder.layer_groups() + [[self.head]]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(*bpt3c_encode(self.encoder, ids, self.bptt, self.max_len, self.pad_id))
