"""The bf16 step-loop LSTM kernel: exact against torch's LSTM in fp64, close in bf16, chosen only
for bf16 training on CPU."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import FAST, assert_clean_error, ulmfit
from ulmfit_cli.models import build_lm
from ulmfit_cli.config import ModelConfig
from ulmfit_cli.models.accel import lstm_kernels
from ulmfit_cli.models.accel.lstm_kernels import BF16StepLSTM, lstm_layer

B, T, N_IN, H = 3, 6, 5, 4


def make_inputs(dtype, seed=0, requires_grad=(True,) * 7):
    g = torch.Generator().manual_seed(seed)
    shapes = [(B, T, N_IN), (1, B, H), (1, B, H), (4 * H, N_IN), (4 * H, H), (4 * H,), (4 * H,)]
    return [torch.randn(*s, generator=g, dtype=dtype).mul_(0.5).requires_grad_(r)
            for s, r in zip(shapes, requires_grad)]


def reference(x, h0, c0, *w):
    return torch._VF.lstm(x, (h0, c0), list(w), True, 1, 0.0, True, False, True)


def grads(outs, inputs, seed=1):
    g = torch.Generator().manual_seed(seed)
    upstream = [torch.randn(o.shape, generator=g, dtype=o.dtype) for o in outs]
    wanted = [t for t in inputs if t.requires_grad]
    return torch.autograd.grad(outs, wanted, upstream)


def test_step_kernel_in_fp64_equals_torch_lstm_outputs_and_gradients():
    inputs = make_inputs(torch.float64)
    ref = reference(*inputs)
    got = BF16StepLSTM.apply(*inputs, torch.float64)
    for r, o in zip(ref, got):
        torch.testing.assert_close(o, r, rtol=1e-10, atol=1e-12)
    for r, o in zip(grads(ref, inputs), grads(got, inputs)):
        torch.testing.assert_close(o, r, rtol=1e-10, atol=1e-12)


def test_step_kernel_with_frozen_weights_returns_only_the_gradients_asked_for():
    inputs = make_inputs(torch.float64, requires_grad=(True, False, False, False, False, False, False))
    (dx_ref,) = grads(reference(*inputs), inputs)
    (dx,) = grads(BF16StepLSTM.apply(*inputs, torch.float64), inputs)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-10, atol=1e-12)


def test_step_kernel_in_bf16_stays_within_bf16_rounding_of_fp32():
    inputs = make_inputs(torch.float32)
    ref = reference(*inputs)
    got = BF16StepLSTM.apply(*inputs, torch.bfloat16)
    assert all(o.dtype == torch.float32 for o in got)  # the caller's dtype back
    for r, o in zip(ref, got):
        assert (o - r).abs().max() < 2e-2
    for r, o in zip(grads(ref, inputs), grads(got, inputs)):
        assert o.dtype == r.dtype
        cos = torch.nn.functional.cosine_similarity(o.flatten(), r.flatten(), dim=0)
        assert cos > 0.999, cos
        assert (o - r).norm() / r.norm() < 3e-2


def backward_name(out) -> str:
    return type(out.grad_fn).__name__


@pytest.mark.parametrize("autocast,grad,kernel,expect_step", [
    (True, True, "auto", True),     # bf16 training on CPU: the step loop
    (True, False, "auto", False),   # inference: oneDNN's fused bf16 forward is fast
    (False, True, "auto", False),   # fp32: the fused kernel's own fp32 products are faster
    (True, True, "fused", False),   # asked for explicitly
])
def test_auto_picks_the_step_kernel_only_for_bf16_training_on_cpu(autocast, grad, kernel, expect_step,
                                                                   monkeypatch):
    monkeypatch.setattr(lstm_kernels, "STEP_MIN_HIDDEN", H)
    x, h0, c0, *w = make_inputs(torch.float32)
    with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out, _ = lstm_layer(x, (h0.detach(), c0.detach()), w, True, kernel)
    assert (out.grad_fn is not None and "BF16Step" in backward_name(out)) == expect_step


def test_layers_smaller_than_the_threshold_keep_the_fused_kernel(monkeypatch):
    monkeypatch.setattr(lstm_kernels, "STEP_MIN_HIDDEN", H + 1)
    x, h0, c0, *w = make_inputs(torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = lstm_layer(x, (h0.detach(), c0.detach()), w, True, "auto")
        forced, _ = lstm_layer(x, (h0.detach(), c0.detach()), w, True, "step")
    assert "BF16Step" not in backward_name(out)
    assert "BF16Step" in backward_name(forced)  # model.lstm_kernel=step: whatever the size


def test_frozen_layer_below_nothing_trainable_keeps_the_fused_kernel():
    x, h0, c0, *w = make_inputs(torch.float32, requires_grad=(False,) * 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = lstm_layer(x, (h0, c0), w, True, "auto")
    assert out.grad_fn is None


def lm_step(kernel: str):
    lstm_kernels.STEP_MIN_HIDDEN = 1  # the step kernel for every layer of this small model
    torch.manual_seed(0)
    cfg = ModelConfig(emb_size=16, hidden_size=24, n_layers=3, lstm_kernel=kernel)
    model = build_lm(cfg, 50, 1).train()
    ids = torch.randint(2, 50, (4, 12), generator=torch.Generator().manual_seed(3))
    torch.manual_seed(1)  # the same dropout masks for both kernels
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _, _ = model(ids[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_language_model_step_in_bf16_matches_the_fused_kernel(monkeypatch):
    monkeypatch.setattr(lstm_kernels, "STEP_MIN_HIDDEN", lstm_kernels.STEP_MIN_HIDDEN)  # restored after
    loss_fused, g_fused = lm_step("fused")
    loss_step, g_step = lm_step("auto")
    assert abs(loss_fused - loss_step) < 1e-2 * loss_fused
    assert torch.nn.functional.cosine_similarity(g_fused, g_step, dim=0) > 0.99


def test_unknown_kernel_name_is_a_clean_error(tmp_path):
    proc = ulmfit("train-clf", *FAST, "lm=null", "model.lstm_kernel=fast", cwd=tmp_path, check=False)
    assert_clean_error(proc, "model.lstm_kernel=fast", "auto")
    assert not list(tmp_path.glob("outputs/**/checkpoints"))


def test_the_choice_is_made_per_model_so_a_big_models_small_last_layer_follows_it(monkeypatch):
    monkeypatch.setattr(lstm_kernels, "STEP_MIN_HIDDEN", 20)
    model = build_lm(ModelConfig(emb_size=8, hidden_size=24, n_layers=3), 30, 1).train()
    ids = torch.randint(2, 30, (2, 5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw, _, _ = model.encoder(ids)
    assert [r.size(-1) for r in raw] == [24, 24, 8]
    assert all("BF16Step" in backward_name(r) for r in raw), [backward_name(r) for r in raw]
