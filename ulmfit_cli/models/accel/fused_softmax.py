"""Decoder + softmax cross-entropy in one pass over row chunks, for LM training.

The reference path (LanguageModel with fused_softmax=False) builds (tokens x vocab) logits, an
fp32 copy of them, their log-softmax and its gradient: at the paper's batch and vocabulary, four
tensors of hundreds of MB, each written and read through memory, and under bf16 the casts alone
cost as much as the decoder product (benchmarks/bench.py --profile shows it). Here each chunk of rows is decoded, normalised in fp32
while it is in cache, and only the gradient of the logits is kept (in the product dtype), so
the backward is two matrix products. The loss is the same mean cross-entropy, exactly: only
the order of the fp32 sums differs.
"""
from __future__ import annotations

import torch

# Rows decoded at a time. CPU: a chunk's logits should stay in cache (128 rows of a 30k vocabulary
# are 15 MB; 128 was the fastest of 128..1024). GPU: the whole bs x bptt batch at once (no cache to
# fit; fewer, larger kernels).
CPU_CHUNK_ROWS, GPU_CHUNK_ROWS = 128, 8192


def chunk_rows_for(device: torch.device) -> int:
    return CPU_CHUNK_ROWS if device.type == "cpu" else GPU_CHUNK_ROWS


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast would give the decoder product here."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         target: torch.Tensor, chunk_rows: int | None = None) -> torch.Tensor:
    """mean over rows of cross_entropy(h @ weight.T + bias, target), in fp32 or wider; h (N, E), target (N,)."""
    return LinearCrossEntropy.apply(h, weight, bias, target, chunk_rows or chunk_rows_for(h.device),
                                    compute_dtype(h))


def _decoded_chunks(hc, wc, bc, target, chunk_rows: int, acc: torch.dtype):
    """Per chunk of rows: (start, end, targets, target logit, max logit, exp(logits - max), its row sum).
    exp(logits - max) overwrites the chunk's logits: one pass and one exp per element."""
    for s in range(0, hc.size(0), chunk_rows):
        e = min(s + chunk_rows, hc.size(0))
        logits = (torch.addmm(bc, hc[s:e], wc.t()) if bc is not None else hc[s:e] @ wc.t()).to(acc)
        tgt = target[s:e].unsqueeze(1)
        picked = logits.gather(1, tgt)
        top = logits.amax(1, keepdim=True)
        e_x = logits.sub_(top).exp_()
        yield s, e, tgt, picked, top, e_x, e_x.sum(1, keepdim=True)


def _cast(h, weight, bias, dtype):
    return h.to(dtype), weight.to(dtype), (bias.to(dtype) if bias is not None else None)


@torch.no_grad()
def cross_entropy_sum_and_hits(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                               target: torch.Tensor, chunk_rows: int | None = None) -> tuple[float, int]:
    """Evaluation: summed cross-entropy and the number of rows whose top logit is the target."""
    dtype, chunk_rows = compute_dtype(h), chunk_rows or chunk_rows_for(h.device)
    with torch.autocast(h.device.type, enabled=False):
        total, hits = 0.0, 0
        for _, _, _, picked, top, _, norm in _decoded_chunks(*_cast(h, weight, bias, dtype), target, chunk_rows,
                                                               torch.promote_types(dtype, torch.float32)):
            total += float((top + norm.log() - picked).sum())
            hits += int((picked >= top).sum())
        return total, hits


class LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, target, chunk_rows, dtype):
        with torch.autocast(h.device.type, enabled=False):
            n = h.size(0)
            acc = torch.promote_types(dtype, torch.float32)
            hc, wc, bc = _cast(h, weight, bias, dtype)
            need_grad = any(ctx.needs_input_grad[:3])
            grad_logits = h.new_empty(n, weight.size(0), dtype=dtype) if need_grad else None
            total = h.new_zeros((), dtype=acc)
            for s, e, tgt, picked, top, e_x, norm in _decoded_chunks(hc, wc, bc, target, chunk_rows, acc):
                total += (top + norm.log() - picked).sum()
                if need_grad:  # d mean-CE / d logits = (softmax - onehot) / n; the 1/n is applied in
                    # the backward, after the products: p/n would underflow in fp16 for large vocabularies
                    probs = e_x.mul_(norm.reciprocal_())
                    probs.scatter_add_(1, tgt, probs.new_full(tgt.shape, -1.0))
                    grad_logits[s:e] = probs
            ctx.save_for_backward(hc, wc, grad_logits)
            ctx.has_bias, ctx.n = bias is not None, n
            ctx.dtypes = (h.dtype, weight.dtype)
            return total / n  # fp32 (fp64 in tests) whatever the states' dtype, as F.cross_entropy on .float() logits

    @staticmethod
    def backward(ctx, grad_out):
        hc, wc, g = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        acc = torch.promote_types(g.dtype, torch.float32)
        scale = grad_out.to(acc) / ctx.n
        d_h = (g @ wc).to(h_dtype).mul_(scale) if need_h else None
        d_w = (g.t() @ hc).to(w_dtype).mul_(scale) if need_w else None
        d_b = g.sum(0, dtype=acc).mul_(scale).to(w_dtype) if (need_b and ctx.has_bias) else None
        return d_h, d_w, d_b, None, None, None
