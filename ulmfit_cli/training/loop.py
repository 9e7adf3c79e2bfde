"""A plain supervised training loop: phases of epochs, per-group LRs on a schedule, eval each epoch.

It knows nothing of language models or ULMFiT: the stage passes a `step_fn` that turns a batch
into a loss, an `eval_fn`, the batches, and the phases (which groups train, for how long).

Data-parallel training passes a `collective` (ulmfit_cli/distributed.py's Context): once per step
the ranks then sum the logged loss and unit counts (every row of metrics.csv describes the global
batch) and agree on a non-finite loss and on a stop request, so that all ranks skip, stop or go
on together. Gradient averaging is the step_fn's model's business (DistributedDataParallel).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Protocol

import torch

from .param_groups import Phase
from .schedules import Schedule


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, value: float):
        self.step, self.value = step, value
        super().__init__(f"loss became {value} at step {step}")


@dataclass
class StepOut:
    loss: torch.Tensor  # what is back-propagated
    n_units: int  # tokens (LM) or examples (classifier), for throughput
    report_loss: float | None = None  # loss to log, if different from `loss` (e.g. without AR/TAR)


class Collective(Protocol):
    """What the loop needs of a process group: sums over ranks (identity on one process)."""

    world_size: int

    def sum(self, values: list[float]) -> list[float]: ...


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


EMPTY_SUMS = {"loss": 0.0, "n": 0, "grad_norm": 0.0, "units": 0, "skipped": 0, "seconds": 0.0}


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
        step_fn: Callable[[torch.nn.Module, object], StepOut],
        eval_fn: Callable[[torch.nn.Module], dict],
        *,
        device: torch.device,
        precision: str = "fp32",
        clip: float | None = None,
        on_nan: str = "stop",
        log_row: Callable[[dict], None] = lambda row: None,
        on_step: Callable[["Trainer"], None] | None = None,
        on_epoch_end: Callable[["Trainer", dict], None] | None = None,
        progress=None,
        max_steps_per_epoch: int | None = None,
        collective: Collective | None = None,
    ):
        self.model, self.opt, self.base_lrs, self.schedule = model, optimizer, base_lrs, schedule
        self.step_fn, self.eval_fn = step_fn, eval_fn
        self.device, self.precision, self.clip, self.on_nan = device, precision, clip, on_nan
        self.log_row, self.on_step, self.on_epoch_end = log_row, on_step, on_epoch_end
        self.progress = progress
        self.max_steps = max_steps_per_epoch
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.state = LoopState()
        self.collective = collective if collective is not None and collective.world_size > 1 else None
        self.stop_requested = False  # set by a signal handler, at any time
        self.stopping = False  # the stop every rank agreed on, checked between steps
        self.t0 = time.perf_counter()
        self.elapsed_before = 0.0  # wall time of earlier (resumed-from) processes

    # -- bookkeeping ---------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def _set_trainable(self, trainable: list[bool]) -> None:
        for group, on in zip(self.opt.param_groups, trainable):
            for p in group["params"]:
                p.requires_grad_(on)

    def _steps_in_epoch(self, batches: Batches) -> int:
        return min(len(batches), self.max_steps) if self.max_steps else len(batches)

    # -- the loop ------------------------------------------------------------------------
    def fit(self, batches: Batches, phases: list[Phase]) -> list[dict]:
        """Train through every phase; the LR schedule restarts with each phase (as the reference)."""
        n = self._steps_in_epoch(batches)
        epoch_starts = [0]
        for ph in phases:
            epoch_starts.append(epoch_starts[-1] + ph.epochs)
        for ph_idx, phase in enumerate(phases):
            first, last = epoch_starts[ph_idx], epoch_starts[ph_idx + 1]
            if self.state.epoch >= last:
                continue
            self._set_trainable(phase.trainable)
            total = phase.epochs * n
            for epoch in range(max(first, self.state.epoch), last):
                self._train_epoch(batches, epoch, (epoch - first) * n, total, n)
                if self.stopping:
                    return self.state.history
        return self.state.history

    def _train_epoch(self, batches: Batches, epoch: int, phase_offset: int, phase_total: int, n: int):
        model = self.model
        model.train()
        skip = self.state.step_in_epoch
        if skip == 0 and hasattr(model, "reset"):
            model.reset()
        sums = self.state.sums
        t_last = time.perf_counter()
        task = self.progress.start(f"epoch {epoch + 1}", n, skip) if self.progress else None
        it: Iterator = iter(batches.epoch(epoch))
        for i, batch in enumerate(it):
            if i >= n:
                break
            if i < skip:
                continue
            factor = self.schedule(phase_offset + i, phase_total) * getattr(batch, "lr_scale", 1.0)
            for g, base in zip(self.opt.param_groups, self.base_lrs):
                g["lr"] = base * factor
            with autocast_for(self.device, self.precision):
                out = self.step_fn(model, batch)
            loss = out.loss
            finite = bool(torch.isfinite(loss.detach()))
            report = out.report_loss if out.report_loss is not None else float(loss.detach())
            units, stop_now = out.n_units, None
            if self.collective is not None:  # one small all-reduce: mean loss, total units, any NaN, any stop
                total, units, bad, stop = self.collective.sum(
                    [report if finite else 0.0, float(units), float(not finite), float(self.stop_requested)])
                report, units, finite, stop_now = total / self.collective.world_size, int(units), bad == 0, stop > 0
            if not finite:
                if self.on_nan == "skip":
                    self.opt.zero_grad(set_to_none=True)
                    sums["skipped"] += 1
                    self._advance()
                    continue
                raise NonFiniteLoss(self.state.global_step, float(loss.detach()))
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
            params = [p for g in self.opt.param_groups for p in g["params"] if p.grad is not None]
            gnorm = torch.nn.utils.clip_grad_norm_(params, self.clip if self.clip else math.inf)
            self.scaler.step(self.opt)
            self.scaler.update()
            self.opt.zero_grad(set_to_none=True)
            sums["loss"] += report
            sums["n"] += 1
            sums["grad_norm"] += float(gnorm)
            sums["units"] += units
            now = time.perf_counter()
            sums["seconds"] += now - t_last
            t_last = now
            self._advance()
            if task is not None:
                self.progress.advance(task, sums["loss"] / sums["n"])
            self.stopping = self.stop_requested if stop_now is None else stop_now
            if self.on_step:
                self.on_step(self)
            if self.collective is None:  # one process: a stop asked for by on_step itself counts now
                self.stopping = self.stop_requested
            if self.stopping:
                break
        if task is not None:
            self.progress.stop(task)
        if self.stopping and self.state.step_in_epoch < n:
            return
        lr = self.opt.param_groups[-1]["lr"]
        self.state.epoch = epoch + 1
        self.state.step_in_epoch = 0
        self.state.sums = dict(EMPTY_SUMS)
        n_done = max(sums["n"], 1)
        train_row = dict(epoch=epoch + 1, step=self.state.global_step, split="train",
                         loss=sums["loss"] / n_done, lr=lr,
                         throughput=sums["units"] / sums["seconds"] if sums["seconds"] > 0 else None,
                         grad_norm=sums["grad_norm"] / n_done, skipped_batches=sums["skipped"])
        model.eval()
        with torch.no_grad(), autocast_for(self.device, self.precision):
            val = self.eval_fn(model)
        val_row = dict(epoch=epoch + 1, step=self.state.global_step, split="valid", lr=lr, **val)
        for row in (train_row, val_row):
            row["elapsed_s"] = round(self.elapsed(), 3)
            self.state.history.append(row)
            self.log_row(row)
        if self.on_epoch_end:
            self.on_epoch_end(self, val_row)

    # -- resume ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly: weights, optimiser, loop position, RNGs."""
        from ..runtime import rng_state

        extra = getattr(self.model, "hidden", None)
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "loop": {"epoch": self.state.epoch, "step_in_epoch": self.state.step_in_epoch,
                     "global_step": self.state.global_step, "history": self.state.history,
                     "sums": dict(self.state.sums)},
            "rng": rng_state(),
            "hidden": [[h.cpu(), c.cpu()] for h, c in extra] if extra is not None else None,
            "elapsed_s": self.elapsed(),
        }

    def load_state_dict(self, state: dict) -> None:
        from ..runtime import set_rng_state

        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        loop = state["loop"]
        self.state = LoopState(loop["epoch"], loop["step_in_epoch"], loop["global_step"], list(loop["history"]),
                               dict(loop["sums"]))
        if state.get("hidden") is not None and hasattr(self.model, "hidden"):
            self.model.hidden = [(h.to(self.device), c.to(self.device)) for h, c in state["hidden"]]
        set_rng_state(state["rng"])
        self.elapsed_before = state["elapsed_s"]
        self.t0 = time.perf_counter()

    def _advance(self) -> None:
        self.state.step_in_epoch += 1
        self.state.global_step += 1
