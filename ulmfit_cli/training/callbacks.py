"""Small objects the Trainer calls at fixed points; each hook is optional.

    on_epoch_start(trainer, epoch, n_batches, n_done)   n_done > 0 when resuming mid-epoch
    on_step_end(trainer, result)                         after every optimiser step (not skipped ones)
    on_epoch_end(trainer, rows)                          the epoch's train and valid rows
    on_fit_end(trainer)                                  always, also when fit stops or fails
"""
from __future__ import annotations

from typing import Callable


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
