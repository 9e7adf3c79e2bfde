"""Progress: a rich bar per epoch on a terminal, a few plain log lines otherwise."""
from __future__ import annotations

import logging
import sys

log = logging.getLogger("ulmfit")


class RichProgress:
    def __init__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
                          transient=False)

    def start(self, desc: str, total: int, done: int = 0):
        self.p.start()
        return self.p.add_task(desc, total=total, completed=done, loss=float("nan"))

    def advance(self, task, loss: float) -> None:
        self.p.update(task, advance=1, loss=loss)

    def stop(self, task) -> None:
        self.p.stop()


class LogProgress:
    """About ten lines an epoch, for logs and CI."""

    def __init__(self, every_frac: float = 0.1):
        self.every_frac = every_frac

    def start(self, desc: str, total: int, done: int = 0):
        return {"desc": desc, "total": total, "done": done, "every": max(int(total * self.every_frac), 1)}

    def advance(self, task, loss: float) -> None:
        task["done"] += 1
        if task["done"] % task["every"] == 0 or task["done"] == task["total"]:
            log.info("%s: %d/%d batches, loss %.4f", task["desc"], task["done"], task["total"], loss)

    def stop(self, task) -> None:
        pass


def make_progress(mode: str):
    if mode == "none":
        return None
    if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
        return RichProgress()
    return LogProgress()
