"""Data-parallel LM training: 2 CPU processes with gloo vs 1 process, same global batch.

With no dropout (quickstart's pretrain has drop_mult 0) the only difference between the runs is
floating-point summation order, so the loss curves agree to ~1e-6; the tolerance is 1e-3.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_clean_error, ulmfit
from ulmfit_cli.extras import module_installed

# Variable BPTT and AR/TAR on (every rank must draw the same lengths and average the same terms);
# one thread per process: the 2 cores are shared with other processes.
ARGS = ["experiment=quickstart", "progress=none", "bidirectional=fwd", "dataset.max_docs=300", "train.bs=8",
        "train.variable_bptt=true", "train.alpha=2.0", "train.beta=1.0", "token_cache=off", "device=cpu", "threads=1"]
SHORT = ["train.epochs=2", "train.max_steps_per_epoch=5"]
LONG = ["train.epochs=3", "checkpoint.every_steps=4", "checkpoint.keep=1"]  # 3 x ~46 steps
COMPARED = ["loss", "accuracy", "perplexity", "grad_norm"]


def torchrun(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300):
    exe = Path(sys.executable).with_name("torchrun")
    cmd = [str(exe), "--standalone", "--nproc_per_node=2", "-m", "ulmfit_cli", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})})
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def only_run(cwd: Path, stage: str = "pretrain") -> Path:
    runs = list((cwd / "outputs" / stage).iterdir())
    assert len(runs) == 1, runs  # one run directory, whatever the number of processes
    assert sorted(p.name for p in (cwd / "outputs").iterdir()) == [stage]
    return runs[0]


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_same_curve(a: list[dict], b: list[dict], rel: float = 1e-3) -> None:
    assert len(a) == len(b) and a
    for ra, rb in zip(a, b):
        assert (ra["epoch"], ra["step"], ra["split"], ra["lr"]) == (rb["epoch"], rb["step"], rb["split"], rb["lr"])
        for k in COMPARED:
            assert (ra[k] == rb[k] == "") or float(ra[k]) == pytest.approx(float(rb[k]), rel=rel), (k, ra, rb)


def assert_same_weights(a: Path, b: Path) -> None:
    wa = torch.load(a / "checkpoints" / "fwd.pt", weights_only=True)["model"]
    wb = torch.load(b / "checkpoints" / "fwd.pt", weights_only=True)["model"]
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-3, atol=1e-4, msg=k)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: one process, batch size 8, short and long runs."""
    out = {}
    for name, extra in (("short", SHORT), ("long", LONG)):
        cwd = tmp_path_factory.mktemp(f"one-{name}")
        ulmfit("pretrain", *ARGS, *extra, cwd=cwd)
        out[name] = only_run(cwd)
    return out


@pytest.mark.integration
def test_torchrun_two_processes_match_one_process(tmp_path, one_process):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    cwd = tmp_path / "run"
    cwd.mkdir()
    torchrun("pretrain", *ARGS, *SHORT, cwd=cwd, env={"TMPDIR": str(scratch)})
    run = only_run(cwd)
    ref = one_process["short"]
    assert_same_curve(metrics(run), metrics(ref))
    assert_same_weights(run, ref)
    # rank 0 wrote the run directory; rank 1 wrote nothing that is left (its Hydra scratch dir is gone)
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "checkpoints", "config.yaml", "metrics.csv",
                                                     "summary.json", "train.log"]
    assert not list(scratch.glob("ulmfit-rank*"))  # (torchrun keeps its own torchelastic_* there)
    log = (run / "train.log").read_text()
    assert "DDP: 2 processes (gloo)" in log and "rank 1" not in log
    summary = (run / "summary.json").read_text()
    assert '"processes": 2' in summary
    # throughput counts the tokens of both processes: the rows' units are global
    assert all(float(r["throughput"]) > 0 for r in metrics(run) if r["split"] == "train")


@pytest.mark.integration
def test_finetune_lm_with_gradual_unfreezing_matches_one_process(tmp_path):
    """DDP is rebuilt when unfreezing changes the trainable parameters: their gradients are averaged too."""
    args = [*ARGS, "pretrained=null", "unfreeze=gradual", "schedule.discriminative=true", "train.epochs=4",
            "train.max_steps_per_epoch=3"]
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    ulmfit("finetune-lm", *args, cwd=tmp_path / "one")
    torchrun("finetune-lm", *args, cwd=tmp_path / "two")
    one, two = only_run(tmp_path / "one", "finetune-lm"), only_run(tmp_path / "two", "finetune-lm")
    assert_same_curve(metrics(two), metrics(one))
    assert_same_weights(two, one)


@pytest.mark.integration
def test_ddp_interrupted_and_resumed_matches_one_process(tmp_path, one_process):
    """`distributed=ddp` starts torchrun itself; SIGTERM makes every rank stop after the same batch
    and rank 0 save (weights, optimiser, position and the hidden states of all 8 streams); resume
    continues in 2 processes and ends on the uninterrupted 1-process curve."""
    exe = Path(sys.executable).with_name("ulmfit")
    args = [*ARGS, *LONG, "distributed=ddp", "distributed.nproc=2"]
    proc = subprocess.Popen([str(exe), "pretrain", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline, run = time.time() + 120, None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "outputs" / "pretrain").glob("*/checkpoints/last/fwd-*.pt"))
        if found:
            run = found[0].parents[2]
            break
        time.sleep(0.05)
    assert run is not None, "no progress checkpoint appeared"
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert out.count("Stopped by a signal") == 1 and "resume=" in out and "Traceback" not in out, out
    assert not (run / "summary.json").exists()
    (saved,) = (run / "checkpoints" / "last").glob("fwd-*.pt")
    state = torch.load(saved, weights_only=True)
    assert 0 < state["trainer"]["loop"]["global_step"] < 3 * 46
    hidden = state["trainer"]["hidden"]
    assert hidden is None or hidden[0][0].shape[1] == 8  # both ranks' streams, in the one-process layout

    ulmfit("pretrain", f"resume={run}", cwd=tmp_path)
    assert only_run(tmp_path) == run
    assert_same_curve(metrics(run), metrics(one_process["long"]))
    assert_same_weights(run, one_process["long"])


@pytest.mark.integration
def test_distributed_bad_inputs_are_clear_errors(tmp_path):
    proc = ulmfit("pretrain", *ARGS, *SHORT, "distributed=ddp", "distributed.nproc=3", cwd=tmp_path, check=False)
    assert_clean_error(proc, "train.bs=8 is not divisible by the 3 processes", "train.bs=6")
    proc = ulmfit("train-clf", *ARGS, *SHORT, "lm=null", "train.bs=9", "distributed=ddp", "distributed.nproc=2",
                  cwd=tmp_path, check=False)
    assert_clean_error(proc, "train.bs=9 is not divisible by the 2 processes")
    proc = ulmfit("pretrain", *ARGS, *SHORT, "distributed=ddp", cwd=tmp_path, check=False)
    assert_clean_error(proc, "distributed.nproc", "no GPU")
    assert not list((tmp_path / "outputs").glob("*/*/metrics.csv"))


@pytest.mark.integration
def test_ddp_job_under_the_submitit_launcher(tmp_path):
    """What a SLURM job does (hydra/launcher=submitit_slurm_ddp), run locally: the sweep job starts
    the 2 processes itself and its job dir holds the one set of outputs."""
    if not module_installed("hydra_plugins.hydra_submitit_launcher"):
        pytest.skip("hydra-submitit-launcher is not installed (pip install 'ulmfit-cli[sweeps]')")
    ulmfit("pretrain", "-m", *ARGS, *SHORT, "distributed=ddp", "distributed.nproc=2", "hydra/launcher=submitit_local",
           cwd=tmp_path)
    (sweep,) = (tmp_path / "outputs" / "multirun" / "pretrain").iterdir()
    jobs = [p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()]
    assert [p.name for p in jobs] == ["0"]
    assert '"processes": 2' in (jobs[0] / "summary.json").read_text()
    assert len(metrics(jobs[0])) == 4


@pytest.mark.skipif(not module_installed("hydra_plugins.hydra_submitit_launcher"),
                    reason="hydra-submitit-launcher is not installed (pip install 'ulmfit-cli[sweeps]')")
def test_slurm_ddp_launcher_config_composes(tmp_path):
    proc = ulmfit("pretrain", "hydra/launcher=submitit_slurm_ddp", "distributed=ddp", "--cfg", "hydra", "-p",
                  "hydra.launcher", cwd=tmp_path)
    assert "tasks_per_node: 1" in proc.stdout and "gpus_per_node: 4" in proc.stdout
    assert "SlurmLauncher" in proc.stdout


# ----------------------------------------------------------------------------- the classifier


def test_classifier_batches_shard_the_global_batch_and_weight_the_loss():
    """Ranks take contiguous slices of the same global batches; share-weighted per-rank means
    average (as DDP averages gradients) to the one-process mean, also for uneven slices."""
    from ulmfit_cli.data.batching import ClassifierBatches

    rng = np.random.default_rng(0)
    docs = [rng.integers(5, 50, size=int(n)) for n in rng.integers(3, 40, size=46)]
    labels = rng.integers(0, 3, size=46)
    one = list(ClassifierBatches(docs, labels, 8, 1, 10, seed=3).epoch(1))
    ranks = [list(ClassifierBatches(docs, labels, 8, 1, 10, seed=3, rank=r, world_size=3).epoch(1)) for r in range(3)]
    assert len(ClassifierBatches(docs, labels, 8, 1, 10, rank=0, world_size=3)) == len(one) == 6
    per_row = rng.random(46)  # any per-document loss
    for step, ref in enumerate(one):
        parts = [r[step] for r in ranks]
        assert np.array_equal(np.concatenate([b.idx for b in parts]), ref.idx)
        assert sum(b.share for b in parts) == pytest.approx(3.0)
        ddp_mean = np.mean([b.share * per_row[b.idx].mean() for b in parts])
        assert ddp_mean == pytest.approx(per_row[ref.idx].mean())
    # 46 = 5 x 8 + 6: a last batch of 6 rows gives each of 3 ranks two; with 4 ranks it joins the batch before
    assert len(ClassifierBatches(docs, labels, 8, 1, 10, rank=0, world_size=4)) == 5
    assert len(list(ClassifierBatches(docs, labels, 8, 1, 10, rank=3, world_size=4).epoch(0))) == 5


@pytest.mark.integration
def test_train_clf_under_torchrun_writes_one_run_with_every_prediction(tmp_path):
    """2 processes train the classifier on halves of each global batch; rank 0 alone writes, and
    the sharded evaluation scores every test document in input order. (On CPU each process's
    BatchNorm normalises its own half batch, so the curve is close to, not equal to, one process's;
    on CUDA the head uses SyncBatchNorm.)"""
    args = [*ARGS, "lm=null", "unfreeze=gradual", "train.epochs=4", "train.max_steps_per_epoch=6"]
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    ulmfit("train-clf", *args, cwd=tmp_path / "one")
    torchrun("train-clf", *args, cwd=tmp_path / "two")
    one, two = only_run(tmp_path / "one", "train-clf"), only_run(tmp_path / "two", "train-clf")
    m1, m2 = metrics(one), metrics(two)
    assert [(r["epoch"], r["step"], r["split"], r["lr"]) for r in m1] == [(r["epoch"], r["step"], r["split"], r["lr"]) for r in m2]
    p1 = list(csv.DictReader(open(one / "predictions_test.csv")))
    p2 = list(csv.DictReader(open(two / "predictions_test.csv")))
    assert [r["text"] for r in p2] == [r["text"] for r in p1] and len(p1) == 300
    assert '"processes": 2' in (two / "summary.json").read_text()
    first1, first2 = (float(next(r["loss"] for r in m if r["split"] == "train")) for m in (m1, m2))
    assert first2 == pytest.approx(first1, rel=0.25)
