"""`ulmfit pretrain|finetune-lm|train-clf [overrides]`: the training stages as Hydra apps.

Each stage has one primary config (conf/pretrain.yaml, ...) and one recipe (ulmfit_cli/stages/).
argv is rewritten so Hydra sees `ulmfit-<stage> <overrides/flags>`, and every Hydra flag keeps
working (-m, --cfg job, --help, hydra.run.dir=..., hydra/launcher=...). Before Hydra writes
anything, a run directory holding an earlier run, an unwritable outputs root and `resume=` are
dealt with; then each job makes the run context and runs the recipe.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from .. import command_line, config, distributed, extras, runtime, sweep_stop
from ..data.tokenizers import TOKENIZERS
from ..errors import SweepStopped, UserError, print_error, reraise_for_user
from ..reporting.objective import check_objective, objective_value
from ..reporting.trackers import check_trackers, misplaced_tracker_keys
from ..stages import finetune_lm, pretrain, train_clf
from ..stages.context import RunContext, has_outputs
from ..training import param_groups, schedules
from .resume import expand_resume

log = logging.getLogger("ulmfit")

STAGES = {
    # subcommand: (primary config, recipe)
    "pretrain": ("pretrain", pretrain),
    "finetune-lm": ("finetune_lm", finetune_lm),
    "train-clf": ("train_clf", train_clf),
}


def log_to_files(message: str) -> None:
    """Record an error in train.log only: the terminal gets the one-paragraph message."""
    record = logging.getLogger("ulmfit").makeRecord("ulmfit", logging.ERROR, __file__, 0, message, None, None)
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(record)


def refuse_existing_run_dir(argv: list[str]) -> None:
    """Hydra writes .hydra/ into the run dir before the job starts: check before it does."""
    d = command_line.argv_value(argv, "hydra.run.dir")
    if d and has_outputs(Path(d)) and command_line.argv_value(argv, "resume", "null") == "null":
        raise UserError(
            f"hydra.run.dir={d} already holds the outputs of an earlier run; ulmfit never overwrites them.",
            "Pick a new directory (or leave hydra.run.dir unset), or continue it with resume=<that dir>.",
        )


# Hydra launcher/sweeper options that come from a plugin package (the sweeps extra), by module.
SUBMITIT = "hydra_plugins.hydra_submitit_launcher"
PLUGINS = {
    "hydra/launcher": {"joblib": "hydra_plugins.hydra_joblib_launcher", "submitit_local": SUBMITIT,
                       "submitit_slurm": SUBMITIT, "submitit_slurm_ddp": SUBMITIT, "submitit_slurm_gpu": SUBMITIT},
    "hydra/sweeper": {"optuna": "hydra_plugins.hydra_optuna_sweeper"},
}


def plugin_choices(argv: list[str]) -> list[tuple[str, str]]:
    """The (group, option) pairs of PLUGINS that argv picks, directly or through an experiment
    file's `override /hydra/...` defaults."""
    picked = []
    for a in argv:
        key, _, value = a.lstrip("+~").partition("=")
        if key in PLUGINS:
            picked.append((key, value))
        elif key == "experiment" and (f := Path(config.conf_dir()) / "experiment" / f"{value}.yaml").is_file():
            entries = [e for e in OmegaConf.load(f).get("defaults") or [] if OmegaConf.is_dict(e)]
            groups = [(k.removeprefix("override /"), str(v)) for e in entries for k, v in e.items()]
            picked += [(group, option) for group, option in groups if group in PLUGINS]
    return picked


def check_plugins(argv: list[str], installed=extras.module_installed) -> None:
    """Without its plugin, Hydra only says the option is not found; name the package to install."""
    for group, option in plugin_choices(argv):
        module = PLUGINS[group].get(option)
        if module and not installed(module):
            package = module.removeprefix("hydra_plugins.").replace("_", "-")
            raise UserError(
                f"{group}={option} needs Hydra's {package} plugin, which is not installed in this environment.",
                "Install the sweeps extra: pip install 'ulmfit-cli[sweeps]' (from a checkout: pip install -e '.[sweeps]').",
            )


MIN_FREE_BYTES = 1 << 16  # what Hydra writes before the job starts (.hydra/, train.log), with room to spare


def check_outputs_writable(argv: list[str], subcommand: str) -> None:
    """Hydra creates the run dir and writes .hydra/ before the job starts: a path through a regular
    file, a read-only directory, or a disk without room for those few files, is a clean error."""
    given = [a for a in argv if a.startswith(("outputs_root=", "hydra.run.dir=", "hydra.sweep.dir="))]
    for a in given or ["outputs_root=outputs"]:
        key, value = a.split("=", 1)
        p = Path(value) / subcommand if key == "outputs_root" else Path(value)  # where the run dir goes
        parent = next(q for q in [p, *p.parents] if q.exists())  # "." or "/" at the latest
        if not parent.is_dir():
            raise UserError(f"{key}={value}: {parent} is a file, so no run directory can be made under it.",
                            f"Point {key}= at a directory (or a path that does not exist yet).")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"{key}={value}: {parent.resolve()} is read-only (or not ours), so no run "
                            "directory can be made in it; earlier runs there are left as they are.",
                            f"Point {key}= at a writable directory, or make that one writable.")
        free = shutil.disk_usage(parent).free
        if free < MIN_FREE_BYTES:
            raise UserError(f"No space left on the device holding {key}={value} ({free} bytes free in "
                            f"{parent.resolve()}); not even the run directory could be written.",
                            "Free some space or set outputs_root= to another disk.")


def finished_job(cfg, run_dir: Path) -> dict | None:
    """A sweep continued with resume=auto (resume=<sweep dir>): a job that finished before is kept
    as it is, its summary the job's result."""
    if not (cfg.resume == "auto" and HydraConfig.get().mode == RunMode.MULTIRUN and (run_dir / "summary.json").exists()):
        return None
    log.info("resume=auto: %s finished before (summary.json); kept as it is", run_dir)
    return json.loads((run_dir / "summary.json").read_text())


def check_knobs_read(cfg, overrides: list[str]) -> None:
    """A knob set on the command line that the chosen option never reads (schedule.cut_frac with
    schedule=constant) would train as if it were not there: a sweep over it, identical jobs. Each
    group's options say what they read (their registry); an unknown option name fails here too."""
    given = {o.lstrip("+~").split("=", 1)[0] for o in overrides if "=" in o}

    def knobs(group: str) -> set[str]:
        return {g.removeprefix(f"{group}.") for g in given if g.startswith(f"{group}.")}

    ignored = [(f"schedule.{k}", fix) for k, fix in schedules.ignored_knobs(cfg.schedule, knobs("schedule"))]
    if "unfreeze" in cfg:
        ignored += [(f"unfreeze.{k}", fix) for k, fix in param_groups.ignored_knobs(cfg.unfreeze, knobs("unfreeze"))]
    by_tokenizer = [(f"tokenizer.{k}", fix)
                    for k, fix in TOKENIZERS.ignored_knobs(cfg.tokenizer.name, knobs("tokenizer"))]
    ignored += by_tokenizer
    if ignored:
        raise UserError(f"{', '.join(k for k, _ in ignored)} {'has' if len(ignored) == 1 else 'have'} no effect "
                        f"with schedule={cfg.schedule.name} (discriminative={cfg.schedule.discriminative})"
                        + (f" and unfreeze={cfg.unfreeze.name}" if "unfreeze" in cfg else "")
                        + (f" and tokenizer={cfg.tokenizer.name}" if by_tokenizer else "")
                        + f": the run would train as if {'it were' if len(ignored) == 1 else 'they were'} not set.",
                        "; ".join(f"{k}: {fix}" for k, fix in ignored) + f", or drop {'it' if len(ignored) == 1 else 'them'}.")


def run_job(subcommand: str, cfg) -> dict | float:
    """One Hydra job of a stage: start its processes (distributed=ddp), or join the process group
    (under torchrun), make the run context and run the stage's recipe."""
    check_objective(cfg)
    check_knobs_read(cfg, list(HydraConfig.get().overrides.task))
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        sweep_stop.check_not_stopped(command_line.job_sweep_dir(run_dir, HydraConfig.get().sweep.subdir))
    summary = finished_job(cfg, run_dir)
    if summary is None and distributed.wants_launch(cfg):  # distributed=ddp: this job starts the processes
        check_trackers(cfg)  # rank 0 opens them; a tracker that cannot start fails here, before torchrun
        summary = distributed.launch(cfg, subcommand, list(HydraConfig.get().overrides.task), run_dir)
    if summary is None:
        ranks = distributed.setup(cfg, run_dir)  # one process: no group to join
        ok = False
        try:
            runtime.set_threads(cfg.threads)
            runtime.seed_everything(cfg.seed)
            runtime.set_deterministic(cfg.deterministic)
            with RunContext.open(cfg, run_dir, ranks) as ctx, runtime.stop_on_signals(ctx.stop, ddp=ranks.enabled):
                summary = STAGES[subcommand][1].run(ctx)
            ok = True
        finally:
            distributed.cleanup(ok)
    # objective=<metric>: a float for an optimising sweeper (Optuna); else the summary dict
    return objective_value(summary, cfg.objective) if cfg.objective else summary


def multirun_first(argv: list[str]) -> list[str]:
    """-m/--multirun anywhere on the line, moved where Hydra's parser accepts it (before the
    overrides): `ulmfit train-clf experiment=quickstart -m schedule.cut_frac=0.1,0.2` is a sweep."""
    flags = [a for a in argv if a in command_line.MULTIRUN_FLAGS]
    return flags[:1] + [a for a in argv if a not in command_line.MULTIRUN_FLAGS] if flags else argv


# Hydra's mode flags: one at most (Hydra itself raises a bare ValueError).
MODE_FLAGS = {"-m": "--multirun", "--multirun": "--multirun", "-r": "--run", "--run": "--run", "-c": "--cfg",
              "--cfg": "--cfg", "-i": "--info", "--info": "--info", "-sc": "--shell-completion",
              "--shell-completion": "--shell-completion"}


def one_mode_flag(argv: list[str]) -> None:
    modes = sorted({MODE_FLAGS[a] for a in argv if a in MODE_FLAGS})
    if len(modes) > 1:
        raise UserError(f"{' and '.join(modes)} were both given; Hydra takes one of --run, --multirun (-m), "
                        "--cfg, --info and --shell-completion at a time.",
                        "Drop all but one (to see a sweep's config: --cfg job without -m).")


def run_stage(subcommand: str, argv: list[str]) -> int:
    config.register()
    config_name = STAGES[subcommand][0]
    one_mode_flag(argv)
    argv = multirun_first(argv)
    if os.environ.get(distributed.CHILD_ENV) != "1":  # started by distributed=ddp: the parent job checked these
        refuse_existing_run_dir(argv)
        check_outputs_writable(argv, subcommand)
        argv = expand_resume(subcommand, argv)
        misplaced_tracker_keys(argv)
        check_plugins(argv)
    argv = distributed.rewrite_argv(argv)  # under torchrun: ranks > 0 write nothing

    def task(cfg):
        try:
            try:
                return run_job(subcommand, cfg)
            except (OSError, RuntimeError) as e:  # RuntimeError: NonFiniteLoss, torch.OutOfMemoryError
                reraise_for_user(e, Path(HydraConfig.get().runtime.output_dir))
        except UserError as e:
            log_to_files(str(e))
            if (code := distributed.worker_exit_code(e)) is not None:  # reported once, by another process
                sys.exit(code)
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                raise  # the sweep records this job as failed and goes on
            print_error(e, cfg.verbose)
            sys.exit(e.exit_code)

    sys.argv = [f"ulmfit-{subcommand}"] + argv
    app = hydra.main(config_path=config.conf_dir(), config_name=config_name, version_base="1.3")(task)
    try:
        app()
    except SweepStopped as e:  # raised past Hydra's error report, which would exit 1
        print_error(UserError(str(e)))
        return e.exit_code
    return 0


