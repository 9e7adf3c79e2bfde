"""Data-parallel training over several processes: torch.distributed + DistributedDataParallel.

Two ways in, one code path:

* `torchrun --nproc_per_node=N -m ulmfit_cli pretrain ...` (or any launcher that sets RANK,
  WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): every process runs the stage; DDP is on
  whenever WORLD_SIZE > 1, whatever `distributed=` says.
* `ulmfit pretrain distributed=ddp [distributed.nproc=N]`: the Hydra job (which made the run
  directory) starts `python -m torch.distributed.run --standalone --nproc_per_node=N -m ulmfit_cli
  pretrain <same overrides> hydra.run.dir=<that directory>` and waits for it (`launch`). This is
  also how a SLURM job (one task per node, N GPUs) trains on all its GPUs.

Each process: `setup` joins the process group (NCCL on CUDA, gloo on CPU), takes device
cuda:LOCAL_RANK (or the CPU), learns rank 0's run directory and returns its `Ranks`, which the
run context carries (nothing here keeps state between calls). Only rank 0 writes anything
(metrics.csv, summary.json, checkpoints, train.log, .hydra/); the other ranks run Hydra in a
throwaway directory that is deleted when they exit. Which batch sizes DDP supports is
checked by `check_supported` (clear errors, before any process starts where possible).
"""
from __future__ import annotations

import atexit
import datetime
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import is_multirun
from .errors import Interrupted, UserError
from .fileutil import read_json
from .runtime import resolve_device, signal_handlers

log = logging.getLogger("ulmfit")

CHILD_ENV = "ULMFIT_DDP_CHILD"  # set by `launch` for the processes it starts


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


@dataclass
class Ranks:
    """This process's place in the job. The default (world_size 1) is the single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None  # the training device of this rank
    run_dir: Path | None = None  # rank 0's run directory (None: single process, Hydra's)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_rank0(self) -> bool:
        return self.rank == 0

    # -- collectives (identity on one process) ---------------------------------------------
    def _comm_device(self) -> torch.device:
        if self.enabled and torch.distributed.get_backend() == "nccl":
            return self.device
        return torch.device("cpu")

    def sum(self, values: list[float]) -> list[float]:
        """The sum over all ranks of each value (float64), for metric sums and flags."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t.tolist()

    def broadcast(self, obj):
        """rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def gather_objects(self, obj) -> list:
        """Every rank's `obj` (picklable), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """rank 0's buffers (BatchNorm running statistics) on every rank, as DDP does before each
        training forward: evaluation then scores the model rank 0 saves."""
        if self.enabled:
            for b in module.buffers():
                comm = b.data.to(self._comm_device())
                torch.distributed.broadcast(comm, src=0)
                b.data.copy_(comm)

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def gather_rows(self, tensors: list[torch.Tensor], dim: int = 1) -> list[torch.Tensor]:
        """Each tensor concatenated along `dim` over the ranks in rank order (every rank gets it).

        The LM's hidden state is (1, bs / W, hidden) per rank: gathered it is the (1, bs, hidden)
        state of the same streams on one process, so checkpoints do not depend on the world size."""
        if not self.enabled:
            return list(tensors)
        out = []
        for t in tensors:
            t = t.contiguous().to(self._comm_device())
            parts = [torch.empty_like(t) for _ in range(self.world_size)]
            torch.distributed.all_gather(parts, t)
            out.append(torch.cat(parts, dim=dim).cpu())
        return out

    def my_rows(self, t: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This rank's contiguous share of `t` along `dim` (inverse of gather_rows)."""
        if not self.enabled:
            return t
        n = t.size(dim) // self.world_size
        return t.narrow(dim, self.rank * n, n)


# -- checks ------------------------------------------------------------------------------------
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


def default_nproc(cfg) -> int:
    n = cfg.distributed.nproc
    if n is not None:
        if int(n) < 1:
            raise UserError(f"distributed.nproc={n}: at least one process is needed.", "Use distributed.nproc=1 or more.")
        return int(n)
    if resolve_device(cfg.device).type == "cuda":
        return torch.cuda.device_count()
    raise UserError(
        "distributed=ddp on a CPU needs the number of processes: distributed.nproc is null, which means one per GPU, "
        "and there is no GPU here.",
        "Pass distributed.nproc=<N> (e.g. 2; each process then uses threads= CPU threads, default 1).",
    )


# -- joining / leaving the process group ---------------------------------------------------------
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


# -- `distributed=ddp`: start the processes ---------------------------------------------------------
def worker_exit_code(err: Exception) -> int | None:
    """How a DDP process ends on a user error without printing it (None: print it as usual).

    A stop by signal is reported once: by the job that started the processes (which then exit 0, so
    that torchrun does not report a failure), or by rank 0 under a plain torchrun."""
    if not under_launcher() or getattr(err, "exit_code", 2) != 130:
        return None
    if os.environ.get(CHILD_ENV) == "1":
        return 0
    return 130 if env_rank() != 0 else None


def stop_workers(proc: subprocess.Popen, signum: int) -> None:
    """Signal the training processes (torchrun's children): they finish the batch, save, exit.
    torchrun itself is only signalled when its children cannot be found."""
    if proc.poll() is not None:
        return
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        children = []
    for pid in children:
        try:
            os.kill(int(pid), signum)
        except (OSError, ValueError):
            pass
    if not children:
        proc.send_signal(signum)


def wants_launch(cfg) -> bool:
    return str(cfg.distributed.name) == "ddp" and not under_launcher() and \
        os.environ.get(CHILD_ENV) != "1"


def launch(cfg, subcommand: str, overrides: list[str], run_dir: Path) -> dict | None:
    """Run this job's stage in `distributed.nproc` processes under torchrun, in `run_dir`; return
    rank 0's summary. With nproc 1 the caller runs it in this process instead (returns None)."""
    n = default_nproc(cfg)
    if n == 1:
        return None
    check_supported(cfg, n)
    if str(cfg.device).startswith("cuda:"):
        device_for_rank(cfg.device, 0)  # the same clear error as in the processes
    keep = [o for o in overrides if not o.startswith(("hydra.run.dir=", "hydra.output_subdir="))]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "ulmfit_cli", subcommand, *keep, f"hydra.run.dir={run_dir}", "hydra.output_subdir=null"]
    env = {**os.environ, CHILD_ENV: "1"}
    if cfg.threads:
        env["OMP_NUM_THREADS"] = str(cfg.threads)
    log.info("DDP: starting %d processes: %s", n, " ".join(cmd))
    for h in logging.getLogger().handlers:
        h.flush()
    # torchrun dies of SIGUSR2 (SLURM's requeue warning) by default: it ignores it and the worker
    # processes, which handle it (save, then stop), inherit the ignore only until they train.
    proc = subprocess.Popen(cmd, env=env, preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))
    forwarded = []

    def forward(signum, frame):  # SIGTERM (SLURM, kill): the processes save progress and stop
        forwarded.append(signum)
        stop_workers(proc, signum)

    with signal_handlers((signal.SIGTERM,), forward):
        try:
            rc = proc.wait()
        finally:
            # SystemExit from a requeueing launcher (submitit's SIGUSR2 handler), KeyboardInterrupt, ...:
            # let the processes save and stop rather than orphaning them.
            if proc.poll() is None:
                stop_workers(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
    summary = run_dir / "summary.json"
    if rc == 0 and summary.exists():
        return read_json(summary)
    if forwarded or rc in (130, -signal.SIGINT, -signal.SIGTERM):
        raise Interrupted(run_dir)
    raise UserError(
        f"The {n} training processes failed (torchrun exit code {rc}); the error is printed above "
        f"and in {run_dir}/train.log.",
        f"Fix that error, then continue the run with resume={run_dir} (or start a new one).",
    )


# -- the model under DDP ----------------------------------------------------------------------------
class DDPForward:
    """The model called through DistributedDataParallel (gradients averaged over the ranks).

    DDP fixes the parameters it synchronises when it is built, so it is rebuilt whenever the
    trainable set changes (gradual unfreezing). The LM's hidden state is an attribute of the
    wrapped model, carried per rank (each rank holds its own streams)."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model, self.device = model, device
        self.ddp, self.key = None, None

    def __call__(self, *inputs):
        key = tuple(p.requires_grad for p in self.model.parameters())
        if key != self.key:
            self.ddp = None  # drop the old reducer's hooks first
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            self.key = key
        return self.ddp(*inputs)


def reseed_rank(seed: int, rank: int, step: int) -> None:
    """Ranks > 0 draw their own dropout masks (rank 0 keeps the one-process sequence)."""
    if rank > 0:
        torch.manual_seed(int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0]))
