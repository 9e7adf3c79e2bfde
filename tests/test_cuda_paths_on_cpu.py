"""The parts of the CUDA branches that a CPU can check; tests/test_cuda.py has the rest."""
from __future__ import annotations

import torch

from ulmfit_cli import runtime
from ulmfit_cli.errors import UserError, as_user_error
from ulmfit_cli.models.accel.lstm_kernels import cudnn_bf16_lstm, fused_lstm


def test_gpu_out_of_memory_in_any_of_its_forms_gives_the_batch_size_advice():
    """The caching allocator raises torch.OutOfMemoryError; CUDA, cuBLAS and cuDNN allocating for
    themselves (a context, a handle, a workspace) raise a plain RuntimeError naming the status."""
    for e in (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
              RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported"),
              RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
              RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")):
        err = as_user_error(e)
        assert isinstance(err, UserError) and err.exit_code == 2, e
        assert str(err).startswith("The GPU ran out of memory (") and "Lower train.bs" in str(err)
        assert "\n" not in str(err)  # one paragraph: only the first line of torch's message
    other = RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED")
    assert as_user_error(other) is other


def test_resume_sets_the_cuda_rng_states_of_the_gpus_there_are(monkeypatch):
    """A checkpoint holds one CUDA RNG state per GPU of the machine that wrote it: resumed where
    fewer GPUs are visible it sets those, where set_rng_state_all failed on the missing device."""
    saved = runtime.rng_state()
    states = [torch.full((16,), i, dtype=torch.uint8) for i in range(8)]
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": calls.append((int(s[0]), device)))
    runtime.set_rng_state({**saved, "cuda": states})
    assert calls == [(0, 0)]


def lstm_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    B, T, N, H = 3, 7, 5, 6
    x = torch.randn(B, T, N, generator=g).requires_grad_()
    state = (0.5 * torch.randn(1, B, H, generator=g), 0.5 * torch.randn(1, B, H, generator=g))
    w = [(0.4 * torch.randn(*s, generator=g)).requires_grad_() for s in ((4 * H, N), (4 * H, H), (4 * H,), (4 * H,))]
    return x, state, w


def test_the_bf16_lstm_handed_to_cudnn_computes_torchs_lstm_to_bf16_rounding():
    """cudnn_bf16_lstm (bf16 autocast on CUDA, where cuDNN runs bf16) is torch's fused LSTM on
    bf16 copies of the inputs laid out in one flat buffer; here it runs on the CPU (oneDNN): bf16
    output, the hidden state back in its own dtype, gradients to the fp32 weights."""
    x, state, w = lstm_inputs()
    ref, (h_ref, c_ref) = fused_lstm(x, state, w, True)
    g_ref = torch.autograd.grad(ref.sum() + h_ref.sum() + c_ref.sum(), [x, *w])
    out, (h, c) = cudnn_bf16_lstm(x, state, w, True)
    assert out.dtype == torch.bfloat16 and h.dtype == c.dtype == torch.float32
    for a, b in ((out.float(), ref), (h, h_ref), (c, c_ref)):
        assert (a - b).abs().max() < 3e-2
    got = torch.autograd.grad(out.float().sum() + h.sum() + c.sum(), [x, *w])
    for a, b in zip(got, g_ref):
        assert a.dtype == torch.float32
        assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.999


def test_lstm_on_the_cpu_never_takes_the_cuda_bf16_path():
    x, state, w = lstm_inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = fused_lstm(x, state, w, True)
    assert out.dtype == torch.bfloat16 and "cudnn" not in type(out.grad_fn).__name__.lower()


def test_deterministic_false_undoes_an_earlier_true_in_the_same_process():
    """Sweep jobs run one after another in one process (Hydra's basic launcher): a job with
    deterministic=false after one with true gets torch's ordinary kernels back."""
    try:
        runtime.set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        runtime.set_deterministic(False)
        assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
