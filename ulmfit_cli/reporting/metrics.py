"""metrics.csv (one row per evaluation) and summary.json, the outputs every stage writes."""
from __future__ import annotations

import csv
import platform
from pathlib import Path

import torch

from ..fileutil import write_json

COLUMNS = [
    "stage", "direction", "epoch", "step", "split", "loss", "accuracy", "perplexity",
    "lr", "throughput", "elapsed_s", "grad_norm", "skipped_batches", "f1_micro", "f1_macro",
]


class MetricsWriter:
    """Appends rows to metrics.csv with a fixed header; unknown keys are dropped, missing left empty.
    The file is made with the first row, so a run that failed before training has none."""

    def __init__(self, path: Path, **fixed):
        self.path, self.fixed = Path(path), fixed

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
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(COLUMNS)
            writer.writerow([_fmt(row.get(c)) for c in COLUMNS])
            f.flush()


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
        **extra,
    }
    write_json(Path(build_dir or run_dir) / "summary.json", summary)
    return summary
