"""Known failures of peer implementations, checked against ulmfit."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import torch

from ulmfit_cli.config import ModelConfig
from ulmfit_cli.models import build_lm
from ulmfit_cli.stages.lm import lm_step


def test_weight_drop_keeps_the_fused_kernel_without_the_non_contiguous_weights_warning():
    """https://github.com/salesforce/awd-lstm-lm/issues/120: DropConnect by re-assigning nn.LSTM's weight made cuDNN/oneDNN warn that the
    weights are not one contiguous chunk and copy them every call (10x slower). ulmfit hands the
    dropped matrix straight to the fused kernel: no warning, and the backward is that kernel's."""
    model = build_lm(ModelConfig(emb_size=8, hidden_size=12, n_layers=2), 30, 1).train()
    ids = torch.randint(2, 30, (3, 7))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logits = model(ids)[0]
        logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    raw, _, _ = model.encoder(ids)
    names = graph_node_names(raw[-1].grad_fn)
    assert any("rnn" in n.lower() or "lstm" in n.lower() for n in names), names
    assert len(names) < 40, names  # one fused call per layer, not a node per time step


def graph_node_names(fn) -> list[str]:
    seen, todo, names = set(), [fn], []
    while todo:
        f = todo.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        names.append(type(f).__name__)
        todo.extend(nxt for nxt, _ in f.next_functions)
    return names


def test_activation_regularisers_are_computed_in_fp32_even_from_half_precision_states():
    """https://github.com/fastai/fastai/issues/1335: AR/TAR squared in fp16 overflow (300^2 > 65504) and the loss becomes inf.
    ulmfit squares in fp32 whatever the dtype of the states it is given."""
    states = torch.full((2, 5, 4), 300.0, dtype=torch.float16)
    states[:, 1::2] = -300.0  # large time differences too: TAR sees 600^2

    def fake_forward(x, y):
        return torch.tensor(1.0), states, states

    batch = SimpleNamespace(x=torch.zeros(2, 5, dtype=torch.long), y=torch.zeros(2, 5, dtype=torch.long))
    out = lm_step(alpha=2.0, beta=1.0, device=torch.device("cpu"))(fake_forward, batch)
    assert torch.isfinite(out.loss)
    assert out.loss.item() == 1.0 + 2.0 * 300.0**2 + 1.0 * 600.0**2
