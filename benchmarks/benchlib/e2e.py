"""End-to-end: ulmfit's four commands (the console script, as users run it) each beside fastai
doing the same job in its own Learner (benchlib/e2e_fastai.py), on the same token ids:

  pretrain     `ulmfit pretrain` for N batches vs `language_model_learner(..., pretrained=False)`
               + `fit`; both then evaluate once
  finetune-lm  `ulmfit finetune-lm pretrained=<that pretrain run>` on IMDb (train + unsup) for N
               batches vs `language_model_learner(..., pretrained_fnames=...)` loading the same
               weights through `ulmfit export-fastai`, unfrozen (ulmfit trains every layer), then
               `fit_one_cycle`; each maps the embedding onto the target vocabulary by token
  train-clf    `ulmfit train-clf lm=<that finetune-lm run>` with gradual unfreezing (one phase per
               `unfreeze.steps` entry, then all layers; S batches each; BPT3C bptt 70, max_len
               1400) vs `text_classifier_learner` with that encoder and `freeze_to(-k)` ... then
               `unfreeze()`, one `fit_one_cycle` of S batches each; both validate after each
               phase and score the test documents at the end
  predict      `ulmfit predict run=<that classifier>` on D IMDb test reviews vs `learn.get_preds`
               on the same reviews' ids (fastai's classifier from its own train-clf run); fp32
               only, as `ulmfit predict` takes no precision= (bf16 rows say so)

The batches are the same size for both (the size preset's bs, bptt; --e2e-clf-bs), as are the
documents: the bench reads and tokenizes each corpus as the command will (the stage's own
functions) and hands the ids to fastai's worker in an .npz; each ulmfit row is checked against
them (vocabulary, tokens, documents), so a run that read something else is an error, not a row.
ulmfit batches LM text with its default variable BPTT around 70 (--e2e-fixed-bptt: 70 as fastai).

Each run is timed two ways:
  throughput       units / the summed intervals between step ends, as the run logs it (ulmfit:
                   metrics.csv's train rows; fastai: a Callback's after_batch times); predict
                   logs none: there it is throughput_loop
  throughput_loop  units / the wall time of the training loop, from its start to the end of the
                   last step, evaluations left out (ulmfit: the train rows' elapsed_s less the
                   valid rows', so train-clf's count the progress checkpoint ulmfit writes after
                   each epoch but the last, for resume; fastai: before_fit to after_train of every
                   fit); predict: the prediction call (ulmfit's predict_proba, timed by a wrapper
                   around it, as `ulmfit predict` logs no timing; fastai's get_preds)
Beside them: eval_s (every evaluation, and train-clf's test scoring), process_s (the whole
process: for ulmfit start-up, reading and tokenizing text, checkpoints; fastai's worker is given
the ids) and the peak RSS of each process.
Runs cannot be interleaved step by step as the step benches are; instead the systems alternate
run by run, in reversed order every other round, and the median over rounds is reported.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .common import BENCH, REPO, SIZES


@dataclass
class Setup:
    """One command's bench at one size and vocabulary: what both systems are given and how much
    each run does."""

    command: str
    size: str
    preset: str
    args: object
    bs: int
    steps: int  # LM: batches; train-clf: batches per phase; predict: 0 (every document)
    ids_path: Path  # the ids (and labels) handed to fastai's worker
    argv: list[str]  # the ulmfit command line after the console script, without precision and run dir
    read: Callable[["Setup", Path], dict]  # run dir -> the run's own figures, or an error status
    launch: Callable[["Setup", str, Path], list[str]] | None = None  # default: stage_launch
    vocab: int = 0
    unit: str = "tokens/s"
    units: int = 0  # tokens (LM) or documents the ulmfit run handles: what its row must report seeing
    tokens: int = 0  # real tokens in those (the documents' tokens, every phase)
    precisions: tuple = ("fp32", "bf16")  # the precisions the ulmfit command can run in
    fastai: dict = field(default_factory=dict)  # what fastai's worker needs beyond the common spec
    prep: dict = field(default_factory=dict)  # the data both were given (tokens, documents)

    @property
    def out(self) -> Path:
        return Path(self.args.out)

    @property
    def shown(self) -> str:
        """The ulmfit command as a user types it."""
        return " ".join(["ulmfit", *self.argv])


def stage_launch(st: Setup, precision: str, run_dir: Path) -> list[str]:
    """A training command: the console script with the run's precision and run dir."""
    return [*ulmfit_command(), *st.argv, f"precision={precision}", f"hydra.run.dir={run_dir}"]


def base_overrides(size: str, args) -> list[str]:
    """Overrides every training command shares: the size preset's model, the machine, no progress
    bar and no token cache (each run tokenizes as a first run does)."""
    s = SIZES[size]
    return ["model=awd_lstm", f"model.emb_size={s['emb']}", f"model.hidden_size={s['hidden']}",
            f"model.n_layers={s['layers']}", f"data_root={args.data_root}", f"device={args.device}",
            f"threads={args.threads}", f"seed={args.seed}", "progress=none", "token_cache=off"]


# Runs the measured command as its child and writes that child's peak RSS (RUSAGE_CHILDREN) to
# argv[1]. A process started straight from the coordinator would not do: at exec the kernel
# folds the replaced memory map's high-water mark into the new program's ru_maxrss, so its
# figure is never below the coordinator's own RSS; this launcher (python -S) is a few MB.
LAUNCHER = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
            "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
            "sys.exit(rc)")


def timed_process(cmd: list[str], env: dict, log_path: Path, cwd: Path) -> tuple[int, float, float | None, str]:
    """Run cmd; -> (return code, wall seconds, peak RSS MB of that process, its stdout)."""
    rss_file = log_path.with_suffix(".maxrss")
    rss_file.unlink(missing_ok=True)
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, str(rss_file), *cmd], stdout=subprocess.PIPE,
                              stderr=log, text=True, env=env, cwd=str(cwd))
        wall = time.perf_counter() - t0
        log.write(proc.stdout)
    rss = int(rss_file.read_text()) / 1024 if rss_file.exists() else None  # KiB on Linux
    return proc.returncode, wall, rss, proc.stdout


def child_env(threads: int, fastai: bool) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}
    env.pop("ULMFIT_TOKEN_CACHE", None)
    if fastai:
        env.pop("PYTHONPATH", None)
    return env


def ulmfit_command() -> list[str]:
    """The console script beside this interpreter (what `pip install -e .` made), else on PATH."""
    beside = Path(sys.executable).with_name("ulmfit")
    found = str(beside) if beside.exists() else shutil.which("ulmfit")
    return [found] if found else [sys.executable, "-m", "ulmfit_cli"]


def console(args, tag: str, *argv: str) -> None:
    """An untimed ulmfit command the bench needs (export-fastai, a short run another command
    starts from); raises with the log's path when it fails."""
    log = Path(args.out) / "logs" / f"{tag}.log"
    with open(log, "w") as f:
        rc = subprocess.call([*ulmfit_command(), *argv], stdout=f, stderr=subprocess.STDOUT,
                             env=child_env(args.threads, False), cwd=str(args.out))
    if rc != 0:
        raise RuntimeError(f"`ulmfit {' '.join(argv[:1])}` exited {rc} (see {log})")


def ulmfit_run(st: Setup, precision: str, tag: str) -> dict:
    """The console script as a user runs it, read back from its own run dir."""
    run_dir, log = st.out / "e2e" / tag, st.out / "logs" / f"{tag}.log"
    shutil.rmtree(run_dir, ignore_errors=True)  # an earlier bench's run: ulmfit never overwrites a run dir
    cmd = (st.launch or stage_launch)(st, precision, run_dir)
    rc, wall, rss, _ = timed_process(cmd, child_env(st.args.threads, False), log, st.out)
    if rc != 0:
        return {"status": f"error: ulmfit {st.command} exited {rc} (see {log})"}
    got = st.read(st, run_dir)
    if got.get("status") != "ok":
        return got
    return {**got, "throughput_loop": got["units_seen"] / got["loop_s"], "process_s": wall,
            "process_peak_rss_mb": rss, "run_dir": str(run_dir),
            "command_line": st.shown + (f" precision={precision}" if st.launch is None else "")}


def fastai_spec(st: Setup, precision: str, run_dir: Path) -> dict:
    s = SIZES[st.size]
    return {"command": st.command, "ids": str(st.ids_path), "vocab": st.vocab, "precision": precision,
            "steps": st.steps, "threads": st.args.threads, "seed": st.args.seed, "device": st.args.device,
            "size": {k: s[k] for k in ("emb", "hidden", "layers", "bptt", "max_len")} | {"bs": st.bs},
            "run_dir": str(run_dir), **st.fastai}


def fastai_run(st: Setup, precision: str, tag: str, fastai_py: str) -> dict:
    """fastai's worker (its own interpreter) on the ids the ulmfit run reads."""
    run_dir, log = st.out / "e2e" / tag, st.out / "logs" / f"{tag}.log"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    spec = fastai_spec(st, precision, run_dir)
    rc, wall, rss, out = timed_process([fastai_py, str(BENCH), "--e2e-fastai", json.dumps(spec)],
                                       child_env(st.args.threads, True), log, REPO)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if rc != 0 or not lines:
        return {"status": f"error: fastai e2e worker ({st.command}) exited {rc} (see {log})"}
    got = json.loads(lines[-1])
    return {"status": "ok", **got, "throughput_loop": got["units_seen"] / got["loop_s"], "process_s": wall,
            "process_peak_rss_mb": rss, "run_dir": str(run_dir)}


MEDIANS = ("throughput", "throughput_loop", "loop_s", "eval_s", "process_s", "process_peak_rss_mb")


def merge_rounds(st: Setup, system: str, precision: str, runs: list[dict], stamp: dict) -> dict:
    """One row per (command, size, vocabulary, system, precision): the median of each figure over
    the rounds that succeeded."""
    s = SIZES[st.size]
    row = {"bench": "e2e", "command": st.command, "size": st.size, "vocab_preset": st.preset, "system": system,
           "precision": precision, "bs": st.bs, "bptt": s["bptt"], "vocab": st.vocab, "emb": s["emb"],
           "hidden": s["hidden"], "layers": s["layers"], "steps": st.steps, "unit": st.unit, **st.prep, **stamp}
    ok = [r for r in runs if r.get("status") == "ok"]
    if not ok:
        return {**row, "status": runs[0].get("status") if runs else "not run"}
    row.update(status="ok", rounds=len(ok), per_round={k: [r.get(k) for r in ok] for k in MEDIANS})
    for k in MEDIANS:
        vals = [r[k] for r in ok if r.get(k) is not None]
        row[k] = statistics.median(vals) if vals else None
    row.update({k: v for k, v in ok[-1].items() if k not in MEDIANS and k != "status"})
    return row
