"""The wiring every stage's training shares, written once: the optimiser with discriminative
LRs, the Trainer with its callbacks (metrics rows, progress, checkpoints, and those `callbacks=`
names), the DDP wrapper and per-rank reseeding, resuming from saved progress, and stopping on a signal.
"""
from __future__ import annotations

import inspect

import hydra.utils
import torch
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from ..distributed import DDPForward, reseed_rank
from ..errors import Interrupted, UserError
from ..training.callbacks import Checkpointer, LogRows, ProgressBar
from ..training.loop import Trainer
from ..training.param_groups import Phase, discriminative_lrs, group_params
from ..training.schedules import make_schedule
from .context import RunContext


def make_optimizer(cfg, groups) -> tuple[torch.optim.Optimizer, list[float]]:
    """Adam(beta1, beta2) with decoupled weight decay and one param group per layer group, the
    top group at schedule.lr and each lower one schedule.decay times lower (discriminative)."""
    params = group_params(groups)
    sc = cfg.schedule
    lrs = discriminative_lrs(sc.lr, len(params), sc.decay if sc.discriminative else 1.0)
    opt = torch.optim.AdamW(
        [{"params": p, "lr": lr} for p, lr in zip(params, lrs)],
        betas=(cfg.train.beta1, cfg.train.beta2), eps=cfg.train.eps, weight_decay=cfg.train.weight_decay,
        fused=fused_adamw_runs_on([t for p in params for t in p]) or None,
    )
    return opt, lrs


def fused_adamw_runs_on(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW (one kernel over all tensors) can update `params`: floating point,
    on the CPU or a CUDA device. On a CPU it is several times faster than the per-tensor loop torch
    otherwise takes there, with the same arithmetic up to rounding."""
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)


def make_trainer(ctx: RunContext, model: torch.nn.Module, step_fn, eval_fn, direction: str, metrics: list[str], *,
                 carry=None, lr_scale=None) -> Trainer:
    """A Trainer for `model` (already on ctx.device), resumed from this direction's saved
    progress when the run is resumed. `metrics`: the names of what eval_fn returns (val_loss, ...),
    which callbacks may monitor. `carry` and `lr_scale` are the LM's (see training/loop.py)."""
    cfg, ranks = ctx.cfg, ctx.ranks
    opt, lrs = make_optimizer(cfg, model.layer_groups())
    # the epoch's rows are logged before callbacks= see them, and checkpointed after they decided
    callbacks = [LogRows(ctx.log_row(direction)), *([ProgressBar(ctx.progress)] if ctx.progress is not None else []),
                 *configured_callbacks(cfg, metrics),
                 Checkpointer(lambda tr: save_progress(ctx, tr, direction), cfg.checkpoint.every_steps)]
    trainer = Trainer(model, opt, lrs, make_schedule(cfg.schedule), step_fn, eval_fn, device=ctx.device,
                      precision=ctx.precision, clip=cfg.train.clip, on_nan=cfg.train.on_nan,
                      forward=DDPForward(model, ctx.device) if ranks.enabled else None, carry=carry,
                      lr_scale=lr_scale, callbacks=callbacks, stop=ctx.stop, ranks=ranks,
                      max_steps_per_epoch=cfg.train.max_steps_per_epoch)
    reseed_rank(cfg.seed, ranks.rank, 0)
    resume(ctx, trainer, direction)
    return trainer


def configured_callbacks(cfg, metrics: list[str]) -> list:
    """New objects for the nodes of `callbacks=` (each direction its own), every one checked
    before training: an importable `_target_`, keys its class takes, a metric this stage has."""
    found = []
    for name, node in (cfg.get("callbacks") or {}).items():
        cb = instantiate_callback(f"callbacks.{name}", node)
        if hasattr(cb, "check_metrics"):
            cb.check_metrics(list(metrics))
        found.append(cb)
    return found


def check_callbacks(cfg, metrics: list[str]) -> None:
    """`callbacks=` checked when a stage starts, before its data is read (each Trainer makes its own)."""
    configured_callbacks(cfg, metrics)


def instantiate_callback(where: str, node):
    target = node.get("_target_") if OmegaConf.is_dict(node) else None
    if not target:
        raise UserError(f"{where} has no _target_, so ulmfit cannot tell which class to make.",
                        "Give it `_target_: <module>.<Class>` (as conf/callbacks/early_stopping.yaml does).")
    try:
        cls = hydra.utils.get_object(target)
    except Exception as e:  # ImportError, AttributeError, or Hydra's wrapping of them
        raise UserError(f"{where}._target_={target} cannot be imported ({e}).",
                        "Check the name, and put the folder holding its module on PYTHONPATH.") from None
    keys = [k for k in node if not str(k).startswith("_")]
    try:
        inspect.signature(cls).bind(**dict.fromkeys(keys))
    except TypeError as e:
        takes = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
        raise UserError(f"{where}: {target} refuses the keys {', '.join(keys) or '(none)'} ({e}); it takes "
                        f"{', '.join(takes) or 'no key'}.", f"Fix or drop the key in {where}.") from None
    try:
        return hydra.utils.instantiate(node)
    except InstantiationException as e:
        if isinstance(e.__cause__, UserError):  # the class's own check of a value
            raise e.__cause__ from None
        raise


def fit(ctx: RunContext, trainer: Trainer, batches, phases: list[Phase]) -> list[dict]:
    """trainer.fit, then exit 130 if a signal asked to stop (its progress is saved by then)."""
    ctx.stop.training = True  # from here a signal lets the batch finish and the progress be saved
    history = trainer.fit(batches, phases)
    if ctx.ranks.sum([float(trainer.stopping or ctx.stop.requested)])[0] > 0:
        ctx.ranks.barrier()  # no rank exits (which makes torchrun stop the others) before rank 0 has saved
        raise Interrupted(ctx.dir)
    return history


def save_progress(ctx: RunContext, trainer: Trainer, direction: str) -> None:
    """Data-parallel: the ranks' hidden states are gathered into the one-process layout (a
    collective: every rank takes part), and rank 0 writes."""
    ranks = ctx.ranks
    hidden = trainer.carry.get() if trainer.carry is not None else None
    if ranks.enabled and hidden is not None:
        hidden = [ranks.gather_rows([h, c]) for h, c in hidden]
    if ranks.is_rank0:
        state = trainer.state_dict()
        if ranks.enabled:
            state["hidden"] = hidden
        ctx.save_progress(direction, state)


def resume(ctx: RunContext, trainer: Trainer, direction: str) -> None:
    """Load the newest progress checkpoint of `direction` if resuming; every rank loads rank 0's
    (the same weights, optimiser and position) and takes its own rows of the hidden state."""
    state = ctx.load_progress(direction)
    if state is None:
        return
    ranks = ctx.ranks
    if ranks.enabled and state.get("hidden") is not None:
        state = {**state, "hidden": [[ranks.my_rows(h), ranks.my_rows(c)] for h, c in state["hidden"]]}
    trainer.load_state_dict(state)
    reseed_rank(ctx.cfg.seed, ranks.rank, trainer.state.global_step)


class HiddenCarry:
    """An LM's hidden state, carried from one batch to the next (truncated BPTT)."""

    def __init__(self, model):
        self.model = model

    def reset(self) -> None:
        self.model.reset()

    def get(self) -> list | None:
        return self.model.hidden

    def set(self, state: list | None) -> None:
        self.model.hidden = state
