"""OmegaConf resolvers usable in configs."""
from __future__ import annotations

from omegaconf import OmegaConf

STAGES = ("pretrain", "finetune-lm", "train-clf")


def per_stage(stage: str, *values):
    """${per_stage:${stage},A,B,C} -> A for pretrain, B for finetune-lm, C for train-clf.

    Lets one experiment config (shared by all three stages) give each stage its own value."""
    return values[STAGES.index(stage)]


def register() -> None:
    if not OmegaConf.has_resolver("per_stage"):
        OmegaConf.register_new_resolver("per_stage", per_stage)
