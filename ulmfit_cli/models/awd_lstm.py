"""AWD-LSTM encoder (Merity et al. 2017) with the five dropouts ULMFiT uses.

State-dict keys (stable, documented for interop):
    encoder.weight                      embedding (vocab, emb)
    rnns.{i}.weight_ih_l0               input-to-hidden of layer i
    rnns.{i}.weight_hh_l0_raw           hidden-to-hidden *before* DropConnect
    rnns.{i}.bias_ih_l0, bias_hh_l0
The dropped `weight_hh_l0` is never stored: it is recomputed from the raw weight each forward.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from .accel.lstm_kernels import lstm_layer


def keep_mask(x: torch.Tensor, shape: tuple, p: float) -> torch.Tensor:
    """Bool Bernoulli(1-p) mask, drawn as uniform >= p: on CPU that is several times faster than
    bernoulli_/F.dropout (for a paper-size 4608x1152 matrix, paid per forward, i.e. per
    BPT3C chunk); same distribution."""
    return torch.rand(*shape, dtype=x.dtype, device=x.device) >= p


def dropout_mask(x: torch.Tensor, shape: tuple, p: float) -> torch.Tensor:
    """Bernoulli(1-p) mask scaled by 1/(1-p), the same for every time step it broadcasts over."""
    return keep_mask(x, shape, p).to(x.dtype).div_(1 - p)


class LockedDropout(nn.Module):
    """Variational dropout: one mask per sequence, shared across time steps (batch-first input)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * dropout_mask(x, (x.size(0), 1, x.size(2)), self.p)


def dropped_embedding(weight: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """The embedding matrix with whole rows (words) zeroed: every occurrence of a word is dropped."""
    if training and p > 0:
        weight = weight * dropout_mask(weight, (weight.size(0), 1), p)
    return weight


class WeightDropLSTM(nn.Module):
    """One LSTM layer with DropConnect on its hidden-to-hidden matrix.

    The raw matrix is dropped once per forward and handed whole to the LSTM kernel (the fused
    call nn.LSTM makes, so cuDNN stays on GPU; see lstm_kernels for bf16 training on CPU).
    """

    def __init__(self, n_in: int, n_out: int, weight_p: float, kernel: str = "auto", model_hidden: int | None = None):
        super().__init__()
        self.n_in, self.n_out, self.weight_p = n_in, n_out, weight_p
        self.kernel, self.model_hidden = kernel, model_hidden
        k = 1.0 / n_out**0.5
        self.weight_ih_l0 = nn.Parameter(torch.empty(4 * n_out, n_in).uniform_(-k, k))
        self.weight_hh_l0_raw = nn.Parameter(torch.empty(4 * n_out, n_out).uniform_(-k, k))
        self.bias_ih_l0 = nn.Parameter(torch.empty(4 * n_out).uniform_(-k, k))
        self.bias_hh_l0 = nn.Parameter(torch.empty(4 * n_out).uniform_(-k, k))
        self.pinned_hh: torch.Tensor | None = None  # set by AWDLSTM.one_mask_per_pass

    def dropped_hh(self) -> torch.Tensor:
        w_hh = self.weight_hh_l0_raw
        if self.training and self.weight_p > 0:
            # A bool mask is what autograd keeps for the backward (1 byte per weight, not 4); a
            # product with it is one pass, where torch.where then a scaling were two.
            keep = keep_mask(w_hh, w_hh.shape, self.weight_p)
            w_hh = (w_hh * keep).mul_(1.0 / (1.0 - self.weight_p))
        return w_hh

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        w_hh = self.pinned_hh if self.pinned_hh is not None else self.dropped_hh()
        weights = [self.weight_ih_l0, w_hh, self.bias_ih_l0, self.bias_hh_l0]
        return lstm_layer(x, state, weights, self.training, self.kernel, self.model_hidden)


class AWDLSTM(nn.Module):
    """Embedding -> [LSTM layer + locked dropout] x n_layers.

    `forward(ids, hidden)` is stateless: it returns (raw_outputs, outputs, new_hidden), where
    raw_outputs/outputs are, per layer, the outputs before/after the between-layer dropout
    (the LM head uses the last, AR/TAR use both). Callers that stream text carry `new_hidden`.
    """

    def __init__(
        self,
        vocab_size: int,
        emb_size: int = 400,
        hidden_size: int = 1152,
        n_layers: int = 3,
        pad_id: int = 1,
        hidden_p: float = 0.3,
        input_p: float = 0.4,
        embed_p: float = 0.05,
        weight_p: float = 0.5,
        emb_init: float = 0.1,
        lstm_kernel: str = "auto",
    ):
        super().__init__()
        self.emb_size, self.hidden_size, self.n_layers = emb_size, hidden_size, n_layers
        self.encoder = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        self.encoder.weight.data.uniform_(-emb_init, emb_init)
        self.encoder.weight.data[pad_id] = 0.0
        self.embed_p = embed_p
        sizes = [emb_size] + [hidden_size] * (n_layers - 1) + [emb_size]
        self.rnns = nn.ModuleList(
            WeightDropLSTM(sizes[i], sizes[i + 1], weight_p, lstm_kernel, hidden_size) for i in range(n_layers)
        )
        self.input_dp = LockedDropout(input_p)
        self.hidden_dps = nn.ModuleList(LockedDropout(hidden_p) for _ in range(n_layers))
        self.pinned_emb: torch.Tensor | None = None

    @contextlib.contextmanager
    def one_mask_per_pass(self):
        """Calls inside share one DropConnect mask per layer and one embedding-dropout mask.

        AWD-LSTM drops weights once per forward and backward pass ("the same individual dropped
        weights remain dropped for the entirety of the forward and backward pass"); BPT3C makes one
        pass over a document batch out of several encoder calls, one per chunk. Drawing the masks
        once for the batch is that rule (fastai redraws them per chunk), and saves the per-chunk
        draw, a large share of a paper-size model's step on a CPU. The masked
        weights are built here, where gradients are on, so that chunks run under no_grad (those
        before max_len) share them without cutting the later chunks' path to the raw weights.
        """
        if self.training:
            self.pinned_emb = dropped_embedding(self.encoder.weight, self.embed_p, True)
            for rnn in self.rnns:
                rnn.pinned_hh = rnn.dropped_hh()
        try:
            yield
        finally:
            self.pinned_emb = None
            for rnn in self.rnns:
                rnn.pinned_hh = None

    def layer_groups(self) -> list[list[nn.Module]]:
        """Embedding, then each LSTM layer: the units of discriminative LRs and unfreezing."""
        return [[self.encoder]] + [[rnn] for rnn in self.rnns]

    def init_hidden(self, bs: int, like: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [
            (like.new_zeros(1, bs, rnn.n_out), like.new_zeros(1, bs, rnn.n_out))
            for rnn in self.rnns
        ]

    def forward(self, ids: torch.Tensor, hidden=None):
        weight = self.pinned_emb if self.pinned_emb is not None else \
            dropped_embedding(self.encoder.weight, self.embed_p, self.training)
        emb = self.input_dp(F.embedding(ids, weight, self.encoder.padding_idx))
        if hidden is None:
            hidden = self.init_hidden(ids.size(0), emb)
        raw_outputs, outputs, new_hidden = [], [], []
        x = emb
        for i, (rnn, dp) in enumerate(zip(self.rnns, self.hidden_dps)):
            raw, h = rnn(x, hidden[i])
            new_hidden.append(h)
            raw_outputs.append(raw)
            x = dp(raw) if i < self.n_layers - 1 else raw
            outputs.append(x)
        return raw_outputs, outputs, new_hidden
