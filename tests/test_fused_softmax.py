"""The fused decoder + cross-entropy equals the plain one: exactly in fp64, to bf16 rounding under
autocast, and inside the language model's forward(ids, targets)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ulmfit_cli.config import ModelConfig
from ulmfit_cli.models import build_lm
from ulmfit_cli.models.accel.fused_softmax import linear_cross_entropy


def problem(dtype, n=37, e=8, v=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, e, generator=g, dtype=dtype).requires_grad_()
    w = torch.randn(v, e, generator=g, dtype=dtype).mul_(0.3).requires_grad_()
    b = torch.randn(v, generator=g, dtype=dtype).requires_grad_()
    y = torch.randint(0, v, (n,), generator=g)
    return h, w, b, y


@pytest.mark.parametrize("chunk_rows", [1, 10, 37, 1000])  # chunks that do and don't divide the rows
def test_fused_loss_and_gradients_equal_the_plain_ones_in_fp64(chunk_rows):
    h, w, b, y = problem(torch.float64)
    plain = F.cross_entropy(F.linear(h, w, b), y)
    fused = linear_cross_entropy(h, w, b, y, chunk_rows)
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=0)
    # an upstream factor other than 1, as when the loss is weighted or summed with AR/TAR
    for gp, gf in zip(torch.autograd.grad(3.5 * plain, (h, w, b)), torch.autograd.grad(3.5 * fused, (h, w, b))):
        torch.testing.assert_close(gf, gp, rtol=1e-10, atol=1e-14)


def test_fused_loss_under_bf16_autocast_stays_within_bf16_rounding_of_fp32():
    h, w, b, y = problem(torch.float32, n=300, e=32, v=2000)
    plain = F.cross_entropy(F.linear(h, w, b), y)
    g_plain = torch.autograd.grad(plain, (h, w, b))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = linear_cross_entropy(h, w, b, y, 64)
    assert fused.dtype == torch.float32
    assert abs(fused.item() - plain.item()) < 1e-2 * plain.item()
    for gp, gf in zip(g_plain, torch.autograd.grad(fused, (h, w, b))):
        assert gf.dtype == gp.dtype
        assert F.cosine_similarity(gf.flatten(), gp.flatten(), dim=0) > 0.999


def test_language_model_forward_with_targets_is_the_cross_entropy_of_its_logits():
    cfg = ModelConfig(emb_size=16, hidden_size=24, n_layers=2)
    model = build_lm(cfg, 60, 1).double().train()
    ids = torch.randint(2, 60, (3, 9), generator=torch.Generator().manual_seed(1))
    x, y = ids[:, :-1], ids[:, 1:]

    def run(with_targets: bool):
        torch.manual_seed(5)  # the same dropout masks both times
        model.reset()
        model.zero_grad()
        if with_targets:
            loss = model(x, y)[0]
        else:
            logits = model(x)[0]
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    (loss_plain, g_plain), (loss_fused, g_fused) = run(False), run(True)
    torch.testing.assert_close(loss_fused, loss_plain, rtol=1e-12, atol=0)
    for gp, gf in zip(g_plain, g_fused):
        torch.testing.assert_close(gf, gp, rtol=1e-9, atol=1e-12)


def test_score_gives_the_summed_cross_entropy_and_top1_hits_of_the_logits():
    cfg = ModelConfig(emb_size=16, hidden_size=24, n_layers=2)
    model = build_lm(cfg, 60, 1).double().eval()
    ids = torch.randint(2, 60, (4, 11), generator=torch.Generator().manual_seed(2))
    x, y = ids[:, :-1], ids[:, 1:]
    with torch.no_grad():
        model.reset()
        logits = model(x)[0]
        model.reset()
        total, hits = model.score(x, y)
    flat = logits.reshape(-1, logits.size(-1))
    assert total == pytest.approx(float(F.cross_entropy(flat, y.reshape(-1), reduction="sum")), rel=1e-12)
    assert hits == int((flat.argmax(-1) == y.reshape(-1)).sum())


def test_loss_from_bf16_states_is_reported_in_fp32_not_rounded_to_bf16():
    h, w, b, y = problem(torch.float32, n=64, e=16, v=300)
    hb = h.detach().bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = linear_cross_entropy(hb, w, b, y, 16)
    assert fused.dtype == torch.float32
    logits = F.linear(hb.detach().float(), w.detach().bfloat16().float(), b.detach().bfloat16().float())
    assert abs(fused.item() - F.cross_entropy(logits, y).item()) < 1e-2  # bf16 products, fp32 sum
    assert fused.item() != fused.bfloat16().item()  # not rounded to bf16's 3 significant digits


def test_the_reference_path_is_selectable_and_equal():
    """model.fused_softmax=false: the decoder's logits and F.cross_entropy, the path the fused one
    replaces; a training loss, its gradients and the evaluation scores agree (fp64)."""
    out = {}
    for fused in (True, False):
        torch.manual_seed(0)
        model = build_lm(ModelConfig(emb_size=16, hidden_size=24, n_layers=2, fused_softmax=fused), 60, 1).double()
        ids = torch.randint(2, 60, (3, 9), generator=torch.Generator().manual_seed(1))
        torch.manual_seed(5)
        loss = model.train()(ids[:, :-1], ids[:, 1:])[0]
        grads = torch.autograd.grad(loss, list(model.parameters()))
        model.eval().reset()
        out[fused] = (loss.detach(), grads, model.score(ids[:, :-1], ids[:, 1:]))
    torch.testing.assert_close(out[True][0], out[False][0], rtol=1e-12, atol=0)
    for a, b in zip(out[True][1], out[False][1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    assert out[True][2][0] == pytest.approx(out[False][2][0], rel=1e-12) and out[True][2][1] == out[False][2][1]
