"""What every tracker shares: the run's names and tags, the config as flat params, metrics rows and
summary.json as tracker metrics, and the import that names the extra to install."""
from __future__ import annotations

import importlib
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ...errors import Stopped, UserError
from ...registry import Registry
from ...training.metrics import METRICS
from ..sweep import flatten, flatten_results, read_overrides, split_override, sweep_dir_of

# Each tracker module registers its open_run (with its `check` and the keys of its logger.<name> node);
# the package imports them in this order, the order trackers open in.
TRACKERS = Registry("logger")
EXTRA = "pip install -e '.[tracking]'"
RUN_IDS = "trackers.json"  # in a run dir: each tracker's run id; in a sweep dir: the MLflow parent run


@dataclass
class RunInfo:
    """What names a tracker run: stage, dataset, directions, and where it sits in a sweep."""

    stage: str
    dataset: str
    directions: str  # "fwd", "bwd" or "fwd+bwd"
    run_dir: Path
    sweep_dir: Path | None = None
    job: str | None = None  # the job's subdir within the sweep (its number)
    overrides: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, cfg: DictConfig, run_dir: Path) -> "RunInfo":
        run_dir = Path(run_dir).resolve()
        sweep = sweep_dir_of(run_dir)
        return cls(stage=cfg.stage, dataset=str(cfg.dataset.name), directions="+".join(cfg.bidirectional.directions),
                   run_dir=run_dir, sweep_dir=sweep, job=str(run_dir.relative_to(sweep)) if sweep else None,
                   overrides=["=".join(split_override(o)) for o in read_overrides(run_dir)])

    @property
    def name(self) -> str:
        return f"{self.stage} {self.dataset} {self.directions}" + (f" #{self.job}" if self.job else "")

    @property
    def sweep_name(self) -> str | None:
        return f"{self.stage}-{self.sweep_dir.name}" if self.sweep_dir else None

    def tags(self) -> dict[str, str]:
        tags = {"stage": self.stage, "dataset": self.dataset, "direction": self.directions,
                "run_dir": str(self.run_dir), "overrides": " ".join(self.overrides)}
        if self.sweep_dir:
            tags.update(sweep=str(self.sweep_dir), job=str(self.job))
        return tags


def selected(logger_cfg: DictConfig | None) -> list[str]:
    """The trackers `logger=` selected (nodes that are not null), in a fixed order."""
    if logger_cfg is None:
        return []
    return [t for t in TRACKERS.names() if logger_cfg.get(t) is not None]


def import_tracker(tracker: str, module: str, package: str | None = None):
    """The tracker's library, or a UserError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = package or module.split(".")[0]
        raise UserError(f"logger={tracker} needs the `{package}` package, which could not be imported ({e}).",
                        f"Install the trackers with `{EXTRA}` (or `pip install {package}`), or leave {tracker} "
                        "out of logger=.") from e


def flat_params(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as dotted keys (`schedule.lr`: 0.01), lists as text; logger settings left out."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("logger", None)
    return {k: "null" if v is None else str(v) if isinstance(v, (list, tuple)) else v
            for k, v in flatten(container).items()}


def row_metrics(row: dict) -> tuple[int, dict[str, float]]:
    """A metrics.csv row as (global step, {'fwd/valid/accuracy': .91, 'fwd/epoch': 1, ...}): its figures,
    not the keys that name the row (training/metrics.py declares which are which)."""
    d, split = row.get("direction") or "fwd", row.get("split") or "train"
    out = {f"{d}/{split}/{k}": float(v) for k, v in row.items()
           if (k not in METRICS or METRICS[k].kind != "key") and _number(v)}
    if _number(row.get("epoch")):
        out[f"{d}/epoch"] = float(row["epoch"])
    return int(row.get("step") or 0), out


def final_metrics(summary: dict) -> dict[str, float]:
    """summary.json's figures under sweep.csv's names: results and baselines flattened
    (`fwd.val_accuracy`, `tfidf_lr.test_accuracy`), and the top-level numbers (`majority_test_accuracy`,
    `wall_time_s`)."""
    top = {k: v for k, v in summary.items() if _number(v)}
    return {**flatten_results(top), **flatten_results(summary.get("results") or {}),
            **flatten_results(summary.get("baselines") or {})}


def _number(v) -> bool:
    """A real number, numpy's included (numpy registers its scalars as numbers.Real); not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def status_of(exc: BaseException | None) -> str:
    """How a run ended, in MLflow's words (the others map from it)."""
    if exc is None:
        return "FINISHED"
    return "KILLED" if isinstance(exc, (Stopped, KeyboardInterrupt)) else "FAILED"


def env_or(value: str | None, *names: str) -> str | None:
    """A config key when set, else the first of the tracker's own environment variables that is set."""
    if value not in (None, ""):
        return str(value)
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def brief(e: BaseException) -> str:
    """An exception as one short clause for a one-paragraph error: its type and first line."""
    line = (str(e).strip().splitlines() or [""])[0][:300].rstrip(". ")
    return f"{type(e).__name__}: {line}" if line else type(e).__name__
