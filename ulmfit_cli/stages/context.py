"""The run context: everything a stage's recipe needs about where and how it runs.

Made once per stage run by the CLI (`RunContext.open`) and passed down: the config, the device
and precision, this process's place among data-parallel ranks, the run directory and its
outputs (metrics.csv, checkpoints, summary.json), the progress display and the stop flag that
signals set. Under data-parallel training every rank has a context on rank 0's directory (to
read checkpoints from), but only rank 0 writes: metrics, checkpoints and summary.json are
skipped elsewhere. Rank 0's metrics also go to the trackers `logger=` selects (reporting/trackers/),
opened with the context and closed when it is left (`with RunContext.open(...) as ctx:`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ..checkpoints import load_checkpoint, save_checkpoint
from ..distributed import Ranks
from ..errors import UserError
from ..reporting.run_files import MetricsWriter, write_summary
from ..reporting.progress import make_progress
from ..reporting.trackers import TrackedMetrics, open_trackers
from ..runtime import (StopFlag, check_lstm_kernel, check_precision, describe_device, resolve_device, rng_state,
                       set_rng_state)

log = logging.getLogger("ulmfit")


def has_outputs(path: Path) -> bool:
    return (path / "summary.json").exists() or (path / "checkpoints").exists() or (path / "metrics.csv").exists()


@dataclass
class RunContext:
    cfg: DictConfig
    dir: Path
    device: torch.device
    precision: str
    ranks: Ranks
    metrics: TrackedMetrics | None  # rank 0's; other ranks write nothing
    progress: object | None
    stop: StopFlag = field(default_factory=StopFlag)
    t0: float = field(default_factory=time.time)
    wall_before: float = 0.0  # a resumed run's wall time in the processes before this one

    def wall_time(self) -> float:
        return self.wall_before + time.time() - self.t0

    def _carry_wall_time(self, saved: dict) -> None:
        """A resumed run's summary counts the time of the processes it continues, as saved with
        the checkpoint it continues from."""
        self.wall_before = max(self.wall_before, float(saved.get("wall_time_s") or 0.0))

    @classmethod
    def open(cls, cfg: DictConfig, run_dir: Path, ranks: Ranks) -> "RunContext":
        """Check the device, precision and kernel, refuse a directory holding an earlier run's
        outputs, and (rank 0) open the trackers, write config.yaml and start metrics.csv. A tracker
        that cannot start is a UserError raised before anything of the run is written."""
        run_dir = ranks.run_dir or Path(run_dir)
        writes = ranks.is_rank0
        if writes and has_outputs(run_dir) and not cfg.resume:
            raise UserError(
                f"Run directory {run_dir} already holds the outputs of an earlier run; ulmfit never overwrites them.",
                "Leave hydra.run.dir unset (every run gets a new directory), choose a new directory, "
                f"or continue that run with resume={run_dir}.",
            )
        device = ranks.device if ranks.enabled else resolve_device(cfg.device)
        precision = check_precision(cfg.precision, device)
        check_lstm_kernel(cfg.model.lstm_kernel)
        metrics = None
        if writes:
            trackers = open_trackers(cfg, run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            metrics = TrackedMetrics(MetricsWriter(run_dir / "metrics.csv", stage=cfg.stage), trackers)
        ctx = cls(cfg, run_dir, device, precision, ranks, metrics, make_progress(cfg.progress if writes else "none"))
        log.info("%s run in %s on %s%s", cfg.stage, run_dir, describe_device(device),
                 f" x {ranks.world_size} processes (DDP)" if ranks.enabled else "")
        return ctx

    def __enter__(self) -> "RunContext":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Close the trackers' runs: finished, killed (a signal) or failed, as the run ended."""
        if self.metrics is not None:
            self.metrics.close(exc)

    @property
    def writes(self) -> bool:
        return self.ranks.is_rank0

    @property
    def ckpt_dir(self) -> Path:
        return self.dir / "checkpoints"

    def log_row(self, direction: str):
        def write(row: dict) -> None:
            if not self.writes:
                return
            self.metrics({"direction": direction, **row})
            parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                     if k in ("epoch", "split", "loss", "accuracy", "perplexity", "throughput") and v is not None]
            log.info("%s %s", direction, " ".join(parts))

        return write

    # -- final checkpoints and the summary -----------------------------------------------------
    def save(self, name: str, payload: dict) -> Path:
        """checkpoints/<name>.pt, with the RNG state after it so that a resumed run which skips
        this finished direction continues the random sequence as an uninterrupted run does."""
        path = self.ckpt_dir / f"{name}.pt"
        if self.writes:
            save_checkpoint(path, {"stage": self.cfg.stage, **payload, "rng_after": rng_state(),
                                   "wall_time_s": self.wall_time(),
                                   "config": OmegaConf.to_container(self.cfg, resolve=True)})
        return path

    def finished(self, direction: str) -> dict | None:
        """When resuming, a direction whose final checkpoint exists is done: return that checkpoint,
        with the RNG state restored to where the direction ended."""
        path = self.ckpt_dir / f"{direction}.pt"
        if not (self.cfg.resume and path.exists()):
            return None
        ckpt = load_checkpoint(path)
        self._carry_wall_time(ckpt)
        if ckpt.get("rng_after") is not None:
            set_rng_state(ckpt["rng_after"])
        log.info("resuming: %s already finished (%s)", direction, path.name)
        return ckpt

    def finish(self, results: dict, started_from: Path | None = None, artifacts: tuple[Path, ...] = (),
               **extra) -> dict:
        """Write summary.json (rank 0), the mark of a finished run, and hand it with `artifacts` (files
        of the run dir) to the trackers; return it."""
        fields = dict(stage=self.cfg.stage, results=results, started_from=str(started_from) if started_from else None,
                      wall_time_s=self.wall_time(), device=describe_device(self.device), precision=self.precision,
                      **({"processes": self.ranks.world_size} if self.ranks.enabled else {}), **extra)
        if not self.writes:
            return {"run_dir": str(self.dir), **fields}
        summary = write_summary(self.dir, **fields)
        self.metrics.finish(summary, [self.dir / "summary.json", *artifacts])
        return summary

    # -- resumable training state ------------------------------------------------------------
    def save_progress(self, direction: str, trainer_state: dict) -> None:
        """checkpoints/last/<direction>-<step>.pt, keeping the newest `checkpoint.keep`."""
        if not self.writes:
            return
        step = trainer_state["loop"]["global_step"]
        folder = self.ckpt_dir / "last"
        save_checkpoint(folder / f"{direction}-{step:09d}.pt",
                        {"kind": "progress", "stage": self.cfg.stage, "direction": direction,
                         "trainer": trainer_state, "metrics_rows": self.metrics.rows(),
                         "wall_time_s": self.wall_time()})
        for old in sorted(folder.glob(f"{direction}-*.pt"))[: -max(self.cfg.checkpoint.keep, 1)]:
            old.unlink()

    def load_progress(self, direction: str) -> dict | None:
        """The newest progress checkpoint of `direction` when resuming, else None."""
        if not self.cfg.resume:
            return None
        found = sorted((self.ckpt_dir / "last").glob(f"{direction}-*.pt"))
        if not found:
            log.info("resuming: %s had saved no progress yet; it trains from the first step", direction)
            if self.writes:
                self.metrics.drop_direction(direction)
            return None
        state = load_checkpoint(found[-1])
        self._carry_wall_time(state)
        if self.writes:
            self.metrics.truncate(state["metrics_rows"])
        log.info("resuming %s from %s (epoch %d, step %d)", direction, found[-1].name,
                 state["trainer"]["loop"]["epoch"], state["trainer"]["loop"]["global_step"])
        return state["trainer"]
