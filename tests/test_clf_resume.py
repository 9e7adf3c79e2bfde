"""train-clf stops and resumes like the LM stages: a signal saves progress and exits 130 without
a summary; resume=<run dir> continues mid-epoch and across the fwd/bwd boundary, ending with the
same metrics.csv and weights as an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ulmfit
from test_resume import assert_same_metrics, metrics

pytestmark = pytest.mark.integration

ARGS = ["experiment=quickstart", "progress=none", "lm=null", "bidirectional=both", "train.epochs=3",
        "dataset.max_docs=400", "train.bs=4", "checkpoint.every_steps=7", "checkpoint.keep=2", "threads=1"]


def start(cwd: Path, *extra: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("ulmfit")
    return subprocess.Popen([str(exe), "train-clf", *ARGS, *extra], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"train-clf ended (code {proc.returncode}) before {what}:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def progress_steps(run: Path, direction: str) -> list[int]:
    return [int(p.stem.split("-")[1]) for p in (run / "checkpoints" / "last").glob(f"{direction}-*.pt")]


def stop(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    os.kill(proc.pid, sig)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def assert_same_weights(ref: Path, run: Path) -> None:
    for direction in ("fwd", "bwd"):
        a = torch.load(ref / "checkpoints" / f"{direction}.pt", weights_only=True)["model"]
        b = torch.load(run / "checkpoints" / f"{direction}.pt", weights_only=True)["model"]
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5, msg=f"{direction} {k}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("ref")
    ulmfit("train-clf", *ARGS, "hydra.run.dir=outputs/ref", cwd=cwd)
    return cwd / "outputs" / "ref"


def test_sigterm_in_fwd_and_in_bwd_then_resume_matches_uninterrupted(tmp_path, reference):
    run = tmp_path / "outputs" / "cut"
    proc = start(tmp_path, f"hydra.run.dir={run}")
    wait_for(lambda: any(s >= 14 for s in progress_steps(run, "fwd")), proc, "fwd step 14")
    code, out = stop(proc, signal.SIGTERM)
    assert code == 130, out
    assert "Stopped by a signal" in out and f"resume={run}" in out and "Traceback" not in out, out
    assert not (run / "summary.json").exists() and not (run / "checkpoints" / "fwd.pt").exists()

    proc = start(tmp_path, f"resume={run}")
    wait_for(lambda: (run / "checkpoints" / "fwd.pt").exists() and any(s >= 7 for s in progress_steps(run, "bwd")),
             proc, "bwd step 7")
    code, out = stop(proc, signal.SIGTERM)
    assert code == 130, out
    assert not (run / "summary.json").exists() and not (run / "checkpoints" / "bwd.pt").exists()

    ulmfit("train-clf", f"resume={run}", cwd=tmp_path)
    assert (run / "summary.json").exists()
    assert_same_metrics(metrics(run), metrics(reference))
    assert_same_weights(reference, run)


def test_sigkill_at_the_direction_boundary_then_resume_matches_uninterrupted(tmp_path, reference):
    """Killed once fwd is finished, before bwd saved progress (most likely): the resumed run must
    build the bwd model from the same random state an uninterrupted run had there."""
    run = tmp_path / "outputs" / "cut"
    proc = start(tmp_path, f"hydra.run.dir={run}")
    wait_for(lambda: (run / "checkpoints" / "fwd.pt").exists(), proc, "fwd.pt")
    stop(proc, signal.SIGKILL)
    assert not (run / "summary.json").exists()
    ulmfit("train-clf", f"resume={run}", cwd=tmp_path)
    assert_same_metrics(metrics(run), metrics(reference))
    assert_same_weights(reference, run)


def test_resume_starts_from_the_lm_the_run_began_from_not_a_newer_one(tmp_path):
    """lm=latest resolves once: an LM fine-tuned while the classifier was stopped (its vocabulary
    need not fit the saved weights) is not picked up by the resume."""
    import shutil

    lm_args = ["experiment=quickstart", "progress=none", "pretrained=null", "bidirectional=both", "train.epochs=1",
               "dataset.max_docs=400", "threads=1"]
    ulmfit("finetune-lm", *lm_args, "hydra.run.dir=outputs/finetune-lm/first", cwd=tmp_path)
    first = (tmp_path / "outputs" / "finetune-lm" / "first").resolve()
    run = tmp_path / "outputs" / "cut"
    proc = start(tmp_path, "lm=latest", f"hydra.run.dir={run}")
    wait_for(lambda: any(s >= 7 for s in progress_steps(run, "fwd")), proc, "fwd step 7")
    code, out = stop(proc, signal.SIGTERM)
    assert code == 130, out
    newer = tmp_path / "outputs" / "finetune-lm" / "newer"
    shutil.copytree(first, newer)
    (newer / "summary.json").touch()  # now the newest finished finetune-lm run
    ulmfit("train-clf", f"resume={run}", cwd=tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["started_from"] == str(first)
    assert f"lm=latest: resuming, so from the run this one began from, {first}" in (run / "train.log").read_text()
    ulmfit("train-clf", *ARGS[:-1], "lm=latest", "train.epochs=1", "hydra.run.dir=outputs/fresh", cwd=tmp_path)
    assert json.loads((tmp_path / "outputs" / "fresh" / "summary.json").read_text())["started_from"] == str(newer.resolve())
