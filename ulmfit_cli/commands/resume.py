"""`resume=`: continue a run, or a whole sweep, in its own directory with its own overrides.

- `resume=<run dir>`: that run again, its saved overrides, `hydra.run.dir=<run dir>`;
- `resume=auto`: the newest unfinished run of the stage under outputs_root;
- `resume=<sweep dir>`: that sweep again (`-m`, its overrides, `hydra.sweep.dir=<sweep dir>`,
  `resume=auto`): a finished job is skipped, a stopped one continues from its checkpoints and the
  jobs never started run;
- `-m ... resume=auto`: left to each job, which continues its own job dir (a requeued SLURM job).

Hydra numbers a sweep's jobs by the order of its swept values and rewrites each job's `.hydra/`
before the job runs, so a sweep dir that already holds jobs is only ever re-entered by the same
sweep: anything else would file new results under an old job's settings.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from .. import command_line
from ..errors import UserError
from ..stages.context import has_outputs
from ..sweep_stop import clear_stop

RERUN_KEYS = ("resume=", "hydra.run.dir=", "hydra.sweep.dir=")


def expand_resume(subcommand: str, argv: list[str]) -> list[str]:
    """argv with `resume=` turned into the run (or sweep) it continues; a sweep dir named by
    `hydra.sweep.dir=` is checked to be this sweep's before Hydra writes into it."""
    value = command_line.argv_value(argv, "resume")
    if value not in (None, "null", "None", "", "auto") and (Path(value) / "multirun.yaml").is_file():
        argv = resume_sweep(Path(value), argv)
    elif value not in (None, "null", "None", ""):
        argv = resume_run(subcommand, value, argv)
    check_sweep_dir(argv)
    return argv


def resume_run(subcommand: str, value: str, argv: list[str]) -> list[str]:
    if command_line.is_multirun(argv):
        if value == "auto":  # left to each job: it continues its own job dir when re-run (a requeued SLURM job)
            return argv
        raise UserError(f"resume={value} continues one run; it cannot be combined with -m.",
                        "In a sweep use resume=auto: a job that is re-run (e.g. requeued by SLURM) then continues "
                        "from its own directory's checkpoints; resume=<sweep dir> continues a whole sweep.")
    if value == "auto":
        root = Path(command_line.argv_value(argv, "outputs_root", "outputs")) / subcommand
        unfinished = [p for p in root.glob("*") if (p / "checkpoints" / "last").is_dir() and not (p / "summary.json").exists()]
        if not unfinished:
            raise UserError(f"resume=auto found no unfinished `{subcommand}` run with saved progress under {root}.",
                            "Pass resume=<run dir>, or start a new run without resume=.")
        run = max(unfinished, key=lambda p: p.stat().st_mtime)
    else:
        run = Path(value)
    saved = run / ".hydra" / "overrides.yaml"
    # A run killed before its first checkpoint has its overrides but no checkpoints/: it starts
    # again from the first step, in its own directory (see RunContext.load_progress).
    if not saved.exists():
        raise UserError(f"resume={value}: {run} is not a `{subcommand}` run (no .hydra/overrides.yaml).",
                        "Pass the directory of an interrupted run (outputs/<stage>/<time>) or sweep "
                        "(outputs/multirun/<stage>/<time>).")
    if (run / "summary.json").exists():
        raise UserError(f"resume={value}: that run already finished ({run}/summary.json exists).",
                        "Nothing to resume; start a new run instead.")
    drop = ("resume=", "hydra.run.dir=")
    original = [o for o in OmegaConf.load(saved) if not str(o).startswith(drop)]
    rest = [a for a in argv if not a.startswith(drop)]
    return [*original, *rest, f"resume={run}", f"hydra.run.dir={run}"]


def sweep_overrides(sweep_dir: Path, launcher: bool = False) -> list[str]:
    """The command-line overrides a sweep was started with (its multirun.yaml), less the re-run
    keys; with `launcher`, its Hydra overrides too (hydra/launcher=joblib, hydra.launcher.n_jobs)."""
    saved = OmegaConf.load(sweep_dir / "multirun.yaml")
    task = OmegaConf.select(saved, "hydra.overrides.task", default=None) or []
    own = [o for o in OmegaConf.select(saved, "hydra.overrides.hydra", default=None) or []
           if not str(o).startswith(("hydra.mode=", "hydra.run.", "hydra.sweep.dir="))] if launcher else []
    return [str(o) for o in [*own, *task] if not str(o).startswith(RERUN_KEYS)]


def resume_sweep(sweep_dir: Path, argv: list[str]) -> list[str]:
    """`resume=<sweep dir>`, with or without -m: the sweep's own overrides (its launcher too) into
    its own dir; what else is on the line (threads=1, another launcher) comes after them and wins."""
    rest = [a for a in argv if a not in command_line.MULTIRUN_FLAGS and not a.startswith(RERUN_KEYS)]
    return ["-m", *sweep_overrides(sweep_dir, launcher=True), *rest, f"hydra.sweep.dir={sweep_dir}", "resume=auto"]


def swept(overrides: list[str]) -> list[str]:
    """What fixes a sweep's job numbers: its swept overrides in order, and the experiment (whose
    file may sweep more)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([o for o in overrides if "=" in o])
    experiment = [o.input_line for o in parsed if o.key_or_group == "experiment"]
    return experiment + [o.input_line for o in parsed if o.is_sweep_override()]


def check_sweep_dir(argv: list[str]) -> None:
    """`-m hydra.sweep.dir=<a dir holding jobs>`: only `resume=auto` of the same sweep goes in."""
    d = command_line.argv_value(argv, "hydra.sweep.dir")
    if not (command_line.is_multirun(argv) and d):
        return
    sweep_dir, resuming = Path(d), command_line.argv_value(argv, "resume") == "auto"
    if any(p.is_dir() and has_outputs(p) for p in sweep_dir.glob("*")):
        if not resuming:
            raise UserError(f"hydra.sweep.dir={d} already holds the jobs of an earlier sweep; ulmfit never "
                            "overwrites them.", f"Continue that sweep with resume={d}, or pick a new hydra.sweep.dir "
                            "(or leave it unset).")
        check_same_sweep(sweep_dir, argv)
    if resuming:
        clear_stop(sweep_dir)  # the sweep continued: its jobs may begin again


def check_same_sweep(sweep_dir: Path, argv: list[str]) -> None:
    if not (sweep_dir / "multirun.yaml").is_file():
        return  # not a sweep of ours (no record of its overrides): each job's own checks apply
    try:
        before, now = swept(sweep_overrides(sweep_dir)), swept([a for a in argv if not a.startswith(RERUN_KEYS)])
    except Exception:  # noqa: BLE001 - an override Hydra cannot parse: Hydra names it next
        return
    if before != now:
        raise UserError(f"hydra.sweep.dir={sweep_dir} holds a sweep over {' '.join(before) or 'no swept values'}, "
                        f"not {' '.join(now) or 'no swept values'}; Hydra numbers jobs by those values, so its "
                        "jobs would be continued with other settings.",
                        f"Continue that sweep with resume={sweep_dir} (its own values), or give this one a new "
                        "hydra.sweep.dir.")
