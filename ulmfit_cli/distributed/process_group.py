"""Joining and leaving the process group under torchrun (or any launcher that sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT), and the checks of what DDP supports.

`setup` joins the group (NCCL on CUDA, gloo on CPU), takes device cuda:LOCAL_RANK (or the CPU),
learns rank 0's run directory and returns the `Ranks`, which the run context carries. Only rank 0
writes anything; the other ranks run Hydra in a throwaway directory (`rewrite_argv`) that is
deleted when they exit.
"""
from __future__ import annotations

import atexit
import datetime
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..command_line import is_multirun
from ..errors import UserError
from ..runtime import resolve_device
from .collectives import Ranks

log = logging.getLogger("ulmfit")


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def under_launcher() -> bool:
    """True in a process started by torchrun (or anything else that sets RANK/WORLD_SIZE) with WORLD_SIZE > 1."""
    return env_world_size() > 1 and "RANK" in os.environ


def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def check_supported(cfg, world_size: int) -> None:
    """Clear errors for what DDP cannot do, before any work starts."""
    if world_size <= 1:
        return
    t = cfg.train
    if cfg.stage == "train-clf" and t.bs < 2 * world_size:
        raise UserError(f"train.bs={t.bs} gives each of the {world_size} processes fewer than 2 documents per batch, "
                        "too few for the classifier head's BatchNorm statistics.",
                        f"Use train.bs={2 * world_size} or more, or fewer processes.")
    for key, bs in (("train.bs", t.bs), ("train.eval_bs", t.eval_bs or t.bs)):
        if bs % world_size:
            lower = max(bs // world_size, 1) * world_size
            raise UserError(
                f"{key}={bs} is not divisible by the {world_size} processes: each process trains on "
                f"{key.split('.')[1]}/{world_size} of the same {bs} token streams a one-process run reads.",
                f"Use {key}={lower} or {lower + world_size}, or a number of processes that divides {bs}.",
            )


def device_for_rank(name: str, local_rank: int) -> torch.device:
    device = resolve_device(name)
    if device.type != "cuda":
        return device
    if ":" in str(name):
        raise UserError(
            f"device={name} names one GPU, but under DDP each process uses the GPU of its local rank (cuda:LOCAL_RANK).",
            "Use device=cuda or device=auto, and choose the GPUs with CUDA_VISIBLE_DEVICES.",
        )
    if local_rank >= torch.cuda.device_count():
        raise UserError(
            f"Process of local rank {local_rank} has no GPU: this node has {torch.cuda.device_count()} visible.",
            "Start at most one process per GPU (torchrun --nproc_per_node / distributed.nproc).",
        )
    return torch.device("cuda", local_rank)


def rewrite_argv(argv: list[str]) -> list[str]:
    """Under torchrun, before Hydra starts: ranks > 0 get a throwaway run directory without .hydra/
    (rank 0's directory is the run's; they learn it in `setup`)."""
    if not under_launcher():
        return argv
    if is_multirun(argv):
        raise UserError(
            "A sweep (-m) cannot run under torchrun: every process would launch the whole sweep.",
            "Run the sweep with plain `ulmfit ... -m` and add distributed=ddp: each job then starts its own processes.",
        )
    if env_rank() == 0:
        return argv
    scratch = tempfile.mkdtemp(prefix=f"ulmfit-rank{env_rank()}-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    keep = [a for a in argv if not a.startswith(("hydra.run.dir=", "hydra.output_subdir="))]
    return [*keep, f"hydra.run.dir={scratch}", "hydra.output_subdir=null"]


def setup(cfg, run_dir: Path) -> Ranks:
    """Join the process group when started by torchrun; one process (no group) otherwise."""
    if not under_launcher():
        return Ranks()
    rank, world = env_rank(), env_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    check_supported(cfg, world)
    device = device_for_rank(cfg.device, local_rank)
    backend = cfg.distributed.backend
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend not in ("nccl", "gloo"):
        raise UserError(f"distributed.backend={backend} is not supported.", "Use auto, nccl (CUDA) or gloo (CPU or CUDA).")
    if backend == "nccl" and device.type != "cuda":
        raise UserError("distributed.backend=nccl needs CUDA devices, but this run trains on the CPU.",
                        "Use distributed.backend=auto (gloo on CPU) or device=cuda.")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(minutes=int(cfg.distributed.timeout_min))
    kwargs = {"device_id": device} if backend == "nccl" else {}
    torch.distributed.init_process_group(backend, timeout=timeout, **kwargs)
    ranks = Ranks(rank, world, local_rank, device)
    ranks.run_dir = Path(ranks.broadcast(str(run_dir)))
    if rank != 0:
        quiet_logging()
    log.info("DDP: %d processes (%s), this is rank %d on %s; run directory %s",
             world, backend, rank, device, ranks.run_dir)
    return ranks


def cleanup(ok: bool) -> None:
    """Leave the process group, if this process joined one; after a clean finish wait for every rank first."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        try:
            if ok:
                torch.distributed.barrier()
        finally:
            torch.distributed.destroy_process_group()


def quiet_logging() -> None:
    """Ranks > 0 log warnings and errors to the terminal only: train.log is rank 0's."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler):
            root.removeHandler(h)
            h.close()
    logging.getLogger("ulmfit").setLevel(logging.WARNING)
