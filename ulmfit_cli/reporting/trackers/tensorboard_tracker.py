"""logger=tensorboard: event files through torch's SummaryWriter (needs the `tensorboard` package).

Each run writes its own log directory, `<run dir>/tensorboard` by default, so `tensorboard --logdir
outputs` (or a sweep dir) shows every run, and the HParams tab compares a sweep's jobs: the config
is written as the run's hparams with the final figures as its metrics.
"""
from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

from ...config import TensorBoardConfig
from ...errors import UserError
from .common import TRACKERS, RunInfo, final_metrics, flat_params, import_tracker, row_metrics


def log_dir(tb_cfg, cfg, info: RunInfo) -> Path:
    """<run dir>/tensorboard, or <save_dir>/<run dir's path under outputs_root> (its name elsewhere), so
    that one --logdir shows the runs of every stage and sweep without two sharing a directory."""
    if not tb_cfg.save_dir:
        return info.run_dir / "tensorboard"
    root = Path(cfg.outputs_root).resolve()
    rel = info.run_dir.relative_to(root) if info.run_dir.is_relative_to(root) else Path(info.run_dir.name)
    return Path(tb_cfg.save_dir).expanduser().resolve() / rel


def check(tb_cfg) -> None:
    import_tracker("tensorboard", "torch.utils.tensorboard", "tensorboard")


@TRACKERS.register("tensorboard", reads=tuple(f.name for f in fields(TensorBoardConfig)), check=check)
def open_run(tb_cfg, cfg, info: RunInfo, ids: dict | None) -> "TensorBoardRun":
    """TensorBoard event files in <run dir>/tensorboard, or under logger.tensorboard.save_dir."""
    tb = import_tracker("tensorboard", "torch.utils.tensorboard", "tensorboard")
    path = log_dir(tb_cfg, cfg, info)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is not writable")
        writer = tb.SummaryWriter(str(path))
    except OSError as e:
        raise UserError(f"logger=tensorboard cannot write its event files in {path} ({e}).",
                        "Point logger.tensorboard.save_dir= at a writable directory.") from e
    view = info.sweep_dir or (Path(tb_cfg.save_dir).expanduser().resolve() if tb_cfg.save_dir
                              else Path(cfg.outputs_root).resolve())
    return TensorBoardRun(writer, path, flat_params(cfg), view)


class TensorBoardRun:
    name = "tensorboard"
    label = "TensorBoard"

    def __init__(self, writer, path: Path, params: dict, view: Path):
        self.writer, self.path, self.params, self.view, self.last_step = writer, path, params, view, 0

    def ids(self) -> dict:
        return {"log_dir": str(self.path)}

    def where(self) -> str:
        return f"event files in {self.path}; `tensorboard --logdir {self.view}` shows them beside the other runs"

    def log_row(self, row: dict) -> None:
        step, metrics = row_metrics(row)
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)
        self.last_step = max(self.last_step, step)
        self.writer.flush()

    def finish(self, summary: dict, files: list[Path]) -> None:
        """Final figures as `final/<name>` scalars, and the hparams record the HParams tab compares."""
        from torch.utils.tensorboard.summary import hparams

        final = {f"final/{k}": v for k, v in final_metrics(summary).items()}
        for k, v in final.items():
            self.writer.add_scalar(k, v, self.last_step)
        for s in hparams(self.params, final):  # experiment, session start, session end
            self.writer.file_writer.add_summary(s)
        self.writer.flush()

    def close(self, status: str) -> None:
        self.writer.close()
