"""The model under DistributedDataParallel, and each rank's own dropout masks."""
from __future__ import annotations

import numpy as np
import torch


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
