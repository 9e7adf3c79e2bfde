"""More bad input (issue 8): each is a one-paragraph error naming the thing and the fix, or is handled."""
from __future__ import annotations

import csv
import errno
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import assert_clean_error, FAST, ulmfit
from ulmfit_cli import cli
from ulmfit_cli.training.loop import NonFiniteLoss, StepOut, Trainer
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


def _trainer(on_nan, nan_at, saved):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(m, i):
        loss = m(torch.ones(1, 2)).sum() ** 2
        return StepOut(loss * float("nan") if i in nan_at else loss, 1)

    tr = Trainer(model, opt, [0.1], lambda i, n: 1.0, step, lambda m: {"loss": 0.0}, device=torch.device("cpu"),
                 on_nan=on_nan, on_step=lambda t: saved.append(t.state.global_step))
    return tr


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint():
    saved = []
    tr = _trainer("stop", {3}, saved)
    with pytest.raises(NonFiniteLoss) as exc:
        tr.fit(_Batches(6), [Phase(epochs=1, trainable=[True])])
    assert exc.value.step == 3 and saved == [1, 2, 3]  # steps 0..2 trained (and were checkpointable)
    err = cli.as_user_error(exc.value)
    assert isinstance(err, cli.UserError)
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
