"""A plain supervised training loop: phases of epochs, per-group LRs on a schedule, eval each epoch.

It knows nothing of language models or ULMFiT. A stage gives it, at construction:
- `step_fn(forward, batch) -> StepOut`: the loss of a batch (`forward` is the model, or the model
  wrapped for data-parallel training);
- `eval_fn(model) -> dict`: the validation metrics;
- `callbacks`: small objects whose hooks run at epoch start, after each step, at epoch end and
  when training ends (metrics rows, progress, checkpoints, and those of `callbacks=`: see
  callbacks.py for the hooks and what a callback may ask of the Trainer, e.g. to stop);
- `stop`: a flag a signal handler sets (the loop stops after the current batch);
- `ranks`: for data-parallel training, the collective over which, once per step, the ranks sum the
  logged loss and unit counts (every row of metrics.csv describes the global batch) and agree on a
  non-finite loss and on a stop, so that all ranks skip, stop or go on together;
- what only a language model has: `carry`, the hidden state carried from batch to batch, and
  `lr_scale(batch)`, variable BPTT's LR factor (seq_len / bptt).

`train_step(batch)` is one optimiser step exactly as `fit` takes it (the benchmark times it);
`evaluate()` scores the model as at an epoch's end.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

import torch

from ..errors import NonFiniteLoss
from ..runtime import StopFlag, rng_state, set_rng_state
from .param_groups import Phase
from .schedules import Schedule


@dataclass
class StepOut:
    loss: torch.Tensor  # what is back-propagated
    n_units: int  # tokens (LM) or examples (classifier), for throughput
    report_loss: float | None = None  # loss to log, if different from `loss` (e.g. without AR/TAR)


@dataclass
class StepResult:
    """One train_step, as agreed over the ranks: the loss to log (None when skipped), units, gradient norm."""

    loss: float | None
    units: int
    grad_norm: float | None = None

    @property
    def skipped(self) -> bool:
        return self.loss is None


class Collective(Protocol):
    """What the loop needs of a process group: sums over ranks (identity on one process)."""

    world_size: int

    def sum(self, values: list[float]) -> list[float]: ...


class Carry(Protocol):
    """State a model carries from one batch to the next (an LM's hidden state)."""

    def reset(self) -> None: ...

    def get(self) -> list | None: ...

    def set(self, state: list | None) -> None: ...


class Batches(Protocol):
    def epoch(self, epoch: int) -> Iterable:  # deterministic order for a given epoch
        ...

    def __len__(self) -> int: ...


@dataclass
class LoopState:
    """Where training is; saved with every checkpoint so a resumed run continues exactly."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # batches done in the current epoch
    global_step: int = 0
    history: list = field(default_factory=list)
    # running sums of the current epoch, so a mid-epoch resume reports the same epoch means
    sums: dict = field(default_factory=lambda: dict(EMPTY_SUMS))
    stop_requested: bool = False  # a callback ended training (request_stop): no further epoch


# n_norm: steps with a finite gradient norm (fp16's GradScaler skips a step whose gradients overflowed)
EMPTY_SUMS = {"loss": 0.0, "n": 0, "grad_norm": 0.0, "n_norm": 0, "units": 0, "skipped": 0, "seconds": 0.0}


def autocast_for(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        base_lrs: list[float],
        schedule: Schedule,
        step_fn: Callable[[Callable, object], StepOut],
        eval_fn: Callable[[torch.nn.Module], dict],
        *,
        device: torch.device,
        precision: str = "fp32",
        clip: float | None = None,
        on_nan: str = "stop",
        forward: Callable | None = None,
        carry: Carry | None = None,
        lr_scale: Callable[[object], float] | None = None,
        callbacks: Iterable = (),
        stop: StopFlag | None = None,
        ranks: Collective | None = None,
        max_steps_per_epoch: int | None = None,
    ):
        self.model, self.opt, self.base_lrs, self.schedule = model, optimizer, base_lrs, schedule
        self.step_fn, self.eval_fn = step_fn, eval_fn
        self.device, self.precision, self.clip, self.on_nan = device, precision, clip, on_nan
        self.forward = forward or model
        self.carry, self.lr_scale = carry, lr_scale
        self.callbacks = list(callbacks)
        self.stop = stop or StopFlag()
        self.ranks = ranks if ranks is not None and ranks.world_size > 1 else None
        self.max_steps = max_steps_per_epoch
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.state = LoopState()
        self.stopping = False  # the stop every rank agreed on, set by train_step
        self.t0 = time.perf_counter()
        self.elapsed_before = 0.0  # wall time of earlier (resumed-from) processes
        self.total_epochs = 0  # of the phases being fitted
        self.report: dict = {}  # what callbacks add to this direction's results (summary.json)
        self.weights_epoch: int | None = None  # the epoch whose weights a callback restored

    # -- one step and one evaluation -------------------------------------------------------
    def train_step(self, batch, lr_factor: float = 1.0) -> StepResult:
        """Set the LRs (schedule factor x the batch's own scale), forward, backward, clip, step."""
        scale = lr_factor * (self.lr_scale(batch) if self.lr_scale else 1.0)
        for g, base in zip(self.opt.param_groups, self.base_lrs):
            g["lr"] = base * scale
        with autocast_for(self.device, self.precision):
            out = self.step_fn(self.forward, batch)
        loss = out.loss
        finite = bool(torch.isfinite(loss.detach()))
        report = out.report_loss if out.report_loss is not None else float(loss.detach())
        report, units, finite = self._agree(report if finite else 0.0, out.n_units, finite)
        if not finite:
            if self.on_nan != "skip":
                raise NonFiniteLoss(self.state.global_step, float(loss.detach()))
            self.opt.zero_grad(set_to_none=True)
            return StepResult(None, units)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        params = [p for g in self.opt.param_groups for p in g["params"] if p.grad is not None]
        gnorm = torch.nn.utils.clip_grad_norm_(params, self.clip if self.clip else math.inf)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        return StepResult(report, units, float(gnorm))

    def _agree(self, loss: float, units: int, finite: bool) -> tuple[float, int, bool]:
        """On several ranks, one small all-reduce: the mean loss, total units, any NaN, any stop."""
        if self.ranks is None:
            self.stopping = self.stop.requested
            return loss, units, finite
        total, units, bad, stop = self.ranks.sum([loss, float(units), float(not finite), float(self.stop.requested)])
        self.stopping = stop > 0
        return total / self.ranks.world_size, int(units), bad == 0

    def evaluate(self) -> dict:
        self.model.eval()
        with torch.no_grad(), autocast_for(self.device, self.precision):
            return self.eval_fn(self.model)

    # -- what callbacks may ask ---------------------------------------------------------------
    def request_stop(self) -> None:
        """End training after the current epoch (a stop by plan, not by signal: the run finishes)."""
        self.state.stop_requested = True

    def weights(self) -> dict:
        """A CPU copy of the model's weights (a later step does not change it)."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def restore_weights(self, weights: dict, epoch: int) -> None:
        """Put back the weights of an earlier epoch, recorded as the ones the model now has."""
        self.model.load_state_dict(weights)
        self.weights_epoch = epoch

    # -- the loop ------------------------------------------------------------------------
    def fit(self, batches: Batches, phases: list[Phase]) -> list[dict]:
        """Train through every phase; the LR schedule restarts with each phase (as the reference).
        on_train_end runs when it ended as planned, not when a signal stopped it."""
        self.total_epochs = sum(p.epochs for p in phases)
        try:
            if self._fit_phases(batches, phases):
                self._call("on_train_end")
        finally:
            self._call("on_fit_end")
        return self.state.history

    def _fit_phases(self, batches: Batches, phases: list[Phase]) -> bool:
        """The epochs left to train; False when a signal stopped them."""
        n = min(len(batches), self.max_steps) if self.max_steps else len(batches)
        first = 0
        for phase in phases:
            last = first + phase.epochs
            if self.state.epoch < last and not self.state.stop_requested:
                self._set_trainable(phase.trainable)
            for epoch in range(max(first, self.state.epoch), last):
                if self.state.stop_requested:
                    return True
                self._train_epoch(batches, epoch, (epoch - first) * n, phase.epochs * n, n)
                if self.stopping:
                    return False
            first = last
        return True

    def _train_epoch(self, batches: Batches, epoch: int, phase_offset: int, phase_total: int, n: int) -> None:
        self.model.train()
        skip = self.state.step_in_epoch
        if skip == 0 and self.carry is not None:
            self.carry.reset()
        self._call("on_epoch_start", epoch, n, skip)
        t_last = time.perf_counter()
        for i, batch in enumerate(batches.epoch(epoch)):
            if i >= n:
                break
            if i < skip:
                continue
            result = self.train_step(batch, self.schedule(phase_offset + i, phase_total))
            if result.skipped:
                self.state.sums["skipped"] += 1
                self._advance()
                continue
            now = time.perf_counter()
            self._add(result, now - t_last)
            t_last = now
            self._advance()
            self._call("on_step_end", result)
            if self.stopping:
                break
        if self.stopping and self.state.step_in_epoch < n:
            return
        self._end_epoch(epoch)

    def _end_epoch(self, epoch: int) -> None:
        sums, lr = self.state.sums, self.opt.param_groups[-1]["lr"]
        self.state.epoch, self.state.step_in_epoch, self.state.sums = epoch + 1, 0, dict(EMPTY_SUMS)
        n_done = max(sums["n"], 1)
        # Each row's elapsed_s is when it was measured: the train row's when training stopped, the
        # valid row's after evaluating, so their difference is the evaluation's time.
        train_row = dict(epoch=epoch + 1, step=self.state.global_step, split="train",
                         loss=sums["loss"] / n_done, lr=lr,
                         throughput=sums["units"] / sums["seconds"] if sums["seconds"] > 0 else None,
                         grad_norm=sums["grad_norm"] / max(sums.get("n_norm", sums["n"]), 1),
                         skipped_batches=sums["skipped"], elapsed_s=round(self.elapsed(), 3))
        val_row = dict(epoch=epoch + 1, step=self.state.global_step, split="valid", lr=lr, **self.evaluate())
        val_row["elapsed_s"] = round(self.elapsed(), 3)
        self.state.history.extend([train_row, val_row])
        self._call("on_epoch_end", [train_row, val_row])

    # -- bookkeeping ---------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def _set_trainable(self, trainable: list[bool]) -> None:
        for group, on in zip(self.opt.param_groups, trainable):
            for p in group["params"]:
                p.requires_grad_(on)

    def _add(self, result: StepResult, seconds: float) -> None:
        sums = self.state.sums
        sums["loss"] += result.loss
        sums["n"] += 1
        if math.isfinite(result.grad_norm):
            sums["grad_norm"] += result.grad_norm
            sums["n_norm"] = sums.get("n_norm", 0) + 1
        sums["units"] += result.units
        sums["seconds"] += seconds

    def _advance(self) -> None:
        self.state.step_in_epoch += 1
        self.state.global_step += 1

    def _call(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)

    def _stateful(self) -> dict:
        """The callbacks that keep state, by class name (numbered from the second of a class on)."""
        named = {}
        for cb in (c for c in self.callbacks if hasattr(c, "state_dict")):
            name, k = type(cb).__name__, 1
            while (key := name if k == 1 else f"{name}#{k}") in named:
                k += 1
            named[key] = cb
        return named

    # -- resume ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly: weights, optimiser, loop position, RNGs."""
        carried = self.carry.get() if self.carry is not None else None
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "loop": {"epoch": self.state.epoch, "step_in_epoch": self.state.step_in_epoch,
                     "global_step": self.state.global_step, "history": self.state.history,
                     "sums": dict(self.state.sums), "stop_requested": self.state.stop_requested},
            "callbacks": {name: cb.state_dict() for name, cb in self._stateful().items()},
            "rng": rng_state(),
            "hidden": [[h.cpu(), c.cpu()] for h, c in carried] if carried is not None else None,
            "elapsed_s": self.elapsed(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        loop = state["loop"]
        self.state = LoopState(loop["epoch"], loop["step_in_epoch"], loop["global_step"], list(loop["history"]),
                               dict(loop["sums"]), bool(loop.get("stop_requested", False)))
        saved = state.get("callbacks") or {}
        for name, cb in self._stateful().items():
            if name in saved:
                cb.load_state_dict(saved[name])
        if state.get("hidden") is not None and self.carry is not None:
            self.carry.set([(h.to(self.device), c.to(self.device)) for h, c in state["hidden"]])
        set_rng_state(state["rng"])
        self.elapsed_before = state["elapsed_s"]
        self.t0 = time.perf_counter()
