"""A run killed with SIGKILL mid-epoch and resumed ends exactly like an uninterrupted one."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ulmfit

ARGS = ["experiment=quickstart", "progress=none", "bidirectional=fwd", "train.epochs=2", "dataset.max_docs=400",
        "train.bs=8", "checkpoint.every_steps=5", "checkpoint.keep=2"]
EXACT = ["epoch", "step", "split", "lr"]
NUMERIC = ["loss", "accuracy", "perplexity"]


def metrics(run: Path) -> list[dict]:
    return list(csv.DictReader(open(run / "metrics.csv")))


def assert_same_metrics(a: list[dict], b: list[dict]) -> None:
    """Same rows; numbers equal to float32 rounding (CPU kernels round differently when a
    resumed process lays tensors out at other addresses; in one process resume is bit-exact)."""
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert {k: ra[k] for k in EXACT} == {k: rb[k] for k in EXACT}
        for k in NUMERIC:
            assert (ra[k] == rb[k] == "") or float(ra[k]) == pytest.approx(float(rb[k]), rel=1e-5), (k, ra, rb)


@pytest.mark.integration
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    ref_cwd, cut_cwd = tmp_path / "ref", tmp_path / "cut"
    ref_cwd.mkdir(), cut_cwd.mkdir()
    ulmfit("pretrain", *ARGS, cwd=ref_cwd)
    ref = next((ref_cwd / "outputs" / "pretrain").iterdir())

    exe = Path(sys.executable).with_name("ulmfit")
    proc = subprocess.Popen([str(exe), "pretrain", *ARGS], cwd=cut_cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    run = None
    while time.time() < deadline:
        found = list((cut_cwd / "outputs" / "pretrain").glob("*/checkpoints/last/fwd-*.pt"))
        # wait for the second step checkpoint so the kill lands mid-epoch, after real progress
        if len(found) >= 2 or any(int(p.stem.split("-")[1]) >= 10 for p in found):
            run = found[0].parents[2]
            break
        time.sleep(0.05)
    assert run is not None, "no progress checkpoint appeared"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "summary.json").exists()
    saved = sorted((run / "checkpoints" / "last").glob("fwd-*.pt"))
    assert 1 <= len(saved) <= 2

    # the summary's wall time counts the killed process too, as its last checkpoint recorded it
    from ulmfit_cli.checkpoints import load_checkpoint, save_checkpoint

    state = load_checkpoint(saved[-1])
    assert 0 < state["wall_time_s"] < time.time() - deadline + 120
    save_checkpoint(saved[-1], {**state, "wall_time_s": 1000.0})
    t = time.time()
    ulmfit("pretrain", f"resume={run}", cwd=cut_cwd)
    assert 1000.0 < json.loads((run / "summary.json").read_text())["wall_time_s"] < 1000.0 + time.time() - t
    assert_same_metrics(metrics(run), metrics(ref))
    a = torch.load(ref / "checkpoints" / "fwd.pt", weights_only=True)["model"]
    b = torch.load(run / "checkpoints" / "fwd.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5, msg=k)


def test_resume_of_a_finished_run_is_refused(tmp_path):
    ulmfit("pretrain", *ARGS[:-2], "train.epochs=1", cwd=tmp_path)
    run = next((tmp_path / "outputs" / "pretrain").iterdir())
    proc = ulmfit("pretrain", f"resume={run}", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "already finished" in proc.stderr


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_first_step(tmp_path):
    """Killed before its first checkpoint, after the first epoch's rows reached metrics.csv (the rows
    are written just before the epoch's checkpoint): resume= trains it from the first step in its own
    directory, and its metrics.csv ends as an uninterrupted run's, those rows not doubled."""
    args = [*ARGS[:-2], "train.epochs=1"]
    ulmfit("pretrain", *args, cwd=tmp_path)
    ref = next((tmp_path / "outputs" / "pretrain").iterdir())
    cut = tmp_path / "cut"
    ulmfit("pretrain", *args, f"hydra.run.dir={cut}", cwd=tmp_path)
    (cut / "summary.json").unlink()
    shutil.rmtree(cut / "checkpoints")
    proc = ulmfit("pretrain", f"resume={cut}", cwd=tmp_path)
    assert "fwd had saved no progress yet; it trains from the first step" in (cut / "train.log").read_text()
    assert proc.returncode == 0 and (cut / "summary.json").exists()
    assert_same_metrics(metrics(cut), metrics(ref))
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    proc = ulmfit("pretrain", f"resume={not_a_run}", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no .hydra/overrides.yaml" in proc.stderr


def test_drop_direction_keeps_the_other_directions_rows(tmp_path):
    """A bwd resumed with no checkpoint drops only its own rows: fwd's finished rows stay, in order."""
    from ulmfit_cli.reporting.run_files import MetricsWriter

    writer = MetricsWriter(tmp_path / "metrics.csv", stage="train-clf")
    for direction, epoch in [("fwd", 1), ("fwd", 2), ("bwd", 1)]:
        writer({"direction": direction, "epoch": epoch, "split": "valid", "loss": 0.5})
    writer.drop_direction("bwd")
    assert [(r["direction"], r["epoch"]) for r in metrics(tmp_path)] == [("fwd", "1"), ("fwd", "2")]
    writer({"direction": "bwd", "epoch": 1, "split": "valid", "loss": 0.4})
    assert writer.rows() == 3
