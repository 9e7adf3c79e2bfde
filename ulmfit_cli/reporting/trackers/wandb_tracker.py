"""logger=wandb: a Weights & Biases run per stage run; the jobs of a `-m` sweep share a W&B group.

Unset logger.wandb.* keys are left to W&B's own settings (WANDB_MODE, WANDB_PROJECT, WANDB_ENTITY,
WANDB_DIR, WANDB_API_KEY, `wandb login`), with ulmfit's defaults after them: project
`ulmfit-<stage>`, files under the run dir. Each direction's rows get their own x-axis
(`fwd/step`, `bwd/step`): a bidirectional classifier trains bwd after fwd, from step 0 again,
and W&B's own step may only grow.
"""
from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path

from ...config import WandbConfig
from ...errors import UserError
from .common import TRACKERS, RunInfo, brief, env_or, final_metrics, import_tracker, row_metrics

MODES = ("online", "offline", "disabled", "shared")


def mode_of(wb_cfg) -> str:
    mode = env_or(wb_cfg.mode, "WANDB_MODE") or "online"
    if mode not in MODES and mode not in ("dryrun", "run"):  # W&B's older spellings of offline/online
        src = "logger.wandb.mode" if wb_cfg.mode else "$WANDB_MODE"
        raise UserError(f"logger=wandb: {src}={mode} is not a W&B mode.",
                        f"Use one of {', '.join(MODES)} (offline keeps the run on disk for `wandb sync`).")
    return mode


def check(wb_cfg) -> None:
    import_tracker("wandb", "wandb")
    mode_of(wb_cfg)


@TRACKERS.register("wandb", reads=tuple(f.name for f in fields(WandbConfig)), check=check)
def open_run(wb_cfg, cfg, info: RunInfo, ids: dict | None) -> "WandbRun":
    """A Weights & Biases run per stage run; the jobs of a -m sweep share a W&B group."""
    from omegaconf import OmegaConf

    wandb = import_tracker("wandb", "wandb")
    mode = mode_of(wb_cfg)
    where = Path(env_or(wb_cfg.dir, "WANDB_DIR") or info.run_dir).expanduser()
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("logger", None)
    try:
        where.mkdir(parents=True, exist_ok=True)
        run = wandb.init(
            project=env_or(wb_cfg.project, "WANDB_PROJECT") or f"ulmfit-{cfg.stage}",
            entity=wb_cfg.entity or None, dir=str(where), mode=mode, config=config,
            name=wb_cfg.run_name or info.name,
            group=env_or(wb_cfg.group, "WANDB_RUN_GROUP") or info.sweep_name, job_type=cfg.stage,
            tags=[info.stage, info.dataset, info.directions, *wb_cfg.tags],
            notes=f"{info.run_dir}", reinit="create_new",
            **({"id": ids["id"], "resume": "allow"} if ids and ids.get("id") else {}))
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - no key, no network, a bad setting: all the user's to fix
        raise UserError(f"logger=wandb could not start a run ({mode} mode): {brief(e)}. Nothing was trained.",
                        "Log in with `wandb login` (or set WANDB_API_KEY), run offline with WANDB_MODE=offline "
                        "(then `wandb sync`), or leave wandb out of logger=.") from e
    return WandbRun(run, wb_cfg.log_artifacts, info.run_dir)


class WandbRun:
    name = "wandb"
    label = "W&B"

    def __init__(self, run, log_artifacts: bool, run_dir: Path):
        self.run, self.log_artifacts, self.run_dir = run, log_artifacts, run_dir
        self.axes: set[str] = set()

    def ids(self) -> dict:
        return {"id": self.run.id, "project": self.run.project, "dir": str(self.run.dir)}

    def where(self) -> str:
        if self.run.offline:  # W&B warns when an offline run is asked for its URL
            return f"run {self.run.id}, offline in {Path(self.run.dir).parent} (`wandb sync` it)"
        return f"run {self.run.url}"

    def log_row(self, row: dict) -> None:
        step, metrics = row_metrics(row)
        direction = row.get("direction") or "fwd"
        if direction not in self.axes:  # each direction plots against its own step
            self.run.define_metric(f"{direction}/step")
            self.run.define_metric(f"{direction}/*", step_metric=f"{direction}/step")
            self.axes.add(direction)
        self.run.log({f"{direction}/step": step, **metrics})

    def finish(self, summary: dict, files: list[Path]) -> None:
        self.run.summary.update(final_metrics(summary))
        if self.log_artifacts:
            for f in files:  # a copy in the run's files dir: W&B would symlink (and warn about) one outside
                copy = Path(self.run.dir) / Path(f).name
                shutil.copyfile(f, copy)
                self.run.save(str(copy), base_path=str(self.run.dir), policy="now")

    def close(self, status: str) -> None:
        self.run.finish(exit_code={"FINISHED": 0, "KILLED": 130}.get(status, 1))
