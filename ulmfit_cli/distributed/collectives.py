"""`Ranks`: this process's place in a data-parallel job and the collectives over its processes
(sums, broadcasts, gathers, barrier), each the identity on a single process."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


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
