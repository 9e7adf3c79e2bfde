"""End-to-end: a real `ulmfit pretrain` run (the console script, as users run it) beside
fastai's own Learner loop (benchlib/e2e_fastai.py) on the same token ids.

Both train N batches of bs 64 on WikiText-2 and then evaluate once; each with its own default
batching: ulmfit's variable BPTT around 70 (--e2e-fixed-bptt: 70 for both), fastai's
LMDataLoader's fixed 70. Each run is timed two ways:
  throughput       tokens / the summed intervals between step ends, as the run logs it
                   (ulmfit: metrics.csv's train row; fastai: a Callback's after_batch times)
  throughput_loop  tokens / the wall time of the training loop, from its start to the end of
                   the last step (ulmfit: the train row's elapsed_s; fastai: before_fit to
                   after_train), so time outside the steps (batching, callbacks) shows
Time outside the loop is reported beside: eval_s (the one evaluation) and process_s (the whole
process: for ulmfit start-up, reading, tokenizing and checkpoints too; fastai's worker is given
the ids).
Runs cannot be interleaved step by step as the step benches are; instead the systems alternate
run by run, in reversed order every other round, and the median over rounds is reported.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import BENCH, REPO, SIZES


@dataclass
class Setup:
    """One size's end-to-end bench: where the ids are, how many steps, how many tokens."""

    size: str
    args: object
    steps: int
    tokens_path: Path
    vocab: int = 0
    tokens: int = 0  # ulmfit's tokens in those steps
    prep: dict = field(default_factory=dict)


def run_overrides(size: str, precision: str, steps: int, args) -> list[str]:
    """`ulmfit pretrain` overrides: the size preset's model, the bench's batch and N steps."""
    s = SIZES[size]
    extra = ["train.variable_bptt=false"] if args.e2e_fixed_bptt else []
    extra += ["dataset.max_docs=20"] if args.quick else []
    return ["dataset=wikitext2", f"data_root={args.data_root}", "model=awd_lstm", f"model.emb_size={s['emb']}",
            f"model.hidden_size={s['hidden']}", f"model.n_layers={s['layers']}", f"tokenizer.max_vocab={s['vocab']}",
            f"train.bs={s['bs']}", f"train.bptt={s['bptt']}", "train.epochs=1", f"train.max_steps_per_epoch={steps}",
            f"precision={precision}", f"device={args.device}", f"threads={args.threads}", f"seed={args.seed}",
            "progress=none", "token_cache=off"] + extra


def run_tokens(cfg, train_docs, steps: int) -> tuple[int, int]:
    """(steps, tokens) of the run's first `steps` batches, capped at one epoch: its own LMStream
    (a pure function of seed and epoch) over its own ids, so variable BPTT is counted exactly."""
    from itertools import islice

    from ulmfit_cli.data.batching import LMStream

    t = cfg.train
    stream = LMStream(train_docs, t.bs, t.bptt, seed=cfg.seed, shuffle=True, variable=t.variable_bptt)
    steps = min(steps, len(stream))
    return steps, sum(b.x.numel() for b in islice(stream.epoch(0), steps))


def prepare(size: str, args) -> Setup:
    """The run's own corpus, vocabulary and token ids (the pretrain stage's first three steps),
    saved for fastai's worker."""
    import numpy as np
    from ulmfit_cli.config import compose
    from ulmfit_cli.data import load_pretraining_corpus
    from ulmfit_cli.data.tokenizers import fit_numericalizer
    from ulmfit_cli.data.token_cache import encode

    cfg = compose("pretrain", run_overrides(size, "fp32", args.e2e_steps, args))
    corpus = load_pretraining_corpus(cfg.dataset, cfg.data_root)
    numer = fit_numericalizer(corpus.train_texts, cfg.tokenizer)
    docs = {"train": encode(numer, corpus.train_texts, None), "valid": encode(numer, corpus.valid_texts, None)}
    arrays = {}
    for split, split_docs in docs.items():
        kept = [d for d in split_docs if len(d)]
        arrays[f"{split}_ids"] = np.concatenate(kept).astype(np.int64)
        arrays[f"{split}_lens"] = np.array([len(d) for d in kept], dtype=np.int64)
    path = Path(args.out) / f"e2e_tokens_{size}.npz"
    np.savez(path, **arrays)
    steps, tokens = run_tokens(cfg, docs["train"], args.e2e_steps)
    return Setup(size, args, steps, path, len(numer.itos), tokens,
                 {"train_tokens": len(arrays["train_ids"]), "valid_tokens": len(arrays["valid_ids"]),
                  "variable_bptt": bool(cfg.train.variable_bptt)})


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


def read_run(run_dir: Path) -> dict:
    """The figures the run itself wrote: metrics.csv's train and valid rows, summary.json."""
    with open(run_dir / "metrics.csv") as f:
        rows = {r["split"]: r for r in csv.DictReader(f)}
    train, valid = rows["train"], rows["valid"]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"throughput": float(train["throughput"]), "loop_s": float(train["elapsed_s"]),
            "eval_s": float(valid["elapsed_s"]) - float(train["elapsed_s"]),
            "val_perplexity": float(valid["perplexity"]), "run_wall_s": summary["wall_time_s"],
            "run_vocab": summary.get("vocab_size"), "run_train_tokens": summary["results"]["fwd"]["train_tokens"]}


def ulmfit_command() -> list[str]:
    """The console script beside this interpreter (what `pip install -e .` made), else on PATH."""
    beside = Path(sys.executable).with_name("ulmfit")
    found = str(beside) if beside.exists() else shutil.which("ulmfit")
    return [found] if found else [sys.executable, "-m", "ulmfit_cli"]


def ulmfit_run(st: Setup, precision: str, tag: str) -> dict:
    args = st.args
    run_dir, log = Path(args.out) / "e2e" / tag, Path(args.out) / "logs" / f"{tag}.log"
    shutil.rmtree(run_dir, ignore_errors=True)  # an earlier bench's run: ulmfit never overwrites a run dir
    overrides = [*run_overrides(st.size, precision, st.steps, args), f"hydra.run.dir={run_dir}"]
    cmd = [*ulmfit_command(), "pretrain", *overrides]
    rc, wall, rss, _ = timed_process(cmd, child_env(args.threads, False), log, Path(args.out))
    if rc != 0:
        return {"status": f"error: ulmfit pretrain exited {rc} (see {log})"}
    got = read_run(run_dir)
    if (got["run_vocab"], got["run_train_tokens"]) != (st.vocab, st.prep["train_tokens"]):
        return {"status": f"error: the run's vocab/corpus ({got['run_vocab']}, {got['run_train_tokens']} tokens) "
                          f"differ from the bench's ({st.vocab}, {st.prep['train_tokens']}); see {run_dir}"}
    return {"status": "ok", **got, "throughput_loop": st.tokens / got["loop_s"], "process_s": wall,
            "process_peak_rss_mb": rss, "run_dir": str(run_dir), "command": " ".join(["ulmfit pretrain", *overrides])}


def fastai_run(st: Setup, precision: str, tag: str, fastai_py: str) -> dict:
    args = st.args
    spec = {"tokens": str(st.tokens_path), "size": SIZES[st.size], "vocab": st.vocab, "precision": precision,
            "steps": st.steps, "threads": args.threads, "seed": args.seed, "device": args.device}
    log = Path(args.out) / "logs" / f"{tag}.log"
    rc, wall, rss, out = timed_process([fastai_py, str(BENCH), "--e2e-fastai", json.dumps(spec)],
                                       child_env(args.threads, True), log, REPO)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if rc != 0 or not lines:
        return {"status": f"error: fastai e2e worker exited {rc} (see {log})"}
    got = json.loads(lines[-1])
    return {"status": "ok", **got, "throughput_loop": got["trained_tokens"] / got["loop_s"], "process_s": wall,
            "process_peak_rss_mb": rss}


MEDIANS = ("throughput", "throughput_loop", "loop_s", "eval_s", "process_s", "process_peak_rss_mb")


def merge_rounds(st: Setup, system: str, precision: str, runs: list[dict]) -> dict:
    """One row per (system, precision): the median of each figure over the rounds that succeeded."""
    s = SIZES[st.size]
    row = {"bench": "e2e", "size": st.size, "system": system, "precision": precision, "bs": s["bs"],
           "bptt": s["bptt"], "vocab": st.vocab, "emb": s["emb"], "hidden": s["hidden"], "layers": s["layers"],
           "steps": st.steps, "tokens": st.tokens, "unit": "tokens/s", **st.prep}
    ok = [r for r in runs if r.get("status") == "ok"]
    if not ok:
        return {**row, "status": runs[0].get("status") if runs else "not run"}
    row.update(status="ok", rounds=len(ok), per_round={k: [r.get(k) for r in ok] for k in MEDIANS})
    for k in MEDIANS:
        row[k] = statistics.median(r[k] for r in ok)
    row.update({k: v for k, v in ok[-1].items() if k not in MEDIANS and k != "status"})
    return row


def bench_e2e(size: str, precisions: list[str], systems: list[tuple[str, str | None]], args, note: str,
              say) -> tuple[Setup, list[dict]]:
    """Prepare the ids, then alternate the runs: every (system, precision) once per round."""
    st = prepare(size, args)
    say(f"  e2e {size}: vocab {st.vocab}, {st.prep['train_tokens']:,} train tokens, {st.steps} steps "
        f"of bs {SIZES[size]['bs']}, bptt {SIZES[size]['bptt']}{' (variable)' if st.prep['variable_bptt'] else ''}")
    runs: dict = {(sy, p): [] for p in precisions for sy, _ in systems}
    for rnd in range(args.e2e_rounds):
        order = [(sy, py, p) for p in precisions for sy, py in systems]
        for system, py, prec in order if rnd % 2 == 0 else order[::-1]:
            tag = f"e2e-{size}-{system}-{prec}-r{rnd}"
            t0 = time.perf_counter()
            if py is None:
                r = {"status": note}
            elif system == "ulmfit":
                r = ulmfit_run(st, prec, tag)
            else:
                r = fastai_run(st, prec, tag, py)
            runs[(system, prec)].append(r)
            say(f"    {tag:<34} {time.perf_counter() - t0:6.1f}s  " + (
                f"run {r['throughput']:,.0f} tok/s, loop {r['throughput_loop']:,.0f} tok/s"
                if r.get("status") == "ok" else str(r.get("status"))[:100]))
    return st, [merge_rounds(st, sy, p, runs[(sy, p)]) for (sy, p) in runs]
