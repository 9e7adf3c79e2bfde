"""Shared fixtures: run the real console script in a scratch directory."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Small enough that a stage takes seconds on 2 CPU cores.
FAST = ["experiment=quickstart", "progress=none", "train.epochs=1", "dataset.max_docs=300", "train.bs=16"]


def ulmfit(*args: str, cwd: Path, check: bool = True, env: dict | None = None, timeout: int = 300):
    """Run `ulmfit ARGS` as a user would; returns the CompletedProcess."""
    exe = Path(sys.executable).with_name("ulmfit")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ulmfit_cli"]
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    full_env.pop("ULMFIT_VERBOSE", None)
    proc = subprocess.run(cmd + list(args), cwd=cwd, capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"ulmfit {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def assert_clean_error(proc, *needles):
    """Bad input: non-zero exit, every needle in the message, no traceback."""
    assert proc.returncode != 0
    err = proc.stderr + proc.stdout
    assert "Traceback" not in err, err
    for n in needles:
        assert n in err, f"{n!r} not in:\n{err}"


@pytest.fixture(scope="session", autouse=True)
def strict_metrics():
    """A metric written but not declared (training/metrics.py) fails the test that writes it, in
    this process and in every `ulmfit` it starts; a user's run only warns."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ULMFIT_STRICT_METRICS", "1")
        yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
