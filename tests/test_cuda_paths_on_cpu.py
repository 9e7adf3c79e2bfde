"""The parts of the CUDA branches that a CPU can check (issue 19); tests/test_cuda.py has the rest."""
from __future__ import annotations

import torch

from ulmfit_cli import runtime
from ulmfit_cli.errors import UserError, as_user_error


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
