"""metrics.csv (one row per evaluation) and summary.json, the outputs every stage writes."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from ..checkpoints import atomic_write_bytes

COLUMNS = [
    "stage", "direction", "epoch", "step", "split", "loss", "accuracy", "perplexity",
    "lr", "throughput", "elapsed_s", "grad_norm", "skipped_batches", "f1_micro", "f1_macro",
]


class MetricsWriter:
    """Appends rows to metrics.csv with a fixed header; unknown keys are dropped, missing left empty."""

    def __init__(self, path: Path, **fixed):
        self.path, self.fixed = Path(path), fixed
        if not self.path.exists():
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(COLUMNS)

    def rows(self) -> int:
        with open(self.path) as f:
            return sum(1 for _ in f) - 1

    def truncate(self, n_rows: int) -> None:
        """Drop rows written after a checkpoint, so a resumed run's metrics.csv matches an uninterrupted one."""
        lines = self.path.read_text().splitlines(keepends=True)
        self.path.write_text("".join(lines[: n_rows + 1]))

    def __call__(self, row: dict) -> None:
        row = {**self.fixed, **row}
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(c)) for c in COLUMNS])
            f.flush()


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, default=str).encode()
    atomic_write_bytes(Path(path), lambda f: f.write(text))


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
