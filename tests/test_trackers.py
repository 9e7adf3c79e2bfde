"""Experiment trackers (logger=tensorboard|mlflow|wandb), checked with each tracker's own files or server.

TensorBoard's event files are read back with tensorboard's EventAccumulator; W&B runs offline and its
run file is read back record by record; MLflow is a real `mlflow server` on 127.0.0.1 (integration
tier: it takes a while to start), read back through MlflowClient. The clear-error checks need none
of the packages' servers and run in seconds.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import FAST, assert_clean_error, ulmfit
from ulmfit_cli import config, extras
from ulmfit_cli.errors import UserError
from ulmfit_cli.reporting.run_files import MetricsWriter
from ulmfit_cli.reporting.trackers import TrackedMetrics, check_trackers

ONE_DIR = [*FAST, "lm=null", "bidirectional=fwd", "threads=1"]
TINY = ["experiment=quickstart", "schedule=stlr", "lm=null", "bidirectional=fwd", "progress=none", "train.epochs=1", "unfreeze=none",
        "dataset.max_docs=100", "train.bs=16", "train.max_steps_per_epoch=3", "threads=1"]
EXTRA = "pip install -e '.[tracking]'"


def needs(*modules: str):
    missing = [m for m in modules if not extras.module_installed(m)]
    return pytest.mark.skipif(bool(missing), reason=f"{missing} not installed ({EXTRA})")


def only_run(cwd: Path, stage: str = "train-clf") -> Path:
    (run,) = (cwd / "outputs" / stage).iterdir()
    return run


def read_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the config group -------------------------------------------------------------------------------
def test_logger_selects_one_or_more_trackers_each_with_its_schema():
    assert config.compose("train_clf", []).logger == {"tensorboard": None, "mlflow": None, "wandb": None}
    cfg = config.compose("train_clf", ["logger=[tensorboard,mlflow]", "logger.mlflow.tracking_uri=http://h:1"])
    assert cfg.logger.tensorboard.save_dir is None and cfg.logger.wandb is None
    assert cfg.logger.mlflow.tracking_uri == "http://h:1" and cfg.logger.mlflow.log_artifacts is True
    assert config.compose("pretrain", ["logger=[csv,wandb]"]).logger.wandb.mode is None
    with pytest.raises(Exception, match="tracking_ur"):  # a misspelt key fails before any work
        config.compose("train_clf", ["logger=mlflow", "logger.mlflow.tracking_ur=x"])


def test_a_tracker_key_without_its_tracker_is_a_clear_error():
    from ulmfit_cli.commands.hydra_app import run_stage

    with pytest.raises(UserError, match=r"logger.mlflow.tracking_uri configures the mlflow tracker.*logger=mlflow"):
        run_stage("train-clf", [*ONE_DIR, "logger.mlflow.tracking_uri=http://127.0.0.1:1"])


# -- a tracker failing mid-run ----------------------------------------------------------------------
class FlakyTracker:
    name, label = "flaky", "Flaky"

    def __init__(self):
        self.rows = 0

    def log_row(self, row):
        self.rows += 1
        if self.rows == 2:
            raise ConnectionError("server went away")

    def finish(self, summary, files):
        raise AssertionError("a dropped tracker is not called again")

    def close(self, status):
        raise AssertionError("a dropped tracker is not called again")


def test_a_tracker_failing_mid_run_warns_once_and_metrics_csv_keeps_every_row(tmp_path, caplog):
    flaky = FlakyTracker()
    metrics = TrackedMetrics(MetricsWriter(tmp_path / "metrics.csv", stage="pretrain"), [flaky])
    with caplog.at_level(logging.WARNING, logger="ulmfit"):
        for step in range(1, 5):
            metrics({"direction": "fwd", "epoch": 1, "step": step, "split": "train", "loss": 1.0 / step})
        metrics.finish({"results": {}}, [])
        metrics.close(None)
    assert metrics.rows() == 4 and flaky.rows == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Flaky" in warnings[0] and "server went away" in warnings[0]
    assert "metrics.csv keeps every row" in warnings[0]


# -- clear errors before training ------------------------------------------------------------------
def shadow(tmp_path: Path, package: str) -> dict:
    """An environment in which `import <package>` fails as it does where the package is not installed."""
    fake = tmp_path / "shadow" / package
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(f"raise ImportError(\"No module named '{package}'\")\n")
    return {"PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])}


def assert_nothing_trained(cwd: Path) -> None:
    runs = list((cwd / "outputs" / "train-clf").glob("*")) if (cwd / "outputs").exists() else []
    for run in runs:
        assert not (run / "metrics.csv").exists() and not (run / "checkpoints").exists()
        assert not (run / "config.yaml").exists() and not (run / "summary.json").exists()


@pytest.mark.parametrize("tracker,module", [("tensorboard", "tensorboard"), ("mlflow", "mlflow"), ("wandb", "wandb")])
def test_a_missing_tracker_package_names_the_extra_to_install(monkeypatch, tracker, module):
    monkeypatch.setitem(sys.modules, module, None)  # `import <module>` now fails as if it were not installed
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    cfg = config.compose("train_clf", [f"logger={tracker}"])
    with pytest.raises(UserError, match=rf"logger={tracker} needs the `{module}` package") as err:
        check_trackers(cfg)
    assert EXTRA in str(err.value)


@needs("tensorboard")
def test_a_missing_tracker_package_stops_the_run_before_anything_is_written(tmp_path):
    """End to end: exit 2, one paragraph, no run files; TensorBoard, opened first, is closed again."""
    proc = ulmfit("train-clf", *ONE_DIR, "logger=[tensorboard,mlflow]", cwd=tmp_path, env=shadow(tmp_path, "mlflow"),
                  check=False)
    assert proc.returncode == 2
    assert_clean_error(proc, "logger=mlflow needs the `mlflow` package", EXTRA)
    assert_nothing_trained(tmp_path)


@needs("mlflow")
@pytest.mark.parametrize("how", ["run, config key", pytest.param("sweep, environment", marks=pytest.mark.integration)])
def test_an_unreachable_mlflow_server_is_one_paragraph_before_training(tmp_path, how):
    """A closed port on 127.0.0.1: exit 2 with one paragraph naming the URI and where it came from, in
    seconds, before any job trains; a sweep stops before its first job."""
    uri = f"http://127.0.0.1:{closed_port()}"
    if how.startswith("run"):
        args, env, source = [*ONE_DIR, "logger.mlflow.tracking_uri=" + uri], {}, "logger.mlflow.tracking_uri"
    else:
        args, env, source = ["-m", *ONE_DIR, "seed=0,1"], {"MLFLOW_TRACKING_URI": uri}, "$MLFLOW_TRACKING_URI"
    t0 = time.time()
    proc = ulmfit("train-clf", *args, "logger=mlflow", cwd=tmp_path, env=env, check=False)
    assert proc.returncode == 2
    assert_clean_error(proc, f"no MLflow tracking server answers at {uri} (from {source})", "mlflow server")
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, proc.stderr
    assert_nothing_trained(tmp_path)
    assert not list(tmp_path.glob("outputs/multirun/*/*/0"))  # no sweep job started
    assert time.time() - t0 < 120  # not MLflow's minutes of retries


@needs("wandb")
def test_a_bad_wandb_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(UserError, match=r"\$WANDB_MODE=sometimes is not a W&B mode.*offline"):
        check_trackers(config.compose("train_clf", ["logger=wandb"]))


# -- TensorBoard and W&B (offline): one classifier run logging to both --------------------------------
@pytest.fixture(scope="module")
def tb_wandb_run(tmp_path_factory):
    if not (extras.module_installed("tensorboard") and extras.module_installed("wandb")):
        pytest.skip(f"tensorboard/wandb not installed ({EXTRA})")
    cwd = tmp_path_factory.mktemp("tb_wandb")
    env = {"WANDB_MODE": "offline", "WANDB_PROJECT": "from-env", "WANDB_SILENT": "true"}
    proc = ulmfit("train-clf", *ONE_DIR, "logger=[tensorboard,wandb]", "logger.wandb.tags=[smoke]", cwd=cwd, env=env)
    run = only_run(cwd)
    return run, read_rows(run), json.loads((run / "summary.json").read_text()), proc


@pytest.mark.integration
def test_tensorboard_event_files_hold_every_row_the_final_figures_and_the_hparams(tb_wandb_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run, rows, summary, _ = tb_wandb_run
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    for split, column in (("train", "loss"), ("valid", "loss"), ("valid", "accuracy"), ("test", "accuracy")):
        mine = [(int(r["step"]), float(r[column])) for r in rows if r["split"] == split]
        theirs = [(e.step, e.value) for e in acc.Scalars(f"fwd/{split}/{column}")]
        assert [s for s, _ in theirs] == [s for s, _ in mine] and mine
        assert [v for _, v in theirs] == pytest.approx([v for _, v in mine], rel=1e-5)
    assert acc.Scalars("final/fwd.val_accuracy")[-1].value == pytest.approx(summary["results"]["fwd"]["val_accuracy"])
    start = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["stage"].string_value == "train-clf" and hparams["dataset.name"].string_value == "sample"
    assert hparams["train.bs"].number_value == 16


def wandb_records(path: Path):
    """The protobuf records of a W&B run file: W&B's 7-byte header (":W&B", magic, version), then
    LevelDB's log format (32 KiB blocks of chunks: crc32, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 2):
            pending = chunk
        elif kind in (3, 4):
            pending += chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


@pytest.mark.integration
def test_wandb_offline_run_holds_the_rows_summary_config_and_predictions(tb_wandb_run):
    run, rows, summary, proc = tb_wandb_run
    (run_file,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    ids = json.loads((run / "trackers.json").read_text())["wandb"]
    assert run_file.name == f"run-{ids['id']}.wandb" and ids["project"] == "from-env"  # WANDB_PROJECT honoured
    history, final, files, meta = [], {}, set(), None
    for r in wandb_records(run_file):
        kind = r.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            final.update({i.key: json.loads(i.value_json) for i in r.summary.update if i.key})
        elif kind == "files":
            files |= {f.path for f in r.files.files}
        elif kind == "run":
            meta = r.run
    assert meta.display_name == "train-clf sample fwd" and meta.job_type == "train-clf"
    assert set(meta.tags) == {"train-clf", "sample", "fwd", "smoke"}
    config = {i.key: json.loads(i.value_json) for i in meta.config.update}
    assert config["train"]["bs"] == 16 and "logger" not in config
    valid = [r for r in rows if r["split"] == "valid"]
    logged = [h for h in history if "fwd/valid/accuracy" in h]
    assert [(h["fwd/step"], h["fwd/valid/accuracy"]) for h in logged] == \
        [(int(r["step"]), pytest.approx(float(r["accuracy"]))) for r in valid]
    assert final["fwd.test_accuracy"] == pytest.approx(summary["results"]["fwd"]["test_accuracy"])
    assert final["majority_test_accuracy"] == pytest.approx(summary["majority_test_accuracy"])
    assert {"predictions_test.csv", "summary.json"} <= files
    assert (run_file.parent / "files" / "predictions_test.csv").read_text() == (run / "predictions_test.csv").read_text()


# -- MLflow: a real tracking server ---------------------------------------------------------------
def free_port() -> int:
    return closed_port()


class MlflowServer:
    """`mlflow server` on 127.0.0.1 (sqlite store, temp dir): started, waited for, stopped."""

    def __init__(self, root: Path):
        self.root, self.uri = root, f"http://127.0.0.1:{free_port()}"
        self.log = open(root / "server.log", "w")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
             "--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1",
             "--port", self.uri.rsplit(":", 1)[1], "--workers", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, limit_s: float = 240) -> None:
        deadline = time.time() + limit_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise AssertionError(f"mlflow server did not start:\n{(self.root / 'server.log').read_text()[-3000:]}")
            time.sleep(1)

    def stop(self, signal: int = 15) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    if not extras.module_installed("mlflow"):
        pytest.skip(f"mlflow not installed ({EXTRA})")
    server = MlflowServer(tmp_path_factory.mktemp("mlflow_server"))
    try:
        server.wait()
        yield server
    finally:
        server.stop()


@pytest.mark.integration
@needs("hydra_plugins.hydra_joblib_launcher")
def test_mlflow_sweep_is_a_parent_run_with_a_child_per_job_across_processes(tmp_path, mlflow_server):
    """Two jobs in two joblib worker processes: each job's run is a child of the sweep's parent run,
    with the config as params, every metrics row as metric history, summary.json's figures and the
    predictions as an artifact. URI and experiment come from MLflow's own environment variables."""
    from mlflow.tracking import MlflowClient

    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri, "MLFLOW_EXPERIMENT_NAME": "trackers-test"}
    ulmfit("train-clf", "-m", *TINY, "schedule.cut_frac=0.1,0.2", "hydra/launcher=joblib",
           "hydra.launcher.n_jobs=2", "logger=mlflow", cwd=tmp_path, env=env, timeout=600)
    (sweep,) = (tmp_path / "outputs" / "multirun" / "train-clf").iterdir()
    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name("trackers-test")
    runs = client.search_runs([exp.experiment_id])
    parent_id = json.loads((sweep / "trackers.json").read_text())["mlflow"]["run_id"]
    (parent,) = [r for r in runs if r.info.run_id == parent_id]
    children = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id),
                      key=lambda r: r.data.tags["job"])
    assert len(runs) == 3 and len(children) == 2
    assert parent.info.status == "FINISHED" and [a.path for a in client.list_artifacts(parent_id)] == ["sweep.csv"]
    for job, (child, cut_frac) in enumerate(zip(children, ("0.1", "0.2"))):
        run_dir = sweep / str(job)
        rows, summary = read_rows(run_dir), json.loads((run_dir / "summary.json").read_text())
        assert child.info.run_name == f"train-clf sample fwd #{job}" and child.info.status == "FINISHED"
        assert {k: child.data.tags[k] for k in ("stage", "dataset", "direction")} == \
            {"stage": "train-clf", "dataset": "sample", "direction": "fwd"}
        assert child.data.params["schedule.cut_frac"] == cut_frac and child.data.params["train.bs"] == "16"
        history = client.get_metric_history(child.info.run_id, "fwd/train/loss")
        mine = [(int(r["step"]), float(r["loss"])) for r in rows if r["split"] == "train"]
        assert [(m.step, m.value) for m in history] == [(s, pytest.approx(v, rel=1e-5)) for s, v in mine]
        assert child.data.metrics["fwd.val_accuracy"] == pytest.approx(summary["results"]["fwd"]["val_accuracy"])
        assert sorted(a.path for a in client.list_artifacts(child.info.run_id)) == ["predictions_test.csv",
                                                                                   "summary.json"]
        local = client.download_artifacts(child.info.run_id, "predictions_test.csv", str(tmp_path / f"dl{job}"))
        assert Path(local).read_text() == (run_dir / "predictions_test.csv").read_text()


@pytest.mark.integration
@needs("tensorboard")
def test_only_rank_0_logs_under_ddp(tmp_path):
    """distributed=ddp with 2 CPU processes: one tracker run (one event file), holding rank 0's rows,
    which are already summed over the ranks."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ulmfit("pretrain", "experiment=quickstart", "progress=none", "bidirectional=fwd", "dataset.max_docs=300",
           "train.bs=8", "token_cache=off", "device=cpu", "threads=1", "train.epochs=1", "train.max_steps_per_epoch=5",
           "distributed=ddp", "distributed.nproc=2", "logger=tensorboard", cwd=tmp_path, timeout=600)
    run = only_run(tmp_path, "pretrain")
    assert len(list(tmp_path.rglob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    rows = [r for r in read_rows(run) if r["split"] == "valid"]
    assert [e.value for e in acc.Scalars("fwd/valid/perplexity")] == pytest.approx([float(r["perplexity"]) for r in rows])
    assert acc.Scalars("final/processes")[-1].value == 2


@pytest.mark.integration
@needs("mlflow")
def test_an_mlflow_server_gone_mid_run_is_warned_about_once_and_the_run_finishes(tmp_path):
    """The server stops once the run has opened its MLflow run: training, metrics.csv and summary.json
    go on as without a tracker; one warning says MLflow was dropped. (Its own server: it is killed.)"""
    server = MlflowServer(tmp_path)
    server.wait()
    exe = Path(sys.executable).with_name("ulmfit")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    proc = subprocess.Popen([str(exe), "train-clf", *TINY, "dataset.max_docs=300", "train.max_steps_per_epoch=null",
                             "train.epochs=3", "logger=mlflow",
                             f"logger.mlflow.tracking_uri={server.uri}"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while not list(tmp_path.glob("outputs/train-clf/*/trackers.json")):  # the MLflow run is open
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else ""
            time.sleep(0.2)
        server.stop(signal=9)  # at once, as a crashed server or a lost network
        assert not list(tmp_path.glob("outputs/train-clf/*/metrics.csv"))  # before the first row
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    assert proc.returncode == 0, out
    run = only_run(tmp_path)
    assert [r["epoch"] for r in read_rows(run) if r["split"] == "valid"] == ["1", "2", "3"]
    assert (run / "summary.json").exists() and (run / "predictions_test.csv").exists()
    warnings = [line for line in out.splitlines() if "MLflow: could not" in line]
    assert len(warnings) == 1 and "dropped for the rest of this run" in warnings[0], out
    assert "Traceback" not in out
