"""Data-parallel training over several processes: torch.distributed + DistributedDataParallel.

Two ways in, one code path:

* `torchrun --nproc_per_node=N -m ulmfit_cli pretrain ...` (or any launcher that sets RANK,
  WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): every process runs the stage; DDP is on
  whenever WORLD_SIZE > 1, whatever `distributed=` says.
* `ulmfit pretrain distributed=ddp [distributed.nproc=N]`: the Hydra job (which made the run
  directory) starts `python -m torch.distributed.run --standalone --nproc_per_node=N -m ulmfit_cli
  pretrain <same overrides> hydra.run.dir=<that directory>` and waits for it (`launch`). This is
  also how a SLURM job (one task per node, N GPUs) trains on all its GPUs.

The package, one job per module: collectives.py (`Ranks`), process_group.py (joining under
torchrun, the checks), launcher.py (`distributed=ddp` starting torchrun), ddp.py (the model under
DistributedDataParallel).

Each process: `setup` joins the process group (NCCL on CUDA, gloo on CPU), takes device
cuda:LOCAL_RANK (or the CPU), learns rank 0's run directory and returns its `Ranks`, which the
run context carries (nothing here keeps state between calls). Only rank 0 writes anything
(metrics.csv, summary.json, checkpoints, train.log, .hydra/); the other ranks run Hydra in a
throwaway directory that is deleted when they exit. Which batch sizes DDP supports is
checked by `check_supported` (clear errors, before any process starts where possible).
"""
from __future__ import annotations

from .collectives import Ranks
from .ddp import DDPForward, reseed_rank
from .launcher import CHILD_ENV, launch, wants_launch, worker_exit_code
from .process_group import cleanup, rewrite_argv, setup

__all__ = ["CHILD_ENV", "DDPForward", "Ranks", "cleanup", "launch", "reseed_rank", "rewrite_argv", "setup",
           "wants_launch", "worker_exit_code"]
