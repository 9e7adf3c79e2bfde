"""Where and how tensors run (device, precision, threads, seeds, RNG state) and how a run is
asked to stop (signals). Each is an explicit call: importing this module changes nothing."""
from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from .errors import StoppedPreparing, UserError
from .models.accel.lstm_kernels import KERNELS

log = logging.getLogger("ulmfit")


def resolve_device(name: str) -> torch.device:
    """device=auto|cpu|cuda|cuda:N -> torch.device, refusing CUDA where there is none."""
    name = str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(
                f"device={name} was asked for, but this machine has no usable CUDA GPU "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}).",
                "Use device=cpu or device=auto, or install a CUDA build of torch on a machine with a GPU.",
            )
        idx = int(name.split(":")[1]) if ":" in name else 0
        if idx >= torch.cuda.device_count():
            raise UserError(
                f"device={name} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s).",
                f"Use device=cuda:0 .. cuda:{torch.cuda.device_count() - 1}.",
            )
        return torch.device("cuda", idx)
    raise UserError(f"device={name} is not a device name.", "Use device=auto, cpu, cuda or cuda:N.")


def check_precision(precision: str, device: torch.device) -> str:
    if precision not in ("fp32", "bf16", "fp16"):
        raise UserError(f"precision={precision} is not supported.", "Use precision=fp32, bf16 or fp16.")
    if precision == "fp16" and device.type == "cpu":
        raise UserError(
            "precision=fp16 needs a CUDA device (CPU autocast supports bf16 only).",
            "Use precision=bf16 or precision=fp32 on CPU.",
        )
    return precision


def check_lstm_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise UserError(f"model.lstm_kernel={kernel} is not a kernel name.",
                        f"Use model.lstm_kernel={' or '.join(KERNELS)} (auto is the fastest measured).")
    return kernel


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(on: bool) -> None:
    """deterministic=true: kernels that give the same bits every run, where torch has them (GPU).
    false switches them off again: sweep jobs that share a process (Hydra's basic launcher) each
    get their own setting, not the one an earlier job left."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS first runs
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(bool(on), warn_only=True)  # ops without such a kernel warn
    torch.backends.cudnn.deterministic = bool(on)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def rng_state() -> dict:
    """All RNG states, as plain data loadable with torch.load(weights_only=True)."""
    state = {
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
        "numpy": np.random.get_state()[1].tolist(),
        "numpy_pos": int(np.random.get_state()[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # One state per GPU of the machine that saved it; a run resumed where fewer GPUs are
        # visible (8 when saved, 1 now) sets those it has, instead of failing on a missing device.
        for i, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


@dataclass
class StopFlag:
    """Set when the run is asked to stop (a signal); training loops finish their batch, save, stop.
    Before `training` is set (reading and tokenizing the data) there is nothing to save, so a
    signal stops the run at once."""

    requested: bool = False
    training: bool = False


@contextlib.contextmanager
def stop_on_signals(flag: StopFlag, ddp: bool = False) -> Iterator[StopFlag]:
    """SIGINT/SIGTERM set `flag` instead of killing the process, so the run can save and exit 130.

    A second SIGINT on one process interrupts at once (KeyboardInterrupt). Under DDP the launcher
    (torchrun) forwards the terminal's SIGINT a second time, and a SLURM job's SIGUSR2 (time limit,
    preemption) reaches the worker processes too: there every such signal means "save and stop",
    never "die now" (torchrun kills the processes itself if they take too long)."""
    signals = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGUSR2,) if ddp else ())

    def handler(signum, frame):
        if flag.requested:
            if ddp:
                return
            raise KeyboardInterrupt
        flag.requested = True
        if not flag.training:  # an hour of tokenizing is not worth waiting for: nothing would be saved
            log.warning("signal %d: stopping now; training had not started, so there is nothing to save", signum)
            raise StoppedPreparing()
        log.warning("signal %d: finishing the current batch, then saving and exiting", signum)

    with signal_handlers(signals, handler):
        yield flag


@contextlib.contextmanager
def signal_handlers(signals, handler) -> Iterator[None]:
    """`handler` for each of `signals` inside the block, the previous handlers after it."""
    old = {}
    for sig in signals:
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (e.g. some launchers)
            pass
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
