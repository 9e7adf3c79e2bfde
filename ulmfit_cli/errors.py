"""User-facing errors: one paragraph naming the thing and the fix, never a traceback.

Also the ways training ends early that the CLI reports in such a paragraph: a stop by signal
(`Stopped`: `Interrupted` for a run, `NotStarted` for a sweep's job; `SweepStopped`, a
BaseException, for a whole sweep; exit 130) and a
loss that stopped being a number (`NonFiniteLoss`).
"""
from __future__ import annotations

import errno
import traceback
from pathlib import Path

from rich.console import Console
from rich.markup import escape


class UserError(Exception):
    """Bad input from the user (a path, a key, a file). The CLI prints it and exits 2."""

    exit_code = 2

    def __init__(self, what: str, fix: str | None = None):
        self.what = what
        self.fix = fix
        super().__init__(f"{what} {fix}" if fix else what)


STOPPED_BY_SIGNAL = "Stopped by a signal"  # how Interrupted's message starts; the report reads train.log for it
NOT_STARTED = "Not started"  # and NotStarted's


class Stopped(UserError):
    """A run that a signal ended early, with nothing lost: resume= continues it. Exit 130."""

    exit_code = 130


class Interrupted(Stopped):
    """SIGINT/SIGTERM (SIGUSR2 under DDP) stopped training after a batch; progress was saved."""

    def __init__(self, run_dir):
        super().__init__(f"{STOPPED_BY_SIGNAL}; progress saved in {run_dir}/checkpoints/last.",
                         f"Continue exactly where it stopped with resume={run_dir}.")


class StoppedPreparing(Stopped):
    """SIGINT/SIGTERM while the run was still reading and tokenizing its data: it stops at once."""

    def __init__(self):
        super().__init__(f"{STOPPED_BY_SIGNAL} before training began (while the data was being prepared); "
                         "nothing was trained or saved since the command started.", "Run the same command again.")


class NotStarted(Stopped):
    """A job of a sweep that a signal stopped before the job began: nothing of it ran."""

    def __init__(self):
        super().__init__(f"{NOT_STARTED}: the sweep was stopped by a signal before this job began.")


class SweepStopped(BaseException):
    """A signal stopped a sweep. A BaseException, so that it passes Hydra's own error report (which
    exits 1) to the command, which prints it and exits 130."""

    exit_code = 130


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, value: float):
        self.step, self.value = step, value
        super().__init__(f"loss became {value} at step {step}")


def print_error(err: UserError, verbose: bool = False) -> None:
    """The one-paragraph message on stderr; with verbose=true the traceback too."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(err))}", markup=True)
    if verbose:
        traceback.print_exception(err)


def disk_error(e: OSError, what: str, *, full_fix: str, access_fix: str, full_note: str = "") -> "UserError | OSError":
    """A full disk (ENOSPC, EDQUOT) or an unwritable path (EACCES, EROFS, EPERM) as a UserError naming
    the file (`e.filename`, else `what`); any other OSError is returned unchanged."""
    where = e.filename or what
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"No space left on the device while writing {where}{full_note}.", full_fix)
    if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return UserError(f"Cannot write {where}: {e.strerror}.", access_fix)
    return e


# A GPU allocation that does not fit is torch.OutOfMemoryError when the caching allocator makes it;
# one made by CUDA, cuBLAS or cuDNN themselves (a handle, a workspace, a context) is a plain
# RuntimeError naming the status.
GPU_OOM_TEXTS = ("CUDA out of memory", "CUDA error: out of memory", "CUBLAS_STATUS_ALLOC_FAILED",
                 "CUDNN_STATUS_ALLOC_FAILED")


def _is_gpu_oom(e: Exception) -> bool:
    import torch  # only once an error is being explained: `ulmfit --help` does not load torch

    return isinstance(e, torch.cuda.OutOfMemoryError) or any(t in str(e) for t in GPU_OOM_TEXTS)


def _non_finite_loss_error(e: NonFiniteLoss, run_dir: Path | None) -> UserError:
    kept = sorted((run_dir / "checkpoints" / "last").glob("*.pt"), key=lambda p: p.stat().st_mtime) if run_dir else []
    saved = (f"the last good checkpoint, {kept[-1]}, was kept" if kept else
             "no checkpoint had been saved yet (checkpoint.every_steps=N saves one every N steps)") if run_dir \
        else "the last good checkpoint (checkpoints/last/) was kept"
    return UserError(f"Training stopped: the {e}; {saved}.",
                     "Lower schedule.lr, set train.clip=<e.g. 0.25>, or pass train.on_nan=skip to skip "
                     "such batches (counted in metrics.csv's skipped_batches).")


def as_user_error(e: Exception, run_dir: Path | None = None) -> Exception:
    """Disk full / read-only / permission problems, a diverged loss and GPU out-of-memory are the
    user's to fix, not a traceback; anything else is returned unchanged. `run_dir`: the training
    run's directory, named in the message (its newest checkpoint, how to resume)."""
    if isinstance(e, NonFiniteLoss):
        return _non_finite_loss_error(e, run_dir)
    if isinstance(e, RuntimeError) and _is_gpu_oom(e):
        return UserError(f"The GPU ran out of memory ({str(e).splitlines()[0][:160]}).",
                         "Lower train.bs, train.max_len or train.eval_bs (predict/evaluate: bs=), or use "
                         "precision=bf16 / a larger GPU.")
    if isinstance(e, RuntimeError) and "without overflow" in str(e):  # an optimizer step of absurd size
        return UserError(f"Training stopped: a number overflowed float32 ({str(e).splitlines()[0][:120]}); "
                         "the learning rate is far too large for this model.",
                         "Lower schedule.lr (ULMFiT's are about 1e-3 to 1e-2).")
    if not isinstance(e, OSError):
        return e
    resume = f"resume={run_dir}" if run_dir else "resume=<run dir>"
    return disk_error(e, "the outputs", full_note="; the last complete checkpoint was kept (checkpoints are "
                      "written to a temp file and renamed)",
                      full_fix=f"Free some space or set outputs_root= to another disk, then {resume}.",
                      access_fix="Make the outputs directory writable or point outputs_root= at a writable directory.")


def reraise_for_user(e: Exception, run_dir: Path | None = None):
    """Inside `except`: raise `as_user_error(e)` from e, or re-raise e itself when it is not the user's to fix."""
    err = as_user_error(e, run_dir)
    if err is e:
        raise e
    raise err from e
