"""Checkpoint files: plain data only, written atomically, loaded without executing code."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from .errors import UserError
from .fileutil import atomic_write_bytes

FORMAT = "ulmfit-checkpoint"
VERSION = 1


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
