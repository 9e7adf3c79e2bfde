"""`ulmfit SUBCOMMAND ...`: dispatch only.

Each subcommand lives in ulmfit_cli/commands/, imported when it is asked for (so `ulmfit --help`
and the light tools do not load torch). The three training subcommands are Hydra apps
(commands/hydra_app.py); every other is a tool with its own `main(argv)`.
"""
from __future__ import annotations

import importlib
import os
import logging
import sys

from .errors import UserError, print_error, reraise_for_user

HYDRA_APPS = {
    # subcommand: help line (commands/hydra_app.py: its primary config and recipe)
    "pretrain": "Stage 1: train a general-domain language model (e.g. WikiText-103).",
    "finetune-lm": "Stage 2: fine-tune the pretrained LM on the target task's text.",
    "train-clf": "Stage 3: train the classifier on the fine-tuned encoder.",
}
TOOLS = {
    # subcommand: (module, help line)
    "pipeline": ("pipeline", "Run all three stages in one go, each in its own run dir (e.g. experiment=quickstart)."),
    "evaluate": ("evaluate", "Score a trained classifier (run=<dir>) on a split of its dataset."),
    "predict": ("predict", "Label texts from a file or stdin with a trained classifier (CSV or JSONL out)."),
    "download": ("download", "Fetch a corpus (wikitext103, imdb, trec6, ...) or fastai's WT-103 LM (wt103), resumably."),
    "report": ("report", "A table per stage (and plots) for run dirs or a multirun sweep dir."),
    "import-fastai": ("import_fastai", "Turn fastai's pretrained AWD_LSTM (e.g. WT103 lstm_fwd.pth + itos) into a pretrain run."),
    "export-fastai": ("export_fastai", "Write a pretrain/finetune-lm run's LMs in fastai's layout (.pth + itos .pkl)."),
    "generate": ("generate", "Sample text from a trained language model (run=<pretrain or finetune-lm dir>)."),
}


def usage() -> str:
    lines = ["usage: ulmfit SUBCOMMAND [overrides | options]", "", "ULMFiT experiment runner (Howard & Ruder 2018).", "",
             "training stages (Hydra apps: key=value overrides, -m, --cfg job, --help, hydra.run.dir=...):"]
    lines += [f"  {name:<15}{h}" for name, h in HYDRA_APPS.items()]
    lines += ["", "tools:"]
    lines += [f"  {name:<15}{h}" for name, (_, h) in TOOLS.items()]
    lines += ["", "Run `ulmfit SUBCOMMAND --help` for its options; `ulmfit --version` for the version."]
    return "\n".join(lines)


def version_line() -> str:
    """`ulmfit 0.2.0`, plus the commit when run from a git checkout (as summary.json records it)."""
    from .build_info import build_info

    info = build_info()
    where = f" (git {info['git_commit'][:12]}{', modified' if info['git_dirty'] else ''})" if "git_commit" in info else ""
    return f"ulmfit {info['version']}{where}"


def wants_verbose(argv: list[str]) -> bool:
    return any(a.lower() in ("verbose=true", "verbose=1", "++verbose=true") for a in argv) or \
        os.environ.get("ULMFIT_VERBOSE") == "1"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(version_line())
        return 0
    cmd, rest = argv[0], argv[1:]
    # A log line that cannot be written (a full disk) is not worth a traceback on the terminal:
    # the write that matters (a checkpoint) fails next and says so in one paragraph.
    logging.raiseExceptions = False
    try:
        if cmd in HYDRA_APPS:
            return importlib.import_module("ulmfit_cli.commands.hydra_app").run_stage(cmd, rest)
        if cmd in TOOLS:  # imported on demand: a tool loads only what it uses
            module = importlib.import_module(f"ulmfit_cli.commands.{TOOLS[cmd][0]}")
            text = getattr(module, "HELP", None) or getattr(module, "USAGE", None)
            if text and any(a in ("-h", "--help") for a in rest):  # a tool that only documents itself
                print(text)
                return 0
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


def share_cores_politely(env: dict) -> None:
    """Make libgomp (PyTorch's OpenMP on Linux) threads sleep soon after a parallel op instead of
    spinning ~300k times first. When another process holds a core (two runs side by side, a sweep's
    jobs, a test suite), every op's barrier then waits for a descheduled thread, and each run goes
    many times slower than its share of the machine; a short spin costs a run alone little
    (benchmarks/bench_contention.py measures both). libgomp reads it once, when torch loads, so it is set
    here, before any subcommand imports torch. A GOMP_SPINCOUNT or OMP_WAIT_POLICY already set wins."""
    if "GOMP_SPINCOUNT" not in env and "OMP_WAIT_POLICY" not in env:
        env["GOMP_SPINCOUNT"] = "1000"


def entry() -> None:
    share_cores_politely(os.environ)
    sys.exit(main())
