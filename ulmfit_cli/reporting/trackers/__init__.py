"""Experiment trackers beside metrics.csv: `logger=[tensorboard,mlflow,wandb]` (conf/logger/).

metrics.csv stays the record: every row is written there first and then handed to each tracker.
A tracker is opened before the run writes anything, so a missing package, an unreachable server
or a bad setting is a one-paragraph `UserError` before any training; once the run is going, a
tracker that fails is warned about once and dropped, and training (and metrics.csv) go on.

What each tracker gets, from `TrackedMetrics` (made by the run context, rank 0 only):
- every metrics row, as `<direction>/<split>/<column>` at the row's global step (and the epoch);
- the resolved config as params (MLflow), hparams (TensorBoard) or config (W&B);
- summary.json's final figures under sweep.csv's column names (`fwd.val_accuracy`, ...);
- files (summary.json, a classifier's predictions_test.csv) as artifacts where the tracker keeps files.
Run names and tags give stage, dataset and directions; `<run dir>/trackers.json` records each
tracker's run id, so that `resume=` continues the same tracker run.

Tracker libraries are imported only when selected: `ulmfit --help` and runs without trackers never
load them. The sweep side (one MLflow parent run per `-m` sweep) is `SweepTrackers`, a Hydra
callback registered in conf/_common.yaml.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from omegaconf import DictConfig

from ...errors import UserError
from ...fileutil import read_json, write_json
# each tracker module registers itself on import; this order is the order they open in
from . import tensorboard_tracker, mlflow_tracker, wandb_tracker  # noqa: F401
from .common import RUN_IDS, TRACKERS, RunInfo, brief, selected, status_of

log = logging.getLogger("ulmfit")


class TrackedMetrics:
    """metrics.csv first, then every tracker. Stands where the run context's metrics writer stands
    (`rows`, `truncate`, `drop_direction` are metrics.csv's). A tracker that fails is warned about once and dropped:
    a tracker must never cost a run or its metrics.csv."""

    def __init__(self, csv, trackers: list):
        self.csv, self.trackers = csv, list(trackers)

    def __call__(self, row: dict) -> None:
        self.csv(row)
        self._each("log a metrics row", lambda t: t.log_row({**self.csv.fixed, **row}))

    def rows(self) -> int:
        return self.csv.rows()

    def truncate(self, n_rows: int) -> None:
        self.csv.truncate(n_rows)

    def drop_direction(self, direction: str) -> None:
        self.csv.drop_direction(direction)

    def finish(self, summary: dict, files: list[Path]) -> None:
        self._each("log the final metrics", lambda t: t.finish(summary, [f for f in files if Path(f).exists()]))

    def close(self, exc: BaseException | None = None) -> None:
        self._each("close its run", lambda t: t.close(status_of(exc)))
        self.trackers = []

    def _each(self, what: str, call) -> None:
        for t in list(self.trackers):
            try:
                call(t)
            except Exception as e:  # noqa: BLE001 - any tracker error: warn once, keep training
                self.trackers.remove(t)
                log.warning("%s: could not %s (%s); it is dropped for the rest of this run. Training goes "
                            "on and metrics.csv keeps every row.", t.label, what, brief(e))


def open_trackers(cfg: DictConfig, run_dir: Path) -> list:
    """Open each selected tracker's run (rank 0, before the run writes anything). Any failure is a
    UserError; trackers opened before it are closed again."""
    names = selected(cfg.get("logger"))
    if not names:
        return []
    info = RunInfo.of(cfg, run_dir)
    ids = read_json(run_dir / RUN_IDS) if cfg.resume and (run_dir / RUN_IDS).exists() else {}
    opened: list = []
    try:
        for name in names:
            opened.append(TRACKERS[name].build(cfg.logger[name], cfg, info, ids.get(name)))
    except BaseException:
        for t in opened:
            try:
                t.close("FAILED")
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
        raise
    write_json(run_dir / RUN_IDS, {t.name: t.ids() for t in opened})
    for t in opened:
        log.info("%s: %s", t.label, t.where())
    return opened


def check_trackers(cfg: DictConfig) -> None:
    """What can be checked without opening a run: each selected tracker's package imports and its
    server (if any) answers. For a job that starts other processes (distributed=ddp)."""
    for name in selected(cfg.get("logger")):
        TRACKERS[name].info["check"](cfg.logger[name])


def misplaced_tracker_keys(argv: list[str]) -> None:
    """`logger.mlflow.tracking_uri=...` without `logger=mlflow`: the node is null until the tracker is
    selected, and Hydra's own message for that ("Unexpected type for root: NoneType") names neither."""
    chosen = set()
    for a in argv:
        if a.startswith("logger="):
            chosen |= set(re.findall(r"\w+", a.split("=", 1)[1]))
    for a in argv:
        m = re.match(r"^\+*logger\.(\w+)\.", a)
        if m and m.group(1) in TRACKERS and m.group(1) not in chosen:
            t = m.group(1)
            raise UserError(f"{a.split('=', 1)[0]} configures the {t} tracker, which this run does not use.",
                            f"Select it too: logger={t} (several: logger=[tensorboard,{t}] ...); metrics.csv is "
                            "always written.")


from .mlflow_tracker import SweepTrackers  # noqa: E402  (the Hydra callback conf/_common.yaml names)

__all__ = ["TRACKERS", "RunInfo", "TrackedMetrics", "SweepTrackers", "open_trackers", "check_trackers", "selected",
           "misplaced_tracker_keys"]
