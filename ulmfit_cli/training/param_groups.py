"""Discriminative fine-tuning and unfreezing, expressed over a model's layer groups.

A model exposes `layer_groups()` (lowest first); nothing here knows what the groups are.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..registry import Registry

if TYPE_CHECKING:  # only for hints: `ulmfit report` draws schedules without loading torch
    import torch.nn as nn

# Each unfreezing option, with the `unfreeze.*` knobs it reads and whether it opens the groups in
# phases (`thaws_in_phases`: train-clf warns when a short budget leaves those mostly frozen).
UNFREEZE = Registry("unfreeze")


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
    return UNFREEZE.ignored_knobs(cfg.name, keys)


def unfreeze_plan(cfg, n_groups: int, epochs: int) -> list[Phase]:
    """Phases for the `unfreeze` option `cfg.name` over `epochs` epochs in total."""
    return UNFREEZE[cfg.name].build(cfg, n_groups, epochs)


def _top(k: int, n_groups: int) -> list[bool]:
    return [i >= n_groups - k for i in range(n_groups)]


def _then_all(phases: list[Phase], n_groups: int, epochs: int) -> list[Phase]:
    """`phases`, then all groups for the epochs left (at least one)."""
    return phases + [Phase([True] * n_groups, max(epochs - sum(p.epochs for p in phases), 1))]


@UNFREEZE.register("gradual", reads=("steps", "epochs_per_phase"), thaws_in_phases=True)
def _gradual(cfg, n_groups: int, epochs: int) -> list[Phase]:
    """Gradual unfreezing (paper §3.3): the top steps[k] groups train for epochs_per_phase epochs each,
    then all groups."""
    steps = [k for k in cfg.steps if k < n_groups]
    return _then_all([Phase(_top(k, n_groups), cfg.epochs_per_phase) for k in steps], n_groups, epochs)


@UNFREEZE.register("none", thaws_in_phases=False)
def _none(cfg, n_groups: int, epochs: int) -> list[Phase]:
    """All layer groups train from the start."""
    return [Phase([True] * n_groups, epochs)]


@UNFREEZE.register("last", thaws_in_phases=False)
def _last(cfg, n_groups: int, epochs: int) -> list[Phase]:
    """Only the top group (the head) trains."""
    return [Phase(_top(1, n_groups), epochs)]


@UNFREEZE.register("chain_thaw", reads=("epochs_per_phase",), thaws_in_phases=True)
def _chain_thaw(cfg, n_groups: int, epochs: int) -> list[Phase]:
    """Chain-thaw (Felbo et al. 2017): the head, then each lower group alone, for epochs_per_phase each,
    then all groups."""
    phases = [Phase([i == g for i in range(n_groups)], cfg.epochs_per_phase) for g in range(n_groups - 1, -1, -1)]
    return _then_all(phases, n_groups, epochs)
