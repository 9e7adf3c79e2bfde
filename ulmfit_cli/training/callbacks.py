"""Small objects the Trainer calls at fixed points. The built-in ones (metrics rows, progress,
checkpoints) are wired by every stage; `callbacks=[...]` (conf/callbacks/) adds more, each a Hydra
`_target_` node, run after the built-in rows and progress and before the checkpointer, so that an
epoch's checkpoint holds what they decided at its end.

Hooks, each optional (`trainer` is the Trainer, training/loop.py):

    on_epoch_start(trainer, epoch, n_batches, n_done)   n_done > 0 when resuming mid-epoch
    on_step_end(trainer, result)                         after every optimiser step (not skipped ones)
    on_epoch_end(trainer, rows)                          the epoch's train and valid rows (dicts: epoch,
                                                         step, split, loss, accuracy, ...)
    on_train_end(trainer)                                training ended as planned (every epoch, or a
                                                         callback's stop), not by a signal or an error;
                                                         the model then is what the stage saves and scores
    on_fit_end(trainer)                                  always, also when fit stops or fails
    check_metrics(names)                                 before training: the validation metrics the
                                                         stage's rows hold (val_loss, val_accuracy, ...)
    state_dict() -> dict, load_state_dict(state)         saved in every progress checkpoint, restored
                                                         by resume= (plain values and tensors only)

What a callback may ask of the Trainer:

    trainer.request_stop()                  end training after this epoch; the run still finishes
    trainer.weights()                       a CPU copy of the model's weights
    trainer.restore_weights(state, epoch)   put back the weights of an earlier epoch (on_train_end)
    trainer.report[name] = {...}            figures for this direction's results in summary.json
    trainer.state.epoch, trainer.total_epochs, trainer.state.history
"""
from __future__ import annotations

import logging
import math
from typing import Callable

from ..errors import UserError
from .metrics import higher_is_better

log = logging.getLogger("ulmfit")


class LogRows:
    """Hands every epoch's rows to `write` (metrics.csv, the log, trackers)."""

    def __init__(self, write: Callable[[dict], None]):
        self.write = write

    def on_epoch_end(self, trainer, rows: list[dict]) -> None:
        for row in rows:
            self.write(row)


class ProgressBar:
    """A progress display per epoch (reporting/progress.py): start, advance with the running loss, stop."""

    def __init__(self, progress):
        self.progress, self.task = progress, None

    def on_epoch_start(self, trainer, epoch: int, n_batches: int, n_done: int) -> None:
        self.task = self.progress.start(f"epoch {epoch + 1}", n_batches, n_done)

    def on_step_end(self, trainer, result) -> None:
        sums = trainer.state.sums
        self.progress.advance(self.task, sums["loss"] / max(sums["n"], 1))

    def on_epoch_end(self, trainer, rows) -> None:
        self.on_fit_end(trainer)

    def on_fit_end(self, trainer) -> None:
        if self.task is not None:
            self.progress.stop(self.task)
            self.task = None


class Checkpointer:
    """Saves progress every `every_steps` steps (0: never mid-epoch), at every epoch's end, and
    after the step at which the ranks agreed to stop, so that the run can be resumed there."""

    def __init__(self, save: Callable[[object], None], every_steps: int = 0):
        self.save, self.every = save, every_steps

    def on_step_end(self, trainer, result) -> None:
        if trainer.stopping or (self.every and trainer.state.global_step % self.every == 0):
            self.save(trainer)

    def on_epoch_end(self, trainer, rows) -> None:
        self.save(trainer)


class Monitor:
    """A validation metric to watch, `val_<column of the valid rows>`, and which way is better."""

    def __init__(self, monitor: str, mode: str):
        self.monitor, self.mode = str(monitor), self._resolve_mode(str(monitor), str(mode))
        self.best: float | None = None
        self.best_epoch: int | None = None

    def _resolve_mode(self, monitor: str, mode: str) -> str:
        name = type(self).__name__
        if mode not in ("min", "max", "auto"):
            raise UserError(f"{name}: mode={mode} is not one of min, max, auto.",
                            "Set mode=min (lower is better), mode=max, or mode=auto.")
        if mode != "auto":
            return mode
        better = higher_is_better(monitor)  # mode=auto: the direction its metric is declared with
        if better is not None:
            return "max" if better else "min"
        raise UserError(f"{name}: mode=auto cannot tell whether {monitor} is better higher or lower.",
                        "Set mode=min or mode=max.")

    def check_metrics(self, names: list[str]) -> None:
        if self.monitor not in names:
            raise UserError(f"{type(self).__name__}: monitor={self.monitor} is not a validation metric of this "
                            f"stage, whose are {', '.join(names)}.", f"Set monitor= to one of them.")

    def value(self, rows: list[dict]) -> float:
        row = next(r for r in rows if r.get("split") == "valid")
        v = row.get(self.monitor.removeprefix("val_"))
        return float(v) if v is not None else math.nan

    def improves(self, value: float, min_delta: float = 0.0) -> bool:
        """Better than the best so far by more than min_delta; a non-finite value never is."""
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best - min_delta if self.mode == "min" else value > self.best + min_delta

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class EarlyStopping(Monitor):
    """Stops training after the epoch at which `monitor` has not improved (by more than `min_delta`)
    for `patience` epochs in a row. The run still finishes: the stage saves and scores the model it
    has then (the last epoch's, or with keep_best the best one's)."""

    def __init__(self, monitor: str = "val_loss", patience: int = 3, min_delta: float = 0.0, mode: str = "auto"):
        super().__init__(monitor, mode)
        if int(patience) < 1 or float(min_delta) < 0:
            raise UserError(f"EarlyStopping: patience={patience}, min_delta={min_delta}; patience must be at "
                            "least 1 and min_delta at least 0.", "Set callbacks.early_stopping.patience=1 or more.")
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.wait = 0  # epochs since the last improvement
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, trainer, rows: list[dict]) -> None:
        value, epoch = self.value(rows), rows[-1]["epoch"]
        if self.improves(value, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
        else:
            self.wait += 1
        if self.wait >= self.patience and epoch < trainer.total_epochs:
            self.stopped_epoch = epoch
            trainer.request_stop()
            log.info("early stopping: %s has not improved for %d epoch(s) (best %.6g at epoch %s); "
                     "training ends after epoch %d", self.monitor, self.wait, math.nan if self.best is None else self.best,
                     self.best_epoch, epoch)

    def on_train_end(self, trainer) -> None:
        trainer.report["early_stopping"] = {
            "monitor": self.monitor, "stopped_early": self.stopped_epoch is not None,
            "stopped_epoch": self.stopped_epoch, "best_epoch": self.best_epoch, f"best_{self.monitor}": self.best}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "wait": self.wait, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]


class KeepBest(Monitor):
    """Keeps a CPU copy of the weights of the epoch with the best `monitor` (the first, on a tie)
    and puts them back when training ends, so the model the stage saves and scores on test is that
    epoch's; the copy travels in the progress checkpoints."""

    def __init__(self, monitor: str = "val_loss", mode: str = "auto"):
        super().__init__(monitor, mode)
        self.weights: dict | None = None

    def on_epoch_end(self, trainer, rows: list[dict]) -> None:
        value = self.value(rows)
        if self.improves(value):
            self.best, self.best_epoch, self.weights = value, rows[-1]["epoch"], trainer.weights()

    def on_train_end(self, trainer) -> None:
        if self.weights is not None and self.best_epoch != trainer.state.epoch:
            trainer.restore_weights(self.weights, self.best_epoch)
            log.info("keep_best: the weights of epoch %d (%s %.6g) are kept, not those of epoch %d",
                     self.best_epoch, self.monitor, self.best, trainer.state.epoch)
        trainer.report["keep_best"] = {"monitor": self.monitor, "epoch": self.best_epoch, self.monitor: self.best}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.weights = state["weights"]
