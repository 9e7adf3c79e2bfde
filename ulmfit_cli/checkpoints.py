"""Checkpoint files: plain data only, written atomically, loaded without executing code."""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import torch

from .errors import UserError

FORMAT = "ulmfit-checkpoint"
VERSION = 1


class _KeepsWriteErrors:
    """A file whose failed write() is remembered: torch.save's zip writer swallows the OSError
    (ENOSPC, EDQUOT, EIO) and fails later with an unrelated RuntimeError ("unexpected pos ...")."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, data):
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


def atomic_write_bytes(path: Path, write) -> None:
    """Write through a temp file in the same directory, fsync, then rename over `path`.

    A crash leaves either the old file or the new one, never half of either. A failed write
    (a full disk) removes the temp file and raises the OSError, with `path` as its filename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            kept = _KeepsWriteErrors(f)
            try:
                write(kept)
            except Exception as e:
                if kept.error is None or e is kept.error:
                    raise
                raise kept.error from None
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def save_checkpoint(path: Path, payload: dict) -> None:
    payload = {"format": FORMAT, "version": VERSION, **payload}
    atomic_write_bytes(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path) -> dict:
    """torch.load(weights_only=True): a file crafted to run code is refused, never executed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Checkpoint {path} does not exist.", "Check the run directory you passed.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UserError(
            f"Checkpoint {path} holds objects other than tensors and plain data, so it was refused "
            f"unopened (safe loading: {str(e).splitlines()[0][:200]}).",
            "Only load checkpoints written by ulmfit; re-create it with the stage that produced it.",
        ) from None
    except Exception as e:  # truncated zip, not a torch file, ...
        raise UserError(
            f"Checkpoint {path} could not be read ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            "it is truncated or not a checkpoint.",
            "Re-run the stage that wrote it, or point at another run directory.",
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(
            f"{path} is a torch file but not an ulmfit checkpoint.",
            "Use a checkpoint written by `ulmfit pretrain/finetune-lm/train-clf` (or `ulmfit import-fastai`).",
        )
    if ckpt.get("version", 0) > VERSION:
        raise UserError(
            f"Checkpoint {path} has format version {ckpt['version']}, newer than this ulmfit understands ({VERSION}).",
            "Upgrade ulmfit.",
        )
    return ckpt
