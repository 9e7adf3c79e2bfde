"""A signal stops a whole sweep, not only the job it lands in, whichever launcher runs the jobs.

The sweep's own process takes SIGINT/SIGTERM (`SweepStop.on_multirun_start`): the first one writes
`<sweep dir>/.stopped` and lets the running jobs save their progress (a terminal's Ctrl-C reaches
every process of the group, and each job's own handler, runtime.stop_on_signals, catches it); a
second one aborts at once. A job that begins after the marker exists ends at once, unstarted
(`check_not_stopped`). Under the basic launcher the jobs run in the sweep's process, so a job that
a signal stopped ends the sweep itself. Either way the sweep ends with exit 130 and the command
that continues it; `resume=<sweep dir>` removes the marker (commands/resume.py).
"""
from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from .command_line import job_sweep_dir
from .errors import NotStarted, Stopped, SweepStopped

log = logging.getLogger("ulmfit")

MARKER = ".stopped"


def check_not_stopped(sweep_dir: Path) -> None:
    if (Path(sweep_dir) / MARKER).exists():
        raise NotStarted()


def clear_stop(sweep_dir: Path) -> None:
    (Path(sweep_dir) / MARKER).unlink(missing_ok=True)


def stopped_message(job: int, job_dir: Path, sweep_dir: Path, started: bool, rest: str) -> str:
    where = (f"during job #{job} of the sweep; its progress is saved in {job_dir}/checkpoints/last, and {rest}"
             if started else f"before job #{job} of the sweep began")
    return (f"Stopped by a signal {where} ({sweep_dir / 'sweep.csv'} lists each job's status). Continue the sweep "
            f"with resume={sweep_dir}: finished jobs are kept, stopped ones continue where they stopped, and the "
            "rest run.")


class SweepStop(Callback):
    """`hydra.callbacks.sweep_stop` in conf/_common.yaml, listed before the sweep table: Hydra calls
    on_job_end in reverse order, and this one ends the sweep after the table has the job."""

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        self.sweep_pid = os.getpid()
        sweep_dir = Path(str(config.hydra.sweep.dir))
        asked = []

        def handler(signum, frame):
            if asked:
                raise KeyboardInterrupt
            asked.append(signum)
            sweep_dir.mkdir(parents=True, exist_ok=True)
            (sweep_dir / MARKER).touch()
            log.warning("signal %d: stopping the sweep; running jobs save their progress and no new job begins "
                        "(a second signal aborts at once)", signum)

        # for the rest of the process: the sweep is the last thing the command does
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handler)

    def on_job_end(self, config, job_return=None, **kwargs: Any) -> None:
        exc = getattr(job_return, "_return_value", None)
        if not isinstance(exc, Stopped):
            return
        job_dir = Path(str(config.hydra.runtime.output_dir))
        sweep_dir = job_sweep_dir(job_dir, config.hydra.sweep.subdir)
        started = not isinstance(exc, NotStarted)
        if getattr(self, "sweep_pid", None) == os.getpid():  # the jobs run one after another in this process
            (sweep_dir / MARKER).touch()
            raise SweepStopped(stopped_message(config.hydra.job.num, job_dir, sweep_dir, started, "no later job began"))
        # A process launcher's job: the sweep reads this when all its jobs have ended. Only a signal
        # to the sweep itself (the marker) stops the others; one to this job alone (a preempted
        # SLURM job, a `kill` of one worker) stops only this one.
        rest = "no job began after the signal" if (sweep_dir / MARKER).exists() else "the other jobs ran"
        job_return.return_value = SweepStopped(stopped_message(config.hydra.job.num, job_dir, sweep_dir, started, rest))
