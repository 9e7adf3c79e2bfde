"""logger=mlflow: an MLflow run per stage run; a `-m` sweep is a parent run with one child per job.

Only `MlflowClient` is used, never MLflow's global "active run": under Hydra's basic launcher the
jobs of a sweep run one after another in one process, and each must own its run. The tracking
URI and experiment come from logger.mlflow.*, else MLflow's own MLFLOW_TRACKING_URI,
MLFLOW_EXPERIMENT_NAME / MLFLOW_EXPERIMENT_ID, else MLflow's default store and `ulmfit-<stage>`.

Sweeps: `SweepTrackers.on_multirun_start` (in the process that starts the sweep) creates the parent
run and writes its id to `<sweep dir>/trackers.json`; each job, in whatever process or machine a
launcher (joblib, submitit) runs it, finds that file beside its own job dir and makes its run a
child (MLflow's `mlflow.parentRunId` tag), so the experiment's run list and compare view hold the
sweep as one expandable row.
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import time
from dataclasses import fields
from pathlib import Path
from urllib.parse import urlparse

from hydra.experimental.callback import Callback

from ...config import MlflowConfig
from ...errors import Stopped, UserError, print_error
from ...fileutil import read_json, write_json
from .common import RUN_IDS, TRACKERS, RunInfo, brief, env_or, final_metrics, flat_params, import_tracker, row_metrics

log = logging.getLogger("ulmfit")
PARAM_BATCH = 100  # MLflow takes at most 100 params per log_batch call
PARAM_MAX_LEN = 6000  # and a value of at most 6000 characters


def tracking_uri(ml_cfg) -> tuple[str, str]:
    """The tracking URI and where it came from (for the error message)."""
    import mlflow

    if ml_cfg.tracking_uri:
        return str(ml_cfg.tracking_uri), "logger.mlflow.tracking_uri"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"], "$MLFLOW_TRACKING_URI"
    return mlflow.get_tracking_uri(), "MLflow's default"


def probe(uri: str, source: str) -> None:
    """An http(s) tracking server must accept a connection: fail in seconds, not after MLflow's retries."""
    url = urlparse(uri)
    if url.scheme not in ("http", "https"):
        return
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=10).close()
    except OSError as e:
        raise UserError(f"logger=mlflow: no MLflow tracking server answers at {uri} (from {source}): "
                        f"{e.strerror or e}. Nothing was trained.",
                        "Start the server (e.g. `mlflow server --host 127.0.0.1 --port 5000`), point "
                        "logger.mlflow.tracking_uri= or $MLFLOW_TRACKING_URI at a running one, or leave mlflow "
                        "out of logger=.") from e


def check(ml_cfg) -> None:
    import_tracker("mlflow", "mlflow")
    probe(*tracking_uri(ml_cfg))


def connect(ml_cfg, stage: str):
    """(client, uri, experiment id): the server checked, the experiment found or created."""
    mlflow = import_tracker("mlflow", "mlflow")
    uri, source = tracking_uri(ml_cfg)
    probe(uri, source)
    try:
        client = mlflow.tracking.MlflowClient(tracking_uri=uri)
        name = env_or(ml_cfg.experiment_name, "MLFLOW_EXPERIMENT_NAME")
        if name is None and os.environ.get("MLFLOW_EXPERIMENT_ID"):
            return client, uri, client.get_experiment(os.environ["MLFLOW_EXPERIMENT_ID"]).experiment_id
        name = name or f"ulmfit-{stage}"
        return client, uri, experiment_id(client, name)
    except Exception as e:  # noqa: BLE001 - any failure to reach or use the store is the user's to fix
        raise UserError(f"logger=mlflow: the tracking store at {uri} (from {source}) refused the experiment: "
                        f"{brief(e)}. Nothing was trained.",
                        "Check logger.mlflow.tracking_uri / $MLFLOW_TRACKING_URI and the experiment name "
                        "(logger.mlflow.experiment_name / $MLFLOW_EXPERIMENT_NAME), or leave mlflow out of logger=.") from e


def experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # another job of the sweep created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


@TRACKERS.register("mlflow", reads=tuple(f.name for f in fields(MlflowConfig)), check=check)
def open_run(ml_cfg, cfg, info: RunInfo, ids: dict | None) -> "MlflowRun":
    """An MLflow run per stage run at logger.mlflow.tracking_uri; a -m sweep is a parent run with one
    child per job."""
    client, uri, exp = connect(ml_cfg, cfg.stage)
    parent = parent_run(info, uri)
    try:
        if ids and ids.get("run_id") and ids.get("tracking_uri") == uri:  # resume=: the same MLflow run goes on
            client.update_run(ids["run_id"], status="RUNNING")
            return MlflowRun(client, uri, ids["experiment_id"], ids["run_id"], ml_cfg.log_artifacts)
        if parent:
            exp = parent["experiment_id"]
        tags = {**info.tags(), **dict(ml_cfg.tags or {}),
                **({"mlflow.parentRunId": parent["run_id"]} if parent else {})}
        run = client.create_run(exp, run_name=ml_cfg.run_name or info.name, tags=tags)
        run_id = run.info.run_id
        log_params(client, run_id, flat_params(cfg))
    except Exception as e:  # noqa: BLE001
        raise UserError(f"logger=mlflow: could not start a run at {uri}: {brief(e)}. "
                        "Nothing was trained.", "Check the tracking server and logger.mlflow.* settings, or leave "
                        "mlflow out of logger=.") from e
    return MlflowRun(client, uri, exp, run_id, ml_cfg.log_artifacts)


def log_params(client, run_id: str, params: dict) -> None:
    from mlflow.entities import Param

    log_batches(client, run_id, "params", [Param(k, str(v)[:PARAM_MAX_LEN]) for k, v in params.items()], PARAM_BATCH)


def log_batches(client, run_id: str, kind: str, items: list, size: int) -> None:
    """MLflow's log_batch takes at most `size` params or 1000 metrics a call."""
    for i in range(0, len(items), size):
        client.log_batch(run_id, **{kind: items[i: i + size]})


def parent_run(info: RunInfo, uri: str) -> dict | None:
    """The sweep's parent run, when this job belongs to a sweep that made one on the same server."""
    if info.sweep_dir is None or not (info.sweep_dir / RUN_IDS).exists():
        return None
    parent = read_json(info.sweep_dir / RUN_IDS).get("mlflow")
    return parent if parent and parent.get("tracking_uri") == uri else None


class MlflowRun:
    name = "mlflow"
    label = "MLflow"

    def __init__(self, client, uri: str, experiment_id: str, run_id: str, log_artifacts: bool):
        self.client, self.uri, self.experiment_id, self.run_id = client, uri, experiment_id, run_id
        self.log_artifacts, self.last_step = log_artifacts, 0

    def ids(self) -> dict:
        return {"tracking_uri": self.uri, "experiment_id": self.experiment_id, "run_id": self.run_id}

    def where(self) -> str:
        if urlparse(self.uri).scheme in ("http", "https"):
            return f"run {self.uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return f"run {self.run_id} in experiment {self.experiment_id} at {self.uri} (mlflow ui --backend-store-uri {self.uri})"

    def log_row(self, row: dict) -> None:
        step, metrics = row_metrics(row)
        self.last_step = max(self.last_step, step)
        self._metrics(metrics, step)

    def finish(self, summary: dict, files: list[Path]) -> None:
        self._metrics(final_metrics(summary), self.last_step)
        if self.log_artifacts:
            for f in files:
                self.client.log_artifact(self.run_id, str(f))

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)

    def _metrics(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        log_batches(self.client, self.run_id, "metrics", [Metric(k, v, now, step) for k, v in metrics.items()], 1000)


class SweepTrackers(Callback):
    """`hydra.callbacks.trackers` (conf/_common.yaml): with logger=mlflow, a `-m` sweep gets one parent
    run, recorded in `<sweep dir>/trackers.json` for the jobs (in any process) to attach to."""

    def on_multirun_start(self, config, **kwargs) -> None:
        ml = (config.get("logger") or {}).get("mlflow")
        if ml is None:
            return
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        try:
            client, uri, exp = connect(ml, config.stage)
            run = client.create_run(exp, run_name=f"{config.stage} sweep {sweep_dir.name}",
                                    tags={"stage": config.stage, "dataset": str(config.dataset.name),
                                          "sweep": str(sweep_dir), "sweep_overrides": " ".join(sweep_overrides(config)),
                                          **dict(ml.tags or {})})
        except UserError as e:  # before any job: the usual one paragraph and exit code, not Hydra's traceback
            print_error(e, bool(config.get("verbose")))
            sys.exit(e.exit_code)
        except Exception as e:  # noqa: BLE001
            print_error(UserError(f"logger=mlflow: could not start the sweep's parent run at {uri}: "
                                  f"{brief(e)}.", "Check the tracking server, or leave mlflow "
                                  "out of logger=."), bool(config.get("verbose")))
            sys.exit(2)
        write_json(sweep_dir / RUN_IDS, {"mlflow": {"tracking_uri": uri, "experiment_id": exp,
                                                    "run_id": run.info.run_id}})
        log.info("MLflow: sweep parent run %s in experiment %s at %s", run.info.run_id, exp, uri)

    def on_job_end(self, config, job_return=None, **kwargs) -> None:
        """A failed job marks the parent FAILED now (KILLED: stopped by a signal): Hydra skips
        on_multirun_end after a failed job."""
        from hydra.core.utils import JobStatus

        if job_return is not None and job_return.status == JobStatus.FAILED:
            self._end(config, "KILLED" if isinstance(job_return._return_value, Stopped) else "FAILED")

    def on_multirun_end(self, config, **kwargs) -> None:
        self._end(config, None)

    def _end(self, config, status: str | None) -> None:
        ml = (config.get("logger") or {}).get("mlflow")
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        if ml is None or not (sweep_dir / RUN_IDS).exists():
            return
        try:
            from mlflow.tracking import MlflowClient

            from ..sweep import write_sweep_csv

            parent = read_json(sweep_dir / RUN_IDS)["mlflow"]
            client = MlflowClient(tracking_uri=parent["tracking_uri"])
            if status is None:  # the whole sweep ran: its table as the parent's artifact
                import pandas as pd

                table = write_sweep_csv(sweep_dir, finished=True)
                client.log_artifact(parent["run_id"], str(table))
                statuses = set(pd.read_csv(table)["status"])
                status = "FAILED" if "failed" in statuses else "KILLED" if "stopped" in statuses else "FINISHED"
            client.set_terminated(parent["run_id"], status)
        except Exception as e:  # noqa: BLE001 - the sweep's own outputs are all written already
            log.warning("MLflow: could not close the sweep's parent run: %s", brief(e))


def sweep_overrides(config) -> list[str]:
    try:
        return [str(o) for o in config.hydra.overrides.task]
    except Exception:  # noqa: BLE001
        return []
