"""`ulmfit SUBCOMMAND ...`: dispatch only.

Training subcommands are Hydra apps (one primary config each); the dispatcher rewrites argv
so Hydra sees `ulmfit-<stage> <overrides/flags>` and every Hydra flag keeps working.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from .errors import UserError, disk_error

HYDRA_APPS = {
    # subcommand: (primary config, module in ulmfit_cli.stages, help line)
    "pretrain": ("pretrain", "pretrain", "Stage 1: train a general-domain language model (e.g. WikiText-103)."),
    "finetune-lm": ("finetune_lm", "finetune_lm", "Stage 2: fine-tune the pretrained LM on the target task's text."),
    "train-clf": ("train_clf", "train_clf", "Stage 3: train the classifier on the fine-tuned encoder."),
}
TOOLS = {
    # subcommand: (module, help line)
    "pipeline": ("pipeline", "Run all three stages in one go, each in its own run dir (e.g. experiment=quickstart)."),
    "evaluate": ("evaluate", "Score a trained classifier (run=<dir>) on a split of its dataset."),
    "predict": ("predict", "Label texts from a file or stdin with a trained classifier (CSV or JSONL out)."),
    "download": ("download", "Fetch a corpus (wikitext103, imdb, trec6, ...), resumable and checksummed."),
    "report": ("report", "One table (and plots) for run dirs or a multirun sweep dir."),
    "import-fastai": ("import_fastai", "Turn fastai's pretrained AWD_LSTM (e.g. WT103 lstm_fwd.pth + itos) into a pretrain run."),
    "export-fastai": ("export_fastai", "Write a pretrain/finetune-lm run's LMs in fastai's layout (.pth + itos .pkl)."),
    "generate": ("generate", "Sample text from a trained language model (run=<pretrain or finetune-lm dir>)."),
}


def conf_dir() -> str:
    """conf/ beside the package in a checkout/editable install, else the copy shipped inside it."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "conf", here / "conf"):
        if (cand / "pretrain.yaml").exists():
            return str(cand)
    raise UserError("ulmfit's conf/ directory was not found next to the package.",
                    "Reinstall with `pip install -e .` from the repository root.")


def usage() -> str:
    lines = ["usage: ulmfit SUBCOMMAND [overrides | options]", "", "ULMFiT experiment runner (Howard & Ruder 2018).", "",
             "training stages (Hydra apps: key=value overrides, -m, --cfg job, --help, hydra.run.dir=...):"]
    lines += [f"  {name:<15}{h}" for name, (_, _, h) in HYDRA_APPS.items()]
    lines += ["", "tools:"]
    lines += [f"  {name:<15}{h}" for name, (_, h) in TOOLS.items()]
    lines += ["", "Run `ulmfit SUBCOMMAND --help` for its options."]
    return "\n".join(lines)


def print_error(err: UserError, verbose: bool = False) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {err}", markup=True)
    if verbose:
        import traceback

        traceback.print_exception(err)


def wants_verbose(argv: list[str]) -> bool:
    return any(a.lower() in ("verbose=true", "verbose=1", "++verbose=true") for a in argv) or \
        os.environ.get("ULMFIT_VERBOSE") == "1"


def as_user_error(e: Exception, run_dir: Path | None = None) -> Exception:
    """Disk full / read-only / permission problems, a diverged loss and GPU out-of-memory are the
    user's to fix, not a traceback; anything else is returned unchanged. `run_dir`: the training
    run's directory, named in the message (its newest checkpoint, how to resume)."""
    if type(e).__name__ == "NonFiniteLoss":
        kept = sorted((run_dir / "checkpoints" / "last").glob("*.pt"), key=lambda p: p.stat().st_mtime) if run_dir else []
        saved = (f"the last good checkpoint, {kept[-1]}, was kept" if kept else
                 "no checkpoint had been saved yet (checkpoint.every_steps=N saves one every N steps)") if run_dir \
            else "the last good checkpoint (checkpoints/last/) was kept"
        return UserError(f"Training stopped: the {e}; {saved}.",
                         "Lower schedule.lr, set train.clip=<e.g. 0.25>, or pass train.on_nan=skip to skip "
                         "such batches (counted in metrics.csv's skipped_batches).")
    if type(e).__name__ == "OutOfMemoryError":
        return UserError(f"The GPU ran out of memory ({str(e).splitlines()[0][:160]}).",
                         "Lower train.bs, train.max_len or train.eval_bs (predict/evaluate: bs=), or use "
                         "precision=bf16 / a larger GPU.")
    if isinstance(e, RuntimeError) and "without overflow" in str(e):  # an optimizer step of absurd size
        return UserError(f"Training stopped: a number overflowed float32 ({str(e).splitlines()[0][:120]}); "
                         "the learning rate is far too large for this model.",
                         "Lower schedule.lr (ULMFiT's are about 1e-3 to 1e-2).")
    if not isinstance(e, OSError):
        return e
    resume = f"resume={run_dir}" if run_dir else "resume=<run dir>"
    return disk_error(e, "the outputs", full_note="; the last complete checkpoint was kept (checkpoints are "
                      "written to a temp file and renamed)",
                      full_fix=f"Free some space or set outputs_root= to another disk, then {resume}.",
                      access_fix="Make the outputs directory writable or point outputs_root= at a writable directory.")


def reraise_for_user(e: Exception, run_dir: Path | None = None):
    """Inside `except`: raise `as_user_error(e)` from e, or re-raise e itself when it is not the user's to fix."""
    err = as_user_error(e, run_dir)
    if err is e:
        raise e
    raise err from e


def log_to_files(message: str) -> None:
    """Record an error in train.log only: the terminal gets the one-paragraph message."""
    record = logging.getLogger("ulmfit").makeRecord("ulmfit", logging.ERROR, __file__, 0, message, None, None)
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(record)


def refuse_existing_run_dir(argv: list[str]) -> None:
    """Hydra writes .hydra/ into the run dir before the job starts: check before it does."""
    from .stages.common import has_outputs

    resuming = any(a.startswith("resume=") and a != "resume=null" for a in argv)
    for a in argv:
        if a.startswith("hydra.run.dir="):
            d = Path(a.split("=", 1)[1])
            if has_outputs(d) and not resuming:
                raise UserError(
                    f"hydra.run.dir={d} already holds the outputs of an earlier run; ulmfit never overwrites them.",
                    "Pick a new directory (or leave hydra.run.dir unset), or continue it with resume=<that dir>.",
                )


MIN_FREE_BYTES = 1 << 16  # what Hydra writes before the job starts (.hydra/, train.log), with room to spare


def check_outputs_writable(argv: list[str], subcommand: str) -> None:
    """Hydra creates the run dir and writes .hydra/ before the job starts: a path through a regular
    file, a read-only directory, or a disk without room for those few files, is a clean error."""
    given = [a for a in argv if a.startswith(("outputs_root=", "hydra.run.dir=", "hydra.sweep.dir="))]
    for a in given or ["outputs_root=outputs"]:
        key, value = a.split("=", 1)
        p = Path(value) / subcommand if key == "outputs_root" else Path(value)  # where the run dir goes
        for parent in [p, *p.parents]:
            if parent.exists():
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
                break


def expand_resume(subcommand: str, argv: list[str]) -> list[str]:
    """`resume=<run dir>|auto`: re-run with that run's own overrides, in that run's directory."""
    value = next((a.split("=", 1)[1] for a in argv if a.startswith("resume=")), None)
    if value in (None, "null", "None", ""):
        return argv
    if any(a in ("-m", "--multirun") or a.lower() == "hydra.mode=multirun" for a in argv):
        if value == "auto":  # left to each job: it continues its own job dir when re-run (a requeued SLURM job)
            return argv
        raise UserError(f"resume={value} continues one run; it cannot be combined with -m.",
                        "In a sweep use resume=auto: a job that is re-run (e.g. requeued by SLURM) then continues "
                        "from its own directory's checkpoints.")
    if value == "auto":
        root = Path(next((a.split("=", 1)[1] for a in argv if a.startswith("outputs_root=")), "outputs")) / subcommand
        unfinished = [p for p in root.glob("*") if (p / "checkpoints" / "last").is_dir() and not (p / "summary.json").exists()]
        if not unfinished:
            raise UserError(f"resume=auto found no unfinished `{subcommand}` run with saved progress under {root}.",
                            "Pass resume=<run dir>, or start a new run without resume=.")
        run = max(unfinished, key=lambda p: p.stat().st_mtime)
    else:
        run = Path(value)
    saved = run / ".hydra" / "overrides.yaml"
    if not (run / "checkpoints").is_dir() or not saved.exists():
        raise UserError(f"resume={value}: {run} is not a `{subcommand}` run with saved progress (no checkpoints/ or .hydra/).",
                        "Pass the directory of an interrupted run (outputs/<stage>/<time>).")
    if (run / "summary.json").exists():
        raise UserError(f"resume={value}: that run already finished ({run}/summary.json exists).",
                        "Nothing to resume; start a new run instead.")
    from omegaconf import OmegaConf

    drop = ("resume=", "hydra.run.dir=")
    original = [o for o in OmegaConf.load(saved) if not str(o).startswith(drop)]
    rest = [a for a in argv if not a.startswith(drop)]
    return [*original, *rest, f"resume={run}", f"hydra.run.dir={run}"]


def run_stage(subcommand: str, argv: list[str]) -> int:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from . import config, distributed, resolvers

    config.register()
    resolvers.register()
    config_name, module, _ = HYDRA_APPS[subcommand]
    if os.environ.get(distributed.CHILD_ENV) != "1":  # started by distributed=ddp: the parent job checked these
        refuse_existing_run_dir(argv)
        check_outputs_writable(argv, subcommand)
        argv = expand_resume(subcommand, argv)
    argv = distributed.rewrite_argv(argv)  # under torchrun: ranks > 0 write nothing

    def task(cfg):
        import importlib

        from .reporting.objective import check_objective, objective_value

        stage = importlib.import_module(f"ulmfit_cli.stages.{module}")
        try:
            try:
                check_objective(cfg)
                summary = None
                if distributed.wants_launch(cfg):  # distributed=ddp: this job starts the processes
                    summary = distributed.launch(cfg, subcommand, list(HydraConfig.get().overrides.task),
                                                 Path(HydraConfig.get().runtime.output_dir))
                if summary is None:
                    distributed.setup(cfg, Path(HydraConfig.get().runtime.output_dir))  # no-op on one process
                    ok = False
                    try:
                        summary = stage.run(cfg)
                        ok = True
                    finally:
                        distributed.cleanup(ok)
                # objective=<metric>: a float for an optimising sweeper (Optuna); else the summary dict
                return objective_value(summary, cfg.objective) if cfg.get("objective") else summary
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
    app = hydra.main(config_path=conf_dir(), config_name=config_name, version_base="1.3")(task)
    app()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    # A log line that cannot be written (a full disk) is not worth a traceback on the terminal:
    # the write that matters (a checkpoint) fails next and says so in one paragraph.
    logging.raiseExceptions = False
    try:
        if cmd in HYDRA_APPS:
            return run_stage(cmd, rest)
        if cmd in TOOLS:
            import importlib

            module = importlib.import_module(f"ulmfit_cli.commands.{TOOLS[cmd][0]}")
            try:
                return module.main(rest)
            except (OSError, RuntimeError) as e:
                reraise_for_user(e)
    except UserError as e:
        print_error(e, wants_verbose(rest))
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(f"ulmfit: unknown subcommand '{cmd}'.\n", file=sys.stderr)
    print(usage(), file=sys.stderr)
    return 2


def entry() -> None:
    sys.exit(main())
