"""`ulmfit pipeline [overrides]`: pretrain -> finetune-lm -> train-clf, each a real stage run.

Each stage runs as its own `ulmfit <stage>` process (so each is an ordinary Hydra run with its
own run dir), handed the previous stage's run dir explicitly. Overrides go to every stage;
`pretrain/KEY=V`, `finetune-lm/KEY=V`, `train-clf/KEY=V` go to one stage only.
"""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..command_line import argv_value
from ..config import compose
from ..errors import UserError
from ..fileutil import read_json

STAGES = ("pretrain", "finetune-lm", "train-clf")
HANDOFF_KEY = {"finetune-lm": "pretrained", "train-clf": "lm"}
HANDOFF_STAGE = {key: stage for stage, key in HANDOFF_KEY.items()}

HELP = """usage: ulmfit pipeline [experiment=NAME] [KEY=VALUE ...] [STAGE/KEY=VALUE ...] [skip=pretrain]

Runs pretrain, finetune-lm and train-clf in turn, each in its own run dir under outputs/,
each stage starting from the previous one's run. KEY=VALUE overrides go to every stage;
pretrain/KEY=VALUE (or finetune-lm/..., train-clf/...) to one. skip=pretrain starts from
finetune-lm (its pretrained= then applies; giving pretrained= implies it): pretrained= and
lm= go to the one stage that has them. --config-dir DIR adds a folder of your own configs
(experiment files, group options) to every stage. Examples: ulmfit pipeline experiment=quickstart
          ulmfit pipeline skip=pretrain pretrained=wt103 dataset=imdb bidirectional=both
          (pretrained=wt103: fastai's WikiText-103 model, after `ulmfit download wt103`)
"""


def split_overrides(argv: list[str]) -> tuple[dict[str, list[str]], set[str]]:
    per_stage = {s: [] for s in STAGES}
    skip: set[str] = set()
    for a in argv:
        head, _, rest = a.partition("/")
        key = a.split("=", 1)[0].lstrip("+~")
        if a.startswith("skip="):
            skip |= set(a.split("=", 1)[1].split(","))
        elif head in STAGES and rest:
            per_stage[head].append(rest)
        elif key in HANDOFF_STAGE:  # pretrained= / lm= exist in one stage's config only
            per_stage[HANDOFF_STAGE[key]].append(a)
        else:
            for s in STAGES:
                per_stage[s].append(a)
    unknown = skip - set(STAGES)
    if unknown:
        raise UserError(f"skip={','.join(sorted(unknown))} names no stage.", f"Use skip= with {', '.join(STAGES)}.")
    return per_stage, skip


def config_dir_as_searchpath(argv: list[str]) -> list[str]:
    """`--config-dir DIR` / `-cd DIR` (a user's own configs beside the shipped ones) as the
    `hydra.searchpath` override that means the same to every stage and to compose(), absolute so
    that it means the same folder whatever a stage's working directory."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        flag, eq, value = a.partition("=")
        if flag in ("--config-dir", "-cd"):
            if not eq:
                if i + 1 >= len(argv):
                    raise UserError(f"{flag} needs a folder after it.", f"Write {flag} DIR (a folder of your own configs).")
                value, i = argv[i + 1], i + 1
            folder = Path(value).expanduser().resolve()
            if not folder.is_dir():
                raise UserError(f"{flag} {value}: no such folder ({folder}).", "Name a folder of your own configs.")
            out.append(f"hydra.searchpath=[file://{folder}]")
        else:
            out.append(a)
        i += 1
    return out


def pretrain_corpus(finetune_overrides: list[str]) -> str:
    """The target dataset's `pretrain_corpus` (e.g. trec6 -> wikitext103, sample -> sample)."""
    overrides = [o for o in finetune_overrides
                 if o.startswith("hydra.searchpath=") or not o.startswith(("hydra.", "hydra/"))]
    return compose("finetune_lm", overrides).dataset.pretrain_corpus


def main(argv: list[str]) -> int:
    per_stage, skip = split_overrides(config_dir_as_searchpath(argv))
    if "pretrain" not in skip and any(o.split("=", 1)[0].lstrip("+") == "pretrained" for o in per_stage["finetune-lm"]):
        print("pretrained= names where finetune-lm starts, so pretrain is skipped (as with skip=pretrain).")
        skip.add("pretrain")
    if "pretrain" not in skip and not any(o.startswith("pretrain/dataset=") for o in argv):
        # the target task's dataset is not what stage 1 reads: it reads its general-domain corpus
        corpus = pretrain_corpus(per_stage["finetune-lm"])
        per_stage["pretrain"] = [o for o in per_stage["pretrain"] if not o.startswith("dataset=")] + [f"dataset={corpus}"]
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    previous: Path | None = None
    rows = []
    t0 = time.time()
    for stage in STAGES:
        if stage in skip:
            continue
        overrides = list(per_stage[stage])
        run_dir = Path(argv_value(overrides, "outputs_root", "outputs")) / stage / stamp
        if previous is not None:
            overrides.append(f"{HANDOFF_KEY[stage]}={previous}")
        cmd = [sys.executable, "-m", "ulmfit_cli", stage, *overrides, f"hydra.run.dir={run_dir}"]
        print(f"\n== {stage}: {' '.join(cmd[3:])}", flush=True)
        rc = subprocess.call(cmd)
        if rc != 0:
            print(f"pipeline stopped: `ulmfit {stage}` exited with code {rc} (its log: {run_dir}/train.log).",
                  file=sys.stderr)
            return rc
        rows.append(read_json(run_dir / "summary.json"))
        previous = run_dir
    print_table(rows, time.time() - t0)
    return 0


BASELINE_NAMES = {"tfidf_lr": "TF-IDF + LR"}


def result_cells(r: dict) -> list[str]:
    """val loss, val perplexity or accuracy, test accuracy, test error."""
    loss = f"{r['val_loss']:.4f}" if "val_loss" in r else ""
    if "val_perplexity" in r:
        return [loss, f"ppl {r['val_perplexity']:.2f}", "", ""]
    return [loss, f"acc {r['val_accuracy']:.4f}", f"{r['test_accuracy']:.4f}", f"{r['test_error']:.2f}"]


def print_table(summaries: list[dict], total_s: float) -> None:
    table = Table(title=f"ULMFiT pipeline ({total_s:.0f} s)")
    for col in ("stage", "direction", "val loss", "val ppl / acc", "test acc", "test error %", "wall s"):
        table.add_column(col, no_wrap=True)
    for s in summaries:
        for direction, r in s["results"].items():
            table.add_row(s["stage"], direction, *result_cells(r), f"{s['wall_time_s']:.0f}")
        for name, r in s.get("baselines", {}).items():
            table.add_row(s["stage"], BASELINE_NAMES.get(name, name), *result_cells(r), "")
        if s.get("majority_test_accuracy") is not None:
            table.add_row(s["stage"], "majority class", "", "", f"{s['majority_test_accuracy']:.4f}",
                          f"{100 * (1 - s['majority_test_accuracy']):.2f}", "")
    for w in (w for s in summaries for w in s.get("warnings", []) if "TF-IDF" in w):
        Console(stderr=True).print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    console = Console()
    console.print(table)
    for s in summaries:  # below the table: full paths would squeeze its columns on 80-column terminals
        console.print(f"{s['stage']:<12} {s['run_dir']}", highlight=False, soft_wrap=True)
