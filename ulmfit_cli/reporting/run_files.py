"""metrics.csv (one row per evaluation) and summary.json, the files every stage writes.

Their figures are those declared in training/metrics.py: metrics.csv's columns are the declared ones
(`in_csv`), in that order. A key not declared is refused under ULMFIT_STRICT_METRICS=1 (the tests); a run warns
and still records it (metrics.csv gains a column at its end), since raising mid-run would lose the run.
"""
from __future__ import annotations

import csv
import logging
import platform
from pathlib import Path

import torch

from ..build_info import build_info
from ..fileutil import write_json
from ..training.metrics import CSV_COLUMNS, METRICS, STRICT_ENV, strict, undeclared_figures

log = logging.getLogger("ulmfit")


class MetricsWriter:
    """Appends rows to metrics.csv with the declared columns (missing values left empty). The file is
    made with the first row, so a run that failed before training has none."""

    def __init__(self, path: Path, **fixed):
        self.path, self.fixed = Path(path), fixed
        self.columns = self._header() or list(CSV_COLUMNS)  # a resumed run keeps the file's own

    def _header(self) -> list[str] | None:
        if not self.path.exists():
            return None
        with open(self.path, newline="") as f:
            return next(csv.reader(f), None)

    def rows(self) -> int:
        if not self.path.exists():
            return 0
        with open(self.path) as f:
            return sum(1 for _ in f) - 1

    def truncate(self, n_rows: int) -> None:
        """Drop rows written after a checkpoint, so a resumed run's metrics.csv matches an uninterrupted one."""
        if self.path.exists():
            lines = self.path.read_text().splitlines(keepends=True)
            self.path.write_text("".join(lines[: n_rows + 1]))

    def drop_direction(self, direction: str) -> None:
        """Drop every row of `direction`: a direction resumed with no checkpoint trains again from its
        first step, so rows it wrote before its first checkpoint would otherwise appear twice."""
        if self.path.exists():
            with open(self.path, newline="") as f:
                rows = list(csv.reader(f))
            col = rows[0].index("direction")
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerows([rows[0], *(r for r in rows[1:] if r[col] != direction)])

    def __call__(self, row: dict) -> None:
        row = {**self.fixed, **row}
        extra = [k for k in row if k not in self.columns and k not in METRICS]  # declared: a column, or none by choice
        if extra:
            undeclared(f"metrics.csv's {row.get('split')} row at step {row.get('step')}", extra)
            self._widen(extra)
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(self.columns)
            writer.writerow([_fmt(row.get(c)) for c in self.columns])
            f.flush()

    def _widen(self, extra: list[str]) -> None:
        """New columns at the end, the rows written so far left empty in them."""
        self.columns += extra
        if self.path.exists():
            with open(self.path, newline="") as f:
                rows = list(csv.reader(f))[1:]
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerows([self.columns, *(r + [""] * len(extra) for r in rows)])


def undeclared(where: str, keys: list[str]) -> None:
    """Keys no declaration names: an error under ULMFIT_STRICT_METRICS, else a warning (the figure is
    still recorded: a run must not lose its work, nor a figure vanish)."""
    what = (f"{where} has undeclared metric(s) {', '.join(keys)}; declare each in "
            "ulmfit_cli/training/metrics.py (METRICS)")
    if strict():
        raise ValueError(f"{what} ({STRICT_ENV} is set).")
    log.warning("%s; recorded as given.", what)


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def write_summary(run_dir: Path, *, stage: str, results: dict, started_from: str | None, wall_time_s: float,
                  device: str, precision: str, build_dir: Path | None = None, **extra) -> dict:
    """summary.json, the record of a finished run (written last: a run without it did not finish).
    `build_dir`: where the run directory is being built, when it is renamed into place afterwards."""
    summary = {
        "stage": stage,
        "run_dir": str(run_dir),
        "started_from": started_from,
        "results": results,
        "wall_time_s": round(wall_time_s, 2),
        "device": device,
        "precision": precision,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "ulmfit": build_info(),
        **extra,
    }
    for part in ("results", "baselines"):
        for name, figures in (summary.get(part) or {}).items():
            if bad := (undeclared_figures(figures) if isinstance(figures, dict) else []):
                undeclared(f"summary.json's {part}.{name}", bad)
    write_json(Path(build_dir or run_dir) / "summary.json", summary)
    return summary
