"""More bad input: each is a one-paragraph error naming the thing and the fix, or is handled."""
from __future__ import annotations

import csv
import errno
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import assert_clean_error, FAST, ulmfit
from ulmfit_cli import cli
from ulmfit_cli.checkpoints import load_checkpoint
from ulmfit_cli.errors import NonFiniteLoss, UserError, as_user_error
from ulmfit_cli.training.loop import StepOut, Trainer
from ulmfit_cli.training.param_groups import Phase


def files_of(run: Path) -> dict:
    return {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """finetune-lm from scratch (fwd only) and a train-clf on it."""
    cwd = tmp_path_factory.mktemp("bad")
    ulmfit("finetune-lm", *FAST, "pretrained=null", "bidirectional=fwd", cwd=cwd)
    ulmfit("train-clf", *FAST, "bidirectional=fwd", "unfreeze=none", cwd=cwd)
    lm = next((cwd / "outputs" / "finetune-lm").iterdir())
    clf = next((cwd / "outputs" / "train-clf").iterdir())
    return cwd, lm, clf


# ---- 1. a loss that becomes NaN -------------------------------------------------------------

class _Batches:
    def __init__(self, n):
        self.n = n

    def epoch(self, epoch):
        return range(self.n)

    def __len__(self):
        return self.n


class _Steps:
    def __init__(self, saved):
        self.saved = saved

    def on_step_end(self, trainer, result):
        self.saved.append(trainer.state.global_step)


def _trainer(on_nan, nan_at, saved):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(forward, i):
        loss = forward(torch.ones(1, 2)).sum() ** 2
        return StepOut(loss * float("nan") if i in nan_at else loss, 1)

    tr = Trainer(model, opt, [0.1], lambda i, n: 1.0, step, lambda m: {"loss": 0.0}, device=torch.device("cpu"),
                 on_nan=on_nan, callbacks=[_Steps(saved)])
    return tr


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint():
    saved = []
    tr = _trainer("stop", {3}, saved)
    with pytest.raises(NonFiniteLoss) as exc:
        tr.fit(_Batches(6), [Phase(epochs=1, trainable=[True])])
    assert exc.value.step == 3 and saved == [1, 2, 3]  # steps 0..2 trained (and were checkpointable)
    err = as_user_error(exc.value)
    assert isinstance(err, UserError)
    assert "at step 3" in str(err) and "schedule.lr" in str(err) and "train.on_nan=skip" in str(err)


def test_nan_loss_with_on_nan_skip_finishes_and_counts_the_skipped_batches():
    saved = []
    tr = _trainer("skip", {1, 4}, saved)
    history = tr.fit(_Batches(6), [Phase(epochs=1, trainable=[True])])
    row = next(r for r in history if r["split"] == "train")
    assert row["skipped_batches"] == 2 and tr.state.global_step == 6


# ---- 2. predict keeps the input order whatever the length sort ---------------------------------

def test_predict_keeps_input_order_with_shuffled_lengths(runs, tmp_path):
    cwd, _, clf = runs
    rng = random.Random(0)
    words = "good bad film great awful plot actor boring fun the a".split()
    lengths = list(range(1, 201, 5)) + [7, 7, 50]
    rng.shuffle(lengths)
    texts = [" ".join(rng.choice(words) for _ in range(n)) for n in lengths]
    texts += texts[:3]  # duplicates
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    ulmfit("predict", f"run={clf}", f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'all.csv'}", "bs=8", cwd=cwd)
    rows = list(csv.DictReader(open(tmp_path / "all.csv")))
    assert [r["text"] for r in rows] == texts
    from ulmfit_cli.checkpoints import load_checkpoint
    from ulmfit_cli.commands.predict import ensemble_proba

    ck = [("fwd", load_checkpoint(clf / "checkpoints" / "fwd.pt"))]
    for r, t in list(zip(rows, texts))[::6]:
        alone = ensemble_proba(ck, [t], 1, torch.device("cpu"))[0]
        cols = [k for k in r if k.startswith("p_")]
        assert [float(r[c]) for c in cols] == pytest.approx(list(alone), abs=1e-5)


def test_predict_in_bf16_and_its_timing_line(runs, tmp_path, capsys):
    cwd, _, clf = runs
    (tmp_path / "in.txt").write_text("a good film\nan awful plot\n")
    outs = {}
    for prec in ("fp32", "bf16"):
        rc = cli.main(["predict", f"run={clf}", f"input={tmp_path / 'in.txt'}", f"output={tmp_path / prec}.csv",
                       f"precision={prec}", "verbose=true", "device=cpu"])
        err = capsys.readouterr().err
        assert rc == 0 and re.search(r"predict: 2 texts, 1 classifier\(s\), encoded in [0-9.]+ s, classified in "
                                     r"[0-9.]+ s \([0-9.]+ texts/s\)", err), err
        outs[prec] = [float(v) for r in csv.DictReader(open(tmp_path / f"{prec}.csv"))
                      for k, v in r.items() if k.startswith("p_")]
    assert outs["fp32"] and outs["bf16"] == pytest.approx(outs["fp32"], abs=0.05)  # bf16 rounding, same answer
    rc = cli.main(["predict", f"run={clf}", f"input={tmp_path / 'in.txt'}", "precision=fp8", "device=cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "precision=fp8" in err and "bf16" in err and "Traceback" not in err


def copy_run_editing_checkpoint(run: Path, dest: Path, edit) -> Path:
    """A copy of `run` whose checkpoints/fwd.pt was loaded, changed in place by `edit`, and saved back."""
    shutil.copytree(run, dest)
    path = dest / "checkpoints" / "fwd.pt"
    ck = torch.load(path, weights_only=True)
    edit(ck)
    torch.save(ck, path)
    return dest


# ---- 3. a checkpoint from another vocabulary / model size ------------------------------------------

def test_lm_checkpoint_with_another_vocab_size_is_a_clean_error(runs, tmp_path):
    cwd, lm, _ = runs

    def grow_embedding(ck):
        w = ck["model"]["encoder.encoder.weight"]
        ck["model"]["encoder.encoder.weight"] = torch.zeros(w.shape[0] + 7, w.shape[1])

    bad = copy_run_editing_checkpoint(lm, tmp_path / "lm_copy", grow_embedding)
    proc = ulmfit("train-clf", *FAST, "bidirectional=fwd", f"lm={bad}", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert_clean_error(proc, f"lm={bad}", "checkpoints/fwd.pt", "embedding matrix")
    assert not (tmp_path / "outputs" / "train-clf").exists() or not any((tmp_path / "outputs" / "train-clf").rglob("*.pt"))


# ---- 4. a checkpoint from an older version (no emb_init in model_config) ------------------------

def test_classifier_checkpoint_without_newer_config_key_still_loads(runs, tmp_path):
    cwd, _, clf = runs
    old = copy_run_editing_checkpoint(clf, tmp_path / "old_run", lambda ck: ck["model_config"].pop("emb_init", None))
    (tmp_path / "in.txt").write_text("a good film\nbad\n")
    ulmfit("predict", f"run={old}", f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'o.csv'}", cwd=cwd)
    assert len(list(csv.DictReader(open(tmp_path / "o.csv")))) == 2
    ulmfit("evaluate", f"run={old}", "split=test", cwd=cwd)


# ---- 5. empty text lines in a CSV dataset -----------------------------------------------------------

def test_empty_text_rows_in_csv_are_dropped_with_a_count(tmp_path):
    lines = ["text,label"] + [f"{'good' if i % 2 else 'bad'} film {i},{'pos' if i % 2 else 'neg'}" for i in range(60)]
    lines += [",pos", '"   ",neg', ",neg"]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    proc = ulmfit("train-clf", *FAST, "lm=null", "bidirectional=fwd", "unfreeze=none", "dataset=csv",
                  f"dataset.train_file={tmp_path / 'd.csv'}", cwd=tmp_path)
    assert "dropped 3 row(s) with empty text" in proc.stderr + proc.stdout + \
        next((tmp_path / "outputs" / "train-clf").iterdir()).joinpath("train.log").read_text()


# ---- 7. labels with commas, quotes and unicode round-trip --------------------------------------------

def test_labels_with_commas_quotes_and_unicode_round_trip(tmp_path):
    labels = ["pos, sure", 'neg "quoted"', "négatif 😀"]
    rows = [{"text": f"{['good', 'bad', 'meh'][i % 3]} movie number {i}", "label": labels[i % 3]} for i in range(90)]
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    ulmfit("train-clf", *FAST, "lm=null", "bidirectional=fwd", "unfreeze=none", "dataset=csv",
           f"dataset.train_file={tmp_path / 'd.csv'}", cwd=tmp_path)
    run = next((tmp_path / "outputs" / "train-clf").iterdir())
    pred = pd.read_csv(run / "predictions_test.csv", keep_default_na=False)
    assert set(pred["label"]) <= set(labels) and len(pred) > 0
    assert set(pred["prediction"]) <= set(labels)
    assert {f"p_{c}" for c in labels} <= set(pred.columns)


# ---- 8. outputs under a regular file; a full disk ----------------------------------------------------

def test_outputs_root_under_a_file_is_a_clean_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = ulmfit("pretrain", *FAST, f"outputs_root={tmp_path / 'afile' / 'out'}", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert_clean_error(proc, "outputs_root=", "is a file")


def test_full_disk_in_predict_is_a_clean_error_and_keeps_the_old_file(runs, tmp_path, monkeypatch, capsys):
    cwd, _, clf = runs
    from ulmfit_cli.commands import predict

    (tmp_path / "in.txt").write_text("good\n")
    (tmp_path / "out.csv").write_text("earlier output\n")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.csv"))

    monkeypatch.setattr(predict, "atomic_write_bytes", full)
    rc = cli.main(["predict", f"run={clf}", f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'out.csv'}",
                   "overwrite=true", "device=cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "No space left" in err and "outputs_root=" in err and "Traceback" not in err
    assert (tmp_path / "out.csv").read_text() == "earlier output\n"


# ---- 9. GPU out of memory gives advice -------------------------------------------------------------

def test_out_of_memory_gives_batch_size_advice(runs, tmp_path, monkeypatch, capsys):
    cwd, _, clf = runs
    from ulmfit_cli.commands import predict

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(predict, "predict_proba", oom)
    (tmp_path / "in.txt").write_text("good\n")
    rc = cli.main(["predict", f"run={clf}", f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'o.csv'}",
                   "device=cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "out of memory" in err and "train.bs" in err and "bs=" in err and "Traceback" not in err
    assert not (tmp_path / "o.csv").exists()


# ---- 10. a run that diverges, through the console script ---------------------------------------------

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # a busy 2-core machine runs two threads per tiny LSTM step far slower
FAULTS = Path(__file__).parent / "faults"  # sitecustomize.py: test-only fault injection (a full disk, CUDA OOM)


def error_lines(proc) -> list[str]:
    return [line for line in (proc.stderr + proc.stdout).splitlines() if line.startswith("error:")]


def test_diverging_run_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
    # Adam takes steps of about lr whatever the gradient: at lr=1e36 the first step makes every
    # weight ~1e36 and the next loss overflows to inf, reliably, at step 1.
    args = [*FAST, "bidirectional=fwd", "schedule.lr=1e36", "checkpoint.every_steps=1"]
    proc = ulmfit("pretrain", *args, cwd=tmp_path, env=ONE_THREAD, check=False)
    run = next((tmp_path / "outputs" / "pretrain").iterdir())
    kept = run / "checkpoints" / "last" / "fwd-000000001.pt"
    assert proc.returncode == 2
    assert_clean_error(proc, "Training stopped: the loss became", "at step 1", f"the last good checkpoint, {kept}, was kept",
                       "Lower schedule.lr", "train.on_nan=skip")
    assert len(error_lines(proc)) == 1  # one paragraph
    assert sorted(p.relative_to(run).as_posix() for p in (run / "checkpoints").rglob("*") if p.is_file()) == \
        ["checkpoints/last/fwd-000000001.pt"]  # no final fwd.pt, no half-written temp file
    assert load_checkpoint(kept)["trainer"]["loop"]["global_step"] == 1  # complete and loadable
    assert not (run / "summary.json").exists() and "at step 1" in (run / "train.log").read_text()

    # The fix it names works: train.on_nan=skip finishes and counts what it skipped.
    ulmfit("pretrain", *args, "train.on_nan=skip", cwd=tmp_path, env=ONE_THREAD)
    done = next(p for p in (tmp_path / "outputs" / "pretrain").iterdir() if p != run)
    train_row = next(r for r in csv.DictReader(open(done / "metrics.csv")) if r["split"] == "train")
    assert int(train_row["skipped_batches"]) > 0 and (done / "summary.json").exists()


def test_learning_rate_that_overflows_the_optimizer_is_a_clean_error(tmp_path):
    # At lr=1e38 Adam's bias-corrected step (lr / 0.1) is no longer a float32: torch's per-tensor
    # AdamW raises on it (overflowed float32), the fused one (what stages use) writes inf into the
    # weights and the next loss is nan. Either way: a clean error that says to lower the LR.
    proc = ulmfit("pretrain", *FAST, "bidirectional=fwd", "schedule.lr=1e38", cwd=tmp_path, env=ONE_THREAD, check=False)
    assert proc.returncode == 2
    assert_clean_error(proc, "Training stopped", "Lower schedule.lr")
    assert "overflowed float32" in proc.stderr or "the loss became nan at step 1" in proc.stderr


# ---- 11. the disk fills up during training, through the console script ---------------------------------

class SmallDisk:
    """A folder whose disk can be made (nearly) full: a real tmpfs when this test may mount one
    (root), else the write-counting fault injector of tests/faults/sitecustomize.py."""

    def __init__(self, root: Path, kind: str):
        self.root, self.kind = root, kind

    def leave(self, n_bytes: int) -> dict:
        """Leave n_bytes of room for the next run; returns the environment that run needs."""
        if self.kind == "tmpfs":
            with open(self.root / "filler", "ab") as f:
                f.write(b"\1" * max(shutil.disk_usage(self.root).free - n_bytes, 0))
            return dict(ONE_THREAD)
        return {**ONE_THREAD, "PYTHONPATH": str(FAULTS), "ULMFIT_FAULT_ENOSPC": f"{self.root}:{n_bytes}"}

    def fill(self) -> None:
        fd = os.open(self.root / "filler", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\1" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)

    def free_up(self) -> None:
        (self.root / "filler").unlink(missing_ok=True)


@pytest.fixture(params=["injected", "tmpfs"])
def small_disk(request, tmp_path):
    root = tmp_path / "disk"
    root.mkdir()
    if request.param == "injected":
        yield SmallDisk(root, "injected")
        return
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(root)], capture_output=True).returncode:
        pytest.skip("mount -t tmpfs is not allowed here")
    try:
        yield SmallDisk(root, "tmpfs")
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)


@pytest.mark.integration
def test_full_disk_during_training_keeps_the_last_checkpoint_and_earlier_runs(small_disk, tmp_path):
    out = small_disk.root / "outputs"
    args = [*FAST, "bidirectional=fwd", "checkpoint.every_steps=5", f"outputs_root={out}"]
    ulmfit("pretrain", *args, cwd=tmp_path, env=ONE_THREAD)  # an earlier run on the same disk
    earlier = next((out / "pretrain").iterdir())
    before = files_of(earlier)
    size = max(p.stat().st_size for p in (earlier / "checkpoints" / "last").glob("*.pt"))

    # Room for one progress checkpoint (step 5) but not the next (step 10).
    proc = ulmfit("pretrain", *args, cwd=tmp_path, env=small_disk.leave(int(1.5 * size)), check=False)
    run = next(p for p in (out / "pretrain").iterdir() if p != earlier)
    assert proc.returncode == 2
    assert_clean_error(proc, "No space left on the device while writing", "fwd-000000010.pt",
                       "the last complete checkpoint was kept", f"resume={run}")
    assert len(error_lines(proc)) == 1 and "Logging error" not in proc.stderr
    assert [p.name for p in (run / "checkpoints" / "last").iterdir()] == ["fwd-000000005.pt"]
    assert load_checkpoint(run / "checkpoints" / "last" / "fwd-000000005.pt")["trainer"]["loop"]["global_step"] == 5
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")] and not (run / "summary.json").exists()
    assert files_of(earlier) == before  # the earlier run is untouched

    if small_disk.kind == "tmpfs":  # no room at all: refused before Hydra writes anything
        small_disk.fill()
        proc = ulmfit("pretrain", *args, cwd=tmp_path, env=ONE_THREAD, check=False)
        assert proc.returncode == 2
        assert_clean_error(proc, "No space left on the device holding", f"outputs_root={out}")
        assert len(list((out / "pretrain").iterdir())) == 2

    # With room again, the run continues from its checkpoint and finishes.
    small_disk.free_up()
    ulmfit("pretrain", f"resume={run}", cwd=tmp_path, env=ONE_THREAD)
    assert (run / "summary.json").exists() and files_of(earlier) == before


# ---- 12. CUDA out of memory while training the classifier, through the console script -----------------

def test_cuda_out_of_memory_in_train_clf_gives_batch_size_advice(tmp_path):
    env = {**ONE_THREAD, "PYTHONPATH": str(FAULTS), "ULMFIT_FAULT_CUDA_OOM": "1"}
    proc = ulmfit("train-clf", *FAST, "lm=null", "bidirectional=fwd", "unfreeze=none", cwd=tmp_path, env=env, check=False)
    assert proc.returncode == 2
    assert_clean_error(proc, "The GPU ran out of memory (CUDA out of memory. Tried to allocate 20.00 GiB",
                       "Lower train.bs, train.max_len")
    run = next((tmp_path / "outputs" / "train-clf").iterdir())
    assert "ran out of memory" in (run / "train.log").read_text() and not (run / "summary.json").exists()


# ---- 12. a read-only outputs directory -------------------------------------------------------------

def test_read_only_outputs_dir_is_a_clean_error_and_keeps_earlier_runs(tmp_path):
    """outputs_root= on a read-only file system (a tmpfs remounted ro when root may mount; else a
    chmod 555 folder, which binds a non-root user)."""
    root = tmp_path / "ro"
    root.mkdir()
    out = root / "outputs"
    if os.geteuid() == 0:
        if not shutil.which("mount") or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(root)],
                                                       capture_output=True).returncode:
            pytest.skip("root ignores chmod and mount -t tmpfs is not allowed here")
        (out / "pretrain" / "earlier").mkdir(parents=True)
        (out / "pretrain" / "earlier" / "summary.json").write_text("{}")
        assert subprocess.run(["mount", "-o", "remount,ro", str(root)], capture_output=True).returncode == 0
        undo = ["umount", "-l", str(root)]
    else:
        (out / "pretrain" / "earlier").mkdir(parents=True)
        (out / "pretrain" / "earlier" / "summary.json").write_text("{}")
        out.chmod(0o555), (out / "pretrain").chmod(0o555)
        undo = None
    try:
        before = files_of(out)
        proc = ulmfit("pretrain", *FAST, "bidirectional=fwd", f"outputs_root={out}", cwd=tmp_path, env=ONE_THREAD,
                      check=False)
        assert proc.returncode == 2
        assert_clean_error(proc, "outputs_root=", "writable")
        assert len(error_lines(proc)) == 1
        assert files_of(out) == before
    finally:
        if undo:
            subprocess.run(undo, capture_output=True)
        else:
            out.chmod(0o755), (out / "pretrain").chmod(0o755)


def test_a_step_with_overflowed_gradients_does_not_make_the_epoch_grad_norm_inf(monkeypatch):
    """fp16's GradScaler skips a step whose gradients overflowed; its infinite norm is left out of
    the epoch's mean gradient norm instead of turning metrics.csv's grad_norm into inf."""
    norms = iter([2.0, float("inf"), 4.0])
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, max_norm: torch.tensor(next(norms)))
    history = _trainer("stop", set(), []).fit(_Batches(3), [Phase(epochs=1, trainable=[True])])
    row = next(r for r in history if r["split"] == "train")
    assert row["grad_norm"] == pytest.approx(3.0)
