"""callbacks= (conf/callbacks/, training/callbacks.py): early stopping and keep-the-best-epoch on
known sequences of validation scores, their state across a stop and resume, the checks made before
training (misspelt key, unknown metric, class not found), a user's own callback class from a
--config-dir folder, and, end to end on the embedded sample, that a stopped-early / best-epoch run
is a finished one whose summary.json reports the chosen epoch and scores that epoch's model on test,
the same after SIGTERM + resume= as uninterrupted."""
from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import assert_clean_error, ulmfit
from ulmfit_cli.config import compose
from ulmfit_cli.errors import UserError
from ulmfit_cli.stages.lm import METRICS as LM_METRICS
from ulmfit_cli.stages.train_clf import validation_metrics
from ulmfit_cli.stages.wiring import configured_callbacks
from ulmfit_cli.training.callbacks import EarlyStopping, KeepBest
from ulmfit_cli.training.loop import StepOut, Trainer
from ulmfit_cli.training.param_groups import Phase


# -- the callbacks' logic on known sequences ------------------------------------------------------
class FakeTrainer:
    def __init__(self, total_epochs: int):
        self.total_epochs, self.stop_asked_at, self.report, self.epoch = total_epochs, None, {}, 0

    def request_stop(self):
        self.stop_asked_at = self.epoch


def feed(cb, values: list[float], total: int | None = None) -> FakeTrainer:
    """Epoch-end rows with val `loss` = values[i] (and `accuracy` the same), until a stop is asked."""
    tr = FakeTrainer(total or len(values) + 2)
    for epoch, v in enumerate(values, 1):
        tr.epoch = epoch
        cb.on_epoch_end(tr, [{"epoch": epoch, "split": "train", "loss": 9.0},
                             {"epoch": epoch, "split": "valid", "loss": v, "accuracy": v}])
        if tr.stop_asked_at is not None:
            break
    return tr


@pytest.mark.parametrize("values, patience, min_delta, stop_at, best_epoch", [
    ([1.0, 0.9, 0.95, 0.91, 0.8, 0.7], 2, 0.0, 4, 2),  # 2 epochs without a lower loss after epoch 2
    ([1.0, 0.9, 0.95, 0.85, 0.86, 0.87], 2, 0.0, 6, 4),  # the improvement at 4 resets the count
    ([1.0, 0.9, 0.95, 0.85, 0.86, 0.87], 3, 0.0, None, 4),  # patience not run out by the last epoch
    ([1.0, 0.99, 0.985, 0.98, 0.5], 2, 0.02, 3, 1),  # smaller steps than min_delta are no improvement
    ([1.0, 1.0, 0.9], 1, 0.0, 2, 1),  # equal is not better
    ([1.0, math.nan, 0.9, math.inf], 1, 0.0, 2, 1),  # a non-finite score never improves
])
def test_early_stopping_stops_after_patience_epochs_without_improvement(values, patience, min_delta, stop_at,
                                                                        best_epoch):
    cb = EarlyStopping("val_loss", patience=patience, min_delta=min_delta)
    tr = feed(cb, values)
    assert tr.stop_asked_at == stop_at and cb.stopped_epoch == stop_at and cb.best_epoch == best_epoch
    cb.on_train_end(tr)
    assert tr.report["early_stopping"] == {"monitor": "val_loss", "stopped_early": stop_at is not None,
                                           "stopped_epoch": stop_at, "best_epoch": best_epoch,
                                           "best_val_loss": values[best_epoch - 1]}


def test_early_stopping_on_the_last_epoch_is_no_early_stop():
    tr = feed(EarlyStopping("val_loss", patience=1), [1.0, 0.9, 0.95], total=3)
    assert tr.stop_asked_at is None  # the run ended there anyway


def test_mode_auto_follows_the_metric_and_max_looks_for_higher():
    assert EarlyStopping("val_accuracy").mode == "max" and EarlyStopping("val_f1_macro").mode == "max"
    assert {EarlyStopping(m).mode for m in ("val_loss", "val_error", "val_perplexity")} == {"min"}
    cb = EarlyStopping("val_accuracy", patience=1)
    assert feed(cb, [0.5, 0.7, 0.6, 0.9]).stop_asked_at == 3 and cb.best == 0.7
    cb = EarlyStopping("val_accuracy", patience=1, mode="min")
    assert feed(cb, [0.5, 0.7, 0.6]).stop_asked_at == 2


@pytest.mark.parametrize("kwargs, needle", [
    ({"mode": "lowest"}, "mode=lowest is not one of min, max, auto"),
    ({"monitor": "val_auc"}, "cannot tell whether val_auc is better higher or lower"),
    ({"patience": 0}, "patience must be at least 1"),
    ({"min_delta": -0.1}, "min_delta at least 0"),
])
def test_bad_settings_are_user_errors(kwargs, needle):
    with pytest.raises(UserError, match=needle):
        EarlyStopping(**kwargs)


def test_keep_best_keeps_the_first_best_epochs_weights():
    weights = {e: {"w": torch.full((2,), float(e))} for e in range(1, 6)}

    class Tr(FakeTrainer):
        def weights(self):
            return copy.deepcopy(weights[self.epoch])

        def restore_weights(self, w, epoch):
            self.restored = (w, epoch)

        @property
        def state(self):
            return type("S", (), {"epoch": self.epoch})

    cb, tr = KeepBest("val_loss"), Tr(5)
    for epoch, v in enumerate([0.9, 0.7, 0.8, 0.7, 0.75], 1):
        tr.epoch = epoch
        cb.on_epoch_end(tr, [{"epoch": epoch, "split": "valid", "loss": v}])
    cb.on_train_end(tr)
    w, epoch = tr.restored
    assert epoch == 2 and torch.equal(w["w"], weights[2]["w"])  # the tie at epoch 4 keeps epoch 2
    assert tr.report["keep_best"] == {"monitor": "val_loss", "epoch": 2, "val_loss": 0.7}


# -- in the Trainer: stop, restore, and resume --------------------------------------------------
VAL = [1.0, 0.8, 0.9, 0.85, 0.95, 0.7, 0.6, 0.5]  # best epoch 2, then 3 epochs without improvement


class Batches:
    def epoch(self, epoch):
        return iter(range(3))

    def __len__(self):
        return 3


class EpochWeights:
    """Keeps the weights at every epoch's end; asks a signal-style stop after `stop_after` epochs."""

    def __init__(self, stop_after: int | None = None):
        self.at, self.stop_after, self.saved, self.train_end = {}, stop_after, None, 0

    def on_epoch_end(self, trainer, rows):
        self.at[trainer.state.epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        if trainer.state.epoch == self.stop_after:
            self.saved = copy.deepcopy(trainer.state_dict())
            trainer.stopping = True

    def on_train_end(self, trainer):
        self.train_end += 1


def trainer_with(*callbacks) -> Trainer:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def step(forward, i):
        return StepOut((forward(torch.ones(1, 2) * (i + 1)) - 3).pow(2).sum(), 1)

    tr = Trainer(model, opt, [0.05], lambda i, n: 1.0, step, lambda m: {"loss": VAL[tr.state.epoch - 1]},
                 device=torch.device("cpu"), callbacks=callbacks)
    return tr


def test_trainer_stops_early_and_puts_back_the_best_epochs_weights():
    seen = EpochWeights()
    tr = trainer_with(EarlyStopping("val_loss", patience=3), KeepBest("val_loss"), seen)
    history = tr.fit(Batches(), [Phase([True], 8)])
    assert tr.state.epoch == 5 and len(history) == 10 and not tr.stopping and seen.train_end == 1
    assert tr.weights_epoch == 2 and tr.report["keep_best"]["epoch"] == 2
    assert tr.report["early_stopping"]["stopped_epoch"] == 5
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, seen.at[2][k]) and not torch.equal(v, seen.at[5][k])


def test_a_signal_stop_is_no_end_of_training():
    seen = EpochWeights(stop_after=3)
    tr = trainer_with(KeepBest("val_loss"), seen)
    tr.fit(Batches(), [Phase([True], 8)])
    assert tr.state.epoch == 3 and seen.train_end == 0 and tr.weights_epoch is None


@pytest.mark.parametrize("cut_after", [1, 3, 5])  # before, during the wait, and when the stop was decided
def test_callback_state_resumes_to_the_same_stop_and_best_epoch(cut_after):
    ref = trainer_with(EarlyStopping("val_loss", patience=3), KeepBest("val_loss"), EpochWeights())
    ref.fit(Batches(), [Phase([True], 8)])

    cut = EpochWeights(stop_after=cut_after)
    trainer_with(EarlyStopping("val_loss", patience=3), KeepBest("val_loss"), cut).fit(Batches(), [Phase([True], 8)])
    assert set(cut.saved["callbacks"]) == {"EarlyStopping", "KeepBest"}
    resumed = trainer_with(EarlyStopping("val_loss", patience=3), KeepBest("val_loss"), EpochWeights())
    resumed.load_state_dict(cut.saved)
    history = resumed.fit(Batches(), [Phase([True], 8)])
    untimed = [[{k: v for k, v in r.items() if k not in ("throughput", "elapsed_s")} for r in h]
               for h in (history, ref.state.history)]
    assert untimed[0] == untimed[1] and resumed.report == ref.report and resumed.weights_epoch == 2
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, ref.model.state_dict()[k])


# -- checks before training ---------------------------------------------------------------------
def callbacks_of(*overrides: str, stage: str = "train_clf", metrics=None):
    cfg = compose(stage, list(overrides))
    return configured_callbacks(cfg, metrics or validation_metrics(False))


def test_no_callbacks_by_default_and_the_two_shipped_ones_by_name():
    for stage in ("pretrain", "finetune_lm", "train_clf"):
        assert OmegaConf.to_container(compose(stage, []).callbacks) == {}
    es, kb = callbacks_of("callbacks=[early_stopping,keep_best]", "callbacks.early_stopping.patience=1",
                          "callbacks.keep_best.monitor=val_accuracy")
    assert isinstance(es, EarlyStopping) and es.patience == 1 and es.monitor == "val_loss"
    assert isinstance(kb, KeepBest) and kb.monitor == "val_accuracy" and kb.mode == "max"
    assert callbacks_of("callbacks=[keep_best]", "callbacks.keep_best.monitor=val_perplexity", stage="finetune_lm",
                        metrics=LM_METRICS)[0].mode == "min"


@pytest.mark.parametrize("overrides, needles", [
    (["callbacks=[early_stopping]", "+callbacks.early_stopping.patiense=2"],
     ["callbacks.early_stopping", "patiense", "monitor, patience, min_delta, mode"]),
    (["callbacks=[keep_best]", "callbacks.keep_best.monitor=val_perplexity"],
     ["monitor=val_perplexity", "val_loss, val_accuracy, val_error"]),
    (["+callbacks.mine._target_=nowhere.Nothing"], ["callbacks.mine._target_=nowhere.Nothing cannot be imported",
                                                    "PYTHONPATH"]),
    (["+callbacks.mine.patience=2"], ["callbacks.mine has no _target_"]),
])
def test_bad_callback_settings_are_refused_before_training(overrides, needles):
    with pytest.raises(UserError) as exc:
        callbacks_of(*overrides)
    for n in needles:
        assert n in str(exc.value)


# -- end to end on the embedded sample ----------------------------------------------------------
MY_CB = '''
import json
from pathlib import Path


class EpochLog:
    """Writes every validation loss it sees to `path`, and stops after epoch `stop_at`."""

    def __init__(self, path: str, stop_at: int = 0):
        self.path, self.stop_at = Path(path), stop_at

    def on_epoch_end(self, trainer, rows):
        with self.path.open("a") as f:
            f.write(json.dumps({"epoch": rows[-1]["epoch"], "loss": rows[-1]["loss"]}) + "\\n")
        if rows[-1]["epoch"] == self.stop_at:
            trainer.request_stop()

    def on_train_end(self, trainer):
        trainer.report["epoch_log"] = {"epochs_seen": trainer.state.epoch}
'''

COMMON = ["experiment=quickstart", "progress=none", "lm=null", "train.bs=16", "threads=1"]
ARGS = [*COMMON, "train.epochs=12", "dataset.max_docs=400", "checkpoint.every_steps=7"]
BOTH = ["callbacks=[early_stopping,keep_best]", "callbacks.early_stopping.patience=2", "bidirectional=both"]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def valid_rows(run: Path, direction: str) -> list[dict]:
    import csv

    return [r for r in csv.DictReader(open(run / "metrics.csv")) if r["direction"] == direction]


@pytest.mark.integration
def test_a_users_own_callback_from_a_config_dir(tmp_path):
    (tmp_path / "mycb.py").write_text(MY_CB)
    (tmp_path / "myconf" / "callbacks").mkdir(parents=True)
    (tmp_path / "myconf" / "callbacks" / "my_cb.yaml").write_text(
        f"my_cb:\n  _target_: mycb.EpochLog\n  path: {tmp_path / 'seen.jsonl'}\n  stop_at: 2\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    ulmfit("train-clf", "--config-dir", "myconf", "callbacks=[my_cb]", *COMMON, "train.epochs=4", "dataset.max_docs=200",
           "bidirectional=fwd", "hydra.run.dir=outputs/mine", cwd=tmp_path, env=env)
    seen = [json.loads(line) for line in (tmp_path / "seen.jsonl").read_text().splitlines()]
    rows = [r for r in valid_rows(tmp_path / "outputs" / "mine", "fwd") if r["split"] == "valid"]
    assert [s["epoch"] for s in seen] == [1, 2] == [int(r["epoch"]) for r in rows]  # its stop after epoch 2
    assert [s["loss"] for s in seen] == pytest.approx([float(r["loss"]) for r in rows], rel=1e-5)
    assert summary(tmp_path / "outputs" / "mine")["results"]["fwd"]["epoch_log"] == {"epochs_seen": 2}

    bad = ulmfit("train-clf", "--config-dir", "myconf", "callbacks=[my_cb]", "+callbacks.my_cb.stop_after=1", *COMMON,
                 cwd=tmp_path, env=env, check=False)
    assert_clean_error(bad, "callbacks.my_cb", "stop_after", "path, stop_at")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("ref")
    ulmfit("train-clf", *ARGS, *BOTH, "hydra.run.dir=outputs/ref", cwd=cwd)
    return cwd / "outputs" / "ref"


@pytest.mark.integration
def test_early_stopping_ends_a_finished_run_after_patience_epochs_without_improvement(uninterrupted):
    s = summary(uninterrupted)
    for direction in ("fwd", "bwd"):
        es = s["results"][direction]["early_stopping"]
        rows = [r for r in valid_rows(uninterrupted, direction) if r["split"] == "valid"]
        losses = [float(r["loss"]) for r in rows]
        assert es["stopped_early"] and es["stopped_epoch"] == len(rows) < 12, es
        best = min(range(len(losses)), key=losses.__getitem__)
        assert es["best_epoch"] == best + 1 == len(rows) - 2  # patience=2: two epochs after the best, then stop
        assert all(v >= losses[best] for v in losses[best + 1:])
    assert "test_accuracy" in s["results"]["ensemble"]


@pytest.mark.integration
def test_keep_best_scores_the_best_validation_epochs_model_on_test(uninterrupted):
    s = summary(uninterrupted)
    for direction in ("fwd", "bwd"):
        res = s["results"][direction]
        rows = valid_rows(uninterrupted, direction)
        best = res["keep_best"]["epoch"]
        assert best == res["early_stopping"]["best_epoch"]
        chosen = next(r for r in rows if r["split"] == "valid" and int(r["epoch"]) == best)
        assert res["val_loss"] == pytest.approx(float(chosen["loss"]), rel=1e-5) == res["keep_best"]["val_loss"]
        assert res["val_accuracy"] == pytest.approx(float(chosen["accuracy"]), rel=1e-5)
        test_row = next(r for r in rows if r["split"] == "test")
        assert int(test_row["epoch"]) == best and float(test_row["accuracy"]) == pytest.approx(res["test_accuracy"])
        scored = json.loads(ulmfit("evaluate", f"run={uninterrupted}", "split=test", f"direction={direction}",
                                   cwd=uninterrupted).stdout)
        assert scored["accuracy"] == pytest.approx(res["test_accuracy"]) and scored["loss"] == pytest.approx(
            res["test_loss"], rel=1e-4)
    both = json.loads(ulmfit("evaluate", f"run={uninterrupted}", "split=test", cwd=uninterrupted).stdout)
    assert both["accuracy"] == pytest.approx(s["results"]["ensemble"]["test_accuracy"])


def progress_steps(run: Path, direction: str) -> list[int]:
    return [int(p.stem.split("-")[1]) for p in (run / "checkpoints" / "last").glob(f"{direction}-*.pt")]


@pytest.mark.integration
def test_sigterm_and_resume_choose_the_same_epochs_as_an_uninterrupted_run(tmp_path, uninterrupted):
    import time

    run = tmp_path / "outputs" / "cut"
    exe = Path(sys.executable).with_name("ulmfit")
    proc = subprocess.Popen([str(exe), "train-clf", *ARGS, *BOTH, f"hydra.run.dir={run}"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not any(s >= 42 for s in progress_steps(run, "fwd")):  # mid epoch 3 of fwd: past its first best
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130 and not (run / "summary.json").exists(), out

    ulmfit("train-clf", f"resume={run}", cwd=tmp_path)
    ref, got = summary(uninterrupted)["results"], summary(run)["results"]
    assert ref["fwd"]["keep_best"]["epoch"] < 3, "the cut (mid epoch 3) should come after fwd's best epoch"
    for direction in ("fwd", "bwd"):
        for key in ("early_stopping", "keep_best"):
            a, b = got[direction][key], ref[direction][key]
            assert a.keys() == b.keys() and a["monitor"] == b["monitor"], (direction, key)
            assert all(a[k] == pytest.approx(b[k], rel=1e-5) for k in a if k != "monitor"), (direction, a, b)
    for direction in ("fwd", "bwd", "ensemble"):
        for key in ("val_accuracy", "test_accuracy", "test_loss"):
            assert got[direction][key] == pytest.approx(ref[direction][key], rel=1e-5), (direction, key)


@pytest.mark.integration
def test_lm_stage_saves_the_chosen_epochs_weights(tmp_path):
    """mode=max on perplexity picks the worse epoch 1 whatever the data does: the saved LM must be
    epoch 1's (its end-of-epoch progress checkpoint), and summary.json epoch 1's figures."""
    ulmfit("finetune-lm", "experiment=quickstart", "progress=none", "pretrained=null", "train.epochs=2",
           "dataset.max_docs=200", "threads=1", "bidirectional=fwd", "callbacks=[keep_best]",
           "callbacks.keep_best.monitor=val_perplexity", "callbacks.keep_best.mode=max", "hydra.run.dir=outputs/lm",
           cwd=tmp_path)
    run = tmp_path / "outputs" / "lm"
    res = summary(run)["results"]["fwd"]
    rows = [r for r in valid_rows(run, "fwd") if r["split"] == "valid"]
    assert float(rows[0]["perplexity"]) > float(rows[1]["perplexity"])  # else mode=max would pick epoch 2
    assert res["keep_best"] == {"monitor": "val_perplexity", "epoch": 1, "val_perplexity": pytest.approx(
        float(rows[0]["perplexity"]), rel=1e-5)} and res["epochs"] == 2
    assert res["val_perplexity"] == pytest.approx(float(rows[0]["perplexity"]), rel=1e-5)
    saved = torch.load(run / "checkpoints" / "fwd.pt", weights_only=True)["model"]
    epoch_ends = sorted((run / "checkpoints" / "last").glob("fwd-*.pt"))
    first, last = (torch.load(p, weights_only=True)["trainer"]["model"] for p in epoch_ends)
    assert all(torch.equal(saved[k], first[k]) for k in first)
    assert not all(torch.equal(saved[k], last[k]) for k in last)

    bad = ulmfit("finetune-lm", "experiment=quickstart", "progress=none", "pretrained=null", "callbacks=[keep_best]",
                 "callbacks.keep_best.monitor=val_error", cwd=tmp_path, check=False)
    assert_clean_error(bad, "monitor=val_error", "val_loss, val_accuracy, val_perplexity")
