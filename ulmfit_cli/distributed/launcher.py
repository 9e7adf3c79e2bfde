"""`distributed=ddp`: the Hydra job (which made the run directory) starts `python -m
torch.distributed.run --standalone --nproc_per_node=N -m ulmfit_cli <stage> <same overrides>
hydra.run.dir=<that directory>`, forwards SIGTERM to the training processes and waits for them
(`launch`). This is also how a SLURM job (one task per node, N GPUs) trains on all its GPUs.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from ..errors import Interrupted, UserError
from ..fileutil import read_json
from ..runtime import resolve_device, signal_handlers
from .process_group import check_supported, device_for_rank, env_rank, under_launcher

log = logging.getLogger("ulmfit")


CHILD_ENV = "ULMFIT_DDP_CHILD"  # set by `launch` for the processes it starts


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
