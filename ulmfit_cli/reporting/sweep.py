"""One table for many runs: `collect_runs` (shared with `ulmfit report`) and the `SweepTable`
Hydra callback that writes `sweep.csv` into every multirun sweep directory.

Everything is read back from disk (`.hydra/overrides.yaml`, `summary.json`, `train.log`): with
process launchers (joblib, submitit) the jobs run elsewhere and Hydra hands the multirun-end
callback no job results.

A run's status:
  ok       summary.json exists (the stage writes it last);
  stopped  a signal stopped it after saving its progress (`resume=` continues it);
  failed   the job ended without it: Hydra reported the job failed (`.hydra/job_status.json`,
           written by the callback) or train.log holds an ERROR line, or the sweep is over;
  running  none of those (a job of a sweep still in progress, or a run killed without a trace).
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback

from ..command_line import job_sweep_dir
from ..errors import NOT_STARTED, STOPPED_BY_SIGNAL, Stopped, UserError
from ..fileutil import atomic_write_bytes, file_lock

log = logging.getLogger("ulmfit")

SWEEP_CSV = "sweep.csv"
JOB_STATUS = "job_status.json"  # in the job's .hydra/ folder, written by SweepTable.on_job_end
RUN_FILES = ("summary.json", "metrics.csv", "config.yaml", ".hydra/overrides.yaml")
SKIP_DIRS = {"checkpoints", "report", ".submitit", ".hydra", "__pycache__"}
# Order of the flattened metric columns: directions, then the figures within each.
DIRECTION_ORDER = ["fwd", "bwd", "ensemble"]
METRIC_ORDER = ["val_accuracy", "val_error", "test_accuracy", "test_error", "val_loss", "test_loss",
                "val_perplexity", "val_f1_micro", "val_f1_macro", "test_f1_micro", "test_f1_macro"]
LOG_ERROR = re.compile(r"^\[[^\]]*\]\[[^\]]*\]\[(?:ERROR|CRITICAL)\] - (.*)$")


# -- finding runs ------------------------------------------------------------------------------
def is_run_dir(path: Path) -> bool:
    return any((path / f).exists() for f in RUN_FILES)


def is_sweep_dir(path: Path) -> bool:
    return (path / "multirun.yaml").exists()


def find_run_dirs(path: Path | str, max_depth: int = 5) -> list[Path]:
    """A run dir itself, or every run dir below `path` (a sweep dir, a folder of runs, outputs/)."""
    path = Path(path)
    if is_run_dir(path) and not is_sweep_dir(path):
        return [path]
    found: list[Path] = []

    def walk(d: Path, depth: int) -> None:
        try:
            children = sorted(c for c in d.iterdir() if c.is_dir() and c.name not in SKIP_DIRS)
        except OSError:
            return
        for c in children:
            if is_run_dir(c):
                found.append(c)
            elif depth < max_depth:
                walk(c, depth + 1)

    walk(path, 1)
    return sorted(found, key=_natural_key)


def _natural_key(p: Path):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", str(p))]


def sweep_dir_of(run_dir: Path) -> Path | None:
    """The multirun directory a job dir belongs to (the nearest parent with multirun.yaml)."""
    for parent in list(run_dir.parents)[:4]:
        if is_sweep_dir(parent):
            return parent
    return None


# -- reading one run -----------------------------------------------------------------------------
def _load_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def split_override(o: str) -> tuple[str, str]:
    """'schedule.cut_frac=0.1' -> ('schedule.cut_frac', '0.1'); '+x=1' -> ('x', '1'); '~x' -> ('x', '<deleted>')."""
    o = str(o).strip()
    if "=" not in o:
        return o.lstrip("~+"), "<deleted>"
    key, value = o.split("=", 1)
    return key.lstrip("~+"), re.sub(r"\\(.)", r"\1", value)  # Hydra escapes sweep values: cuda\:0


def read_overrides(run_dir: Path) -> list[str]:
    data = _load_yaml(run_dir / ".hydra" / "overrides.yaml")
    return [str(o) for o in data] if isinstance(data, list) else []


def job_num(run_dir: Path) -> int | None:
    status = _load_json(run_dir / ".hydra" / JOB_STATUS) or {}
    if isinstance(status.get("job"), int):
        return status["job"]
    hydra_cfg = _load_yaml(run_dir / ".hydra" / "hydra.yaml") or {}
    num = ((hydra_cfg.get("hydra") or {}).get("job") or {}).get("num")
    if isinstance(num, int):
        return num
    return int(run_dir.name) if run_dir.name.isdigit() else None


def last_error_line(log_path: Path) -> str | None:
    """The message of the last ERROR/CRITICAL record of a train.log (Hydra's default format)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        m = LOG_ERROR.match(line)
        if m:
            return m.group(1).strip()
    for line in reversed(lines):  # a custom log format: any line that says ERROR
        if "ERROR" in line:
            return line.strip()
    return None


def flatten(tree: dict) -> dict[str, Any]:
    """{'fwd': {'val_accuracy': .9}} -> {'fwd.val_accuracy': .9}: nested keys joined by dots."""
    out: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                visit(f"{prefix}.{k}" if prefix else str(k), v)
        elif prefix:
            out[prefix] = value

    visit("", tree or {})
    return out


def flatten_results(results: dict) -> dict[str, float]:
    """The numbers of `results`, flattened (`fwd.val_accuracy`); flags and text left out."""
    return {k: float(v) for k, v in flatten(results).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def metric_sort_key(name: str):
    direction, _, metric = name.partition(".")
    d = DIRECTION_ORDER.index(direction) if direction in DIRECTION_ORDER else len(DIRECTION_ORDER)
    m = METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER)
    return d, direction, m, metric


def read_run(run_dir: Path, finished: bool = False) -> dict:
    """One row: stage, status, error, overrides, final metrics, wall time, seed."""
    run_dir = Path(run_dir)
    overrides = read_overrides(run_dir)
    summary = _load_json(run_dir / "summary.json")
    config = _load_yaml(run_dir / "config.yaml") or {}
    marker = _load_json(run_dir / ".hydra" / JOB_STATUS) or {}
    row: dict[str, Any] = {
        "run_dir": str(run_dir),
        "job": job_num(run_dir) if sweep_dir_of(run_dir) else None,
        "stage": (summary or {}).get("stage") or config.get("stage") or _stage_from_path(run_dir),
        # what the run read, whether it came from an override, an experiment or the stage's default
        "dataset": (summary or {}).get("dataset") or (config.get("dataset") or {}).get("name"),
        "tag": config.get("tag"),
        "overrides_list": overrides,
        "overrides": " ".join(overrides),
        "error": None,
        "metrics": {},
        "wall_time_s": None,
    }
    seed = dict(split_override(o) for o in overrides).get("seed", config.get("seed"))
    row["seed"] = None if seed is None else str(seed)
    if summary is not None:
        row["status"] = "ok"
        lm = {f"lm.{k}": v for k, v in flatten_results(summary.get("lm_results", {})).items()}  # the LM under a classifier
        row["metrics"] = {**flatten_results(summary.get("results", {})), **flatten_results(summary.get("baselines", {})), **lm}
        row["wall_time_s"] = summary.get("wall_time_s")
        return row
    error = last_error_line(run_dir / "train.log")
    if marker.get("status") == "stopped" or (error or "").startswith((STOPPED_BY_SIGNAL, NOT_STARTED)):
        row["status"] = "stopped"  # by a signal, its progress saved: resume= continues it
        row["error"] = error or marker.get("error")
    elif marker.get("status") == "failed" or error or finished:
        row["status"] = "failed"
        row["error"] = error or marker.get("error") or "the job ended without writing summary.json"
    else:
        row["status"] = "running"
    return row


def _stage_from_path(run_dir: Path) -> str | None:
    for part in reversed(run_dir.parts):
        if part in ("pretrain", "finetune-lm", "train-clf"):
            return part
    return None


def swept_keys(sweep_dir: Path) -> list[str]:
    """Keys a multirun sweeps: `key=a,b` / range / glob on its command line, plus hydra.sweeper.params."""
    cfg = _load_yaml(sweep_dir / "multirun.yaml") or {}
    hydra_cfg = cfg.get("hydra") or {}
    task = ((hydra_cfg.get("overrides") or {}).get("task")) or []
    params = ((hydra_cfg.get("sweeper") or {}).get("params")) or {}
    candidates = [f"{k}={v}" for k, v in params.items()] + [str(t) for t in task]
    keys: list[str] = []
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create()
        for text in candidates:
            try:
                o = parser.parse_override(text)
            except Exception:  # noqa: BLE001 - fall back to the plain reading below
                continue
            if o.is_sweep_override():
                k = split_override(text)[0]
                if k not in keys:
                    keys.append(k)
    except ImportError:
        pass
    return keys


# -- many runs -----------------------------------------------------------------------------------
def collect_runs(dirs: Iterable[Path | str], finished: bool = False) -> pd.DataFrame:
    """One row per run found under `dirs` (run dirs, sweep dirs, folders of runs).

    Columns: run (a short label), job, stage, dataset (the corpus the run read), status, error, one column per swept/varying override
    key (the value as written on the command line), seed, the final metrics flattened from
    summary.json (`fwd.val_accuracy`, `ensemble.test_error`, `fwd.val_perplexity`, ...), wall_time_s,
    overrides (all of the run's overrides) and run_dir. `df.attrs` has 'keys' and 'metrics' (the
    column names of each kind). `finished=True` counts a run without summary.json as failed
    rather than running (the multirun is over).
    """
    run_dirs: list[Path] = []
    for d in dirs:
        d = Path(d)
        if not d.exists():
            raise UserError(f"{d}: no such directory.", "Pass a run dir, a sweep dir (outputs/multirun/<stage>/<time>) "
                                                        "or a folder of run dirs.")
        for r in find_run_dirs(d):
            if r.resolve() not in {x.resolve() for x in run_dirs}:
                run_dirs.append(r)
    rows = [read_run(r, finished=finished) for r in run_dirs]
    sweeps = {sweep_dir_of(Path(r["run_dir"])) for r in rows} - {None}

    # Override keys: those a sweep sweeps, and those whose value differs between runs.
    keys: list[str] = []
    for s in sorted(sweeps):
        keys += [k for k in swept_keys(s) if k not in keys]
    for r in rows:
        r["override_map"] = dict(split_override(o) for o in r["overrides_list"])
    order = list(dict.fromkeys(k for r in rows for k in r["override_map"]))
    keys += [k for k in order if len({r["override_map"].get(k) for r in rows}) > 1 and k not in keys]
    keys = [k for k in keys if k not in ("dataset", "tag")]  # their own columns, filled for every run

    metrics = sorted({m for r in rows for m in r["metrics"]}, key=metric_sort_key)
    labels = _labels(rows, sweeps)
    records = []
    for r, label in zip(rows, labels):
        rec = {"run": label, "job": r["job"], "stage": r["stage"], "dataset": r["dataset"], "status": r["status"],
               "error": r["error"], "tag": r["tag"]}
        rec.update({k: r["override_map"].get(k) for k in keys})
        rec["seed"] = r["override_map"].get("seed", r["seed"])
        rec.update({m: r["metrics"].get(m, math.nan) for m in metrics})
        rec.update({"wall_time_s": r["wall_time_s"], "overrides": r["overrides"], "run_dir": r["run_dir"]})
        records.append(rec)
    columns = ["run", "job", "stage", "dataset", "status", "error", "tag", *keys, *(["seed"] if "seed" not in keys else []),
               *metrics, "wall_time_s", "overrides", "run_dir"]
    df = pd.DataFrame.from_records(records, columns=columns)
    df["job"] = df["job"].astype("Int64")
    for m in [*metrics, "wall_time_s"]:
        df[m] = pd.to_numeric(df[m], errors="coerce")
    df.attrs["keys"] = keys
    df.attrs["metrics"] = metrics
    return df


def _labels(rows: list[dict], sweeps: set) -> list[str]:
    """Job number within one sweep; <sweep>/<job> across sweeps; else the shortest unique path."""
    labels = []
    for r in rows:
        d = Path(r["run_dir"])
        s = sweep_dir_of(d)
        if s is not None and r["job"] is not None:
            labels.append(str(r["job"]) if len(sweeps) == 1 else f"{s.name}/{r['job']}")
        else:
            labels.append(d.name)
    if len(set(labels)) < len(labels):  # the same name in two places: use more of the path
        paths = [Path(r["run_dir"]).resolve() for r in rows]
        common = Path(os.path.commonpath(paths)) if len(paths) > 1 else paths[0].parent
        labels = [str(p.relative_to(common)) if p != common else p.name for p in paths]
    return labels


def sweep_table(df: pd.DataFrame, sweep_dir: Path) -> pd.DataFrame:
    """The sweep.csv columns: job, swept keys, status, error, metrics, wall_time_s, overrides, run_dir."""
    keys, metrics = df.attrs.get("keys", []), df.attrs.get("metrics", [])
    out = df[["job", *keys, "status", "error", *metrics, "wall_time_s", "overrides", "run_dir"]].copy()
    out["run_dir"] = [os.path.relpath(p, sweep_dir) for p in out["run_dir"]]
    return out.sort_values("job", kind="stable", na_position="last")


def write_sweep_csv(sweep_dir: Path | str, finished: bool = False) -> Path:
    """Gather the job dirs of `sweep_dir` and (re)write `sweep_dir/sweep.csv` atomically."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / SWEEP_CSV
    with file_lock(sweep_dir / ".sweep.csv.lock"):  # jobs of a parallel launcher end at the same time
        text = sweep_table(collect_runs([sweep_dir], finished=finished), sweep_dir).to_csv(index=False).encode()
        atomic_write_bytes(path, lambda f: f.write(text))
    return path


# -- the Hydra callback ----------------------------------------------------------------------------
class SweepJobFailed(CompactHydraException):
    """A sweep job's UserError, re-labelled so Hydra ends the multirun with its one paragraph, not a traceback."""


class SweepTable(Callback):
    """`hydra.callbacks.sweep_table` in conf/_common.yaml: keeps `<sweep dir>/sweep.csv` up to date.

    on_job_end (in whichever process ran the job) records the job's status in .hydra/job_status.json
    and rewrites sweep.csv from disk under a lock, so the table exists even when Hydra ends a sweep
    that had a failed job by raising (it then skips on_multirun_end). on_multirun_end writes the
    final table, where a job without summary.json counts as failed.
    """

    def __init__(self, filename: str = SWEEP_CSV) -> None:
        self.filename = filename

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        """Hydra's basic sweeper saves <sweep dir>/multirun.yaml, other sweepers (Optuna) do not: the
        table needs it to find the sweep (job numbers, swept keys)."""
        try:
            from omegaconf import OmegaConf

            sweep_dir = Path(str(config.hydra.sweep.dir))
            if not is_sweep_dir(sweep_dir):
                sweep_dir.mkdir(parents=True, exist_ok=True)
                OmegaConf.save(config, sweep_dir / "multirun.yaml")
        except Exception as e:  # noqa: BLE001
            log.warning("sweep table: could not write multirun.yaml: %s", e)

    def on_job_end(self, config, job_return=None, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        try:
            if config.hydra.mode != RunMode.MULTIRUN:
                return
            job_dir = Path(str(config.hydra.runtime.output_dir))
            exc = job_return._return_value if job_return is not None and job_return.status == JobStatus.FAILED else None
            path = self._record(config, job_dir, job_sweep_dir(job_dir, config.hydra.sweep.subdir), exc, job_return)
            # a stopped job is the sweep stop's to report (ulmfit_cli/sweep_stop.py)
            if isinstance(exc, UserError) and not isinstance(exc, Stopped) and os.environ.get("HYDRA_FULL_ERROR") != "1":
                job_return.return_value = SweepJobFailed(
                    f"{exc}\n(job #{config.hydra.job.num} of the sweep; every job still ran, "
                    f"and {path} lists each one's status)")
        except Exception as e:  # noqa: BLE001 - a table must never break a sweep
            log.warning("sweep table: could not update %s: %s", self.filename, e)

    def _record(self, config, job_dir: Path, sweep_dir: Path, exc, job_return) -> Path:
        """The job's status in its .hydra/job_status.json (and its error in train.log), then sweep.csv."""
        error = None
        if exc is not None:
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if not last_error_line(job_dir / "train.log"):
                log.error("%s", error)  # into this job's train.log, where the report looks
        status = {"job": int(config.hydra.job.num), "status": "ok" if exc is None else (
                  "stopped" if isinstance(exc, Stopped) else "failed"), "error": error,
                  "overrides": list(job_return.overrides or []) if job_return is not None else []}
        (job_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        (job_dir / ".hydra" / JOB_STATUS).write_text(json.dumps(status, indent=2))
        return write_sweep_csv(sweep_dir)

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        try:
            sweep_dir = Path(str(config.hydra.sweep.dir))
            if not sweep_dir.is_dir():
                return
            path = write_sweep_csv(sweep_dir, finished=True)
            df = pd.read_csv(path)
            counts = df["status"].value_counts().to_dict()
            log.info("sweep table: %s (%s)", path, ", ".join(f"{n} {s}" for s, n in counts.items()))
        except Exception as e:  # noqa: BLE001
            log.warning("sweep table: could not write %s: %s", self.filename, e)
