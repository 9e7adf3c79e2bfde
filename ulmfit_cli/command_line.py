"""A stage's command line as written, read before (or beside) Hydra: the value of one override, whether
it asks for a sweep, and where a sweep job's directory sits in its sweep."""
from __future__ import annotations

from pathlib import Path

MULTIRUN_FLAGS = ("-m", "--multirun")


def argv_value(argv: list[str], key: str, default: str | None = None) -> str | None:
    """The value of the last `key=value` on the command line (Hydra's override order)."""
    return next((a.split("=", 1)[1] for a in reversed(argv) if a.startswith(f"{key}=")), default)


def is_multirun(argv: list[str]) -> bool:
    """Whether a stage's command line asks Hydra for a sweep."""
    return any(a in MULTIRUN_FLAGS or a.lower() == "hydra.mode=multirun" for a in argv)


def job_sweep_dir(job_dir: Path, subdir: str | None) -> Path:
    """The sweep dir of a job's dir (job dir = hydra.sweep.dir / hydra.sweep.subdir): the subdir's
    depth stripped, since re-resolving ${now:} in a worker could differ."""
    parts = len(Path(subdir).parts) if subdir else 0
    return job_dir.parents[parts - 1] if parts else job_dir
