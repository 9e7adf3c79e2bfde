"""Discriminative fine-tuning and unfreezing, expressed over a model's layer groups.

A model exposes `layer_groups()` (lowest first); nothing here knows what the groups are.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:  # only for hints: `ulmfit report` draws schedules without loading torch
    import torch.nn as nn


def group_params(groups: list[list[nn.Module]]) -> list[list[nn.Parameter]]:
    """Parameters of each group, each parameter once (tied weights belong to the first group)."""
    seen: set[int] = set()
    out = []
    for modules in groups:
        params = []
        for m in modules:
            for p in m.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        out.append(params)
    return out


def discriminative_lrs(lr: float, n_groups: int, decay: float) -> list[float]:
    """eta^(l-1) = eta^l / decay, the top group at `lr`."""
    return [lr / decay ** (n_groups - 1 - i) for i in range(n_groups)]


@dataclass
class Phase:
    """A stretch of training with a fixed set of trainable groups and its own LR cycle."""

    trainable: list[bool]
    epochs: int


def ignored_knobs(cfg, keys: set[str]) -> list[tuple[str, str]]:
    """(knob, the fix) for each `unfreeze.<knob>` in `keys` that `cfg` does not read."""
    read_by = {"steps": ("gradual",), "epochs_per_phase": ("gradual", "chain_thaw")}
    return [(k, f"add unfreeze={read_by[k][0]} to use it") for k in sorted(keys & read_by.keys())
            if cfg.name not in read_by[k]]


def unfreeze_plan(cfg, n_groups: int, epochs: int) -> list[Phase]:
    """Phases for unfreeze=gradual|none|last|chain_thaw over `epochs` epochs in total.

    gradual: the top `steps[k]` groups train for `epochs_per_phase` epochs each, then all groups
    train for the remaining epochs (at least one). chain_thaw (Felbo et al. 2017): the head, then
    each lower group alone, then all.
    """
    top = lambda k: [i >= n_groups - k for i in range(n_groups)]
    if cfg.name == "none":
        return [Phase([True] * n_groups, epochs)]
    if cfg.name == "last":
        return [Phase(top(1), epochs)]
    if cfg.name == "gradual":
        steps = [k for k in cfg.steps if k < n_groups]
        phases = [Phase(top(k), cfg.epochs_per_phase) for k in steps]
        return phases + [Phase([True] * n_groups, max(epochs - sum(p.epochs for p in phases), 1))]
    if cfg.name == "chain_thaw":
        phases = [Phase([i == g for i in range(n_groups)], cfg.epochs_per_phase)
                  for g in range(n_groups - 1, -1, -1)]
        return phases + [Phase([True] * n_groups, max(epochs - sum(p.epochs for p in phases), 1))]
    raise UserError(
        f"Unknown unfreeze.name '{cfg.name}'.",
        "Use unfreeze=gradual, unfreeze=none, unfreeze=last or unfreeze=chain_thaw.",
    )
