"""The end-to-end bench's driver (benchlib/e2e.py says what is timed): per size and vocabulary,
each requested command in turn, its systems alternating run by run; each command starts from the
run the one before it made (finetune-lm from a pretrain run, ...), made here when that command
was not benched."""
from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from pathlib import Path

from .common import E2E_COMMANDS, SIZES
from .e2e import Setup, console, fastai_run, merge_rounds, ulmfit_run
from .e2e_clf import prepare_clf, prepare_predict
from .e2e_lm import prepare_finetune, prepare_pretrain

PREPARE = {"pretrain": prepare_pretrain, "finetune-lm": prepare_finetune, "train-clf": prepare_clf,
           "predict": prepare_predict}


class Chain:
    """The runs each command hands the next at one size and vocabulary: the first that succeeded
    among the bench's own (fp32 first), else one short untimed run (1 step per epoch) made on
    demand. fastai's train-clf run is handed on too: fastai's predict loads the classifier it saved."""

    def __init__(self, size: str, preset: str, args, fastai_py: str | None, say):
        self.size, self.preset, self.args, self.fastai_py, self.say = size, preset, args, fastai_py, say
        self.runs: dict[str, dict[str, Path]] = {}
        self.exports: dict[Path, Path] = {}
        self._scratch: Path | None = None

    def scratch(self) -> Path:
        """A temporary folder outside the output folder (the reviews predict reads: a copy of shared
        data, which has no place beside the results); `close` removes it."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="ulmfit-bench-e2e-"))
        return self._scratch

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def record(self, command: str, runs: dict) -> None:
        got = self.runs.setdefault(command, {})
        for (system, prec), rs in sorted(runs.items(), key=lambda kv: kv[0][1] != "fp32"):
            ok = [r for r in rs if r.get("status") == "ok" and r.get("run_dir")]
            if ok and system not in got:
                got[system] = Path(ok[0]["run_dir"])

    def run_dir(self, command: str, system: str = "ulmfit") -> Path | None:
        if command not in self.runs:
            self.prep(command)
        found = self.runs[command].get(system)
        if found is None and system == "ulmfit":
            raise RuntimeError(f"no `ulmfit {command}` run succeeded at {self.size}/{self.preset} to start from")
        return found

    def prep(self, command: str) -> None:
        """One short fp32 run of `command` to start the next from (fastai's too for train-clf)."""
        t0 = time.perf_counter()
        st = PREPARE[command](self.size, self.preset, self.args, self, True)
        tag = f"e2e-prep-{command}-{self.size}-{self.preset}"
        runs = {("ulmfit", "fp32"): [ulmfit_run(st, "fp32", f"{tag}-ulmfit")]}
        if command == "train-clf" and self.fastai_py:
            runs[("fastai", "fp32")] = [fastai_run(st, "fp32", f"{tag}-fastai", self.fastai_py)]
        self.record(command, runs)
        self.say(f"    {tag:<44} {time.perf_counter() - t0:6.1f}s  (untimed: to start the next command from) "
                 + ", ".join(f"{sy} {rs[0]['status'][:80]}" for (sy, _), rs in runs.items()))

    def export(self, command: str) -> Path:
        """The ulmfit run of `command` in fastai's layout (`ulmfit export-fastai`), once."""
        src = self.run_dir(command)
        if src not in self.exports:
            dest = src.with_name(src.name + "-fastai-export")
            shutil.rmtree(dest, ignore_errors=True)
            console(self.args, f"{src.name}-export", "export-fastai", f"run={src}", "--out", str(dest))
            self.exports[src] = dest
        return self.exports[src]


def one_run(st: Setup, system: str, py: str | None, prec: str, tag: str, note: str) -> dict:
    if prec not in st.precisions:
        return {"status": f"skipped: `ulmfit {st.command}` takes no precision= (runs in {'/'.join(st.precisions)})"}
    if py is None:
        return {"status": note}
    return ulmfit_run(st, prec, tag) if system == "ulmfit" else fastai_run(st, prec, tag, py)


def alternate(st: Setup, precisions: list[str], systems: list, note: str, say) -> dict:
    """Every (system, precision) once per round, in reversed order every other round."""
    runs: dict = {(sy, p): [] for p in precisions for sy, _ in systems}
    for rnd in range(st.args.e2e_rounds):
        order = [(sy, py, p) for p in precisions for sy, py in systems]
        for system, py, prec in order if rnd % 2 == 0 else order[::-1]:
            tag = f"e2e-{st.command}-{st.size}-{st.preset}-{system}-{prec}-r{rnd}"
            t0 = time.perf_counter()
            r = one_run(st, system, py, prec, tag, note)
            runs[(system, prec)].append(r)
            unit = st.unit.split("/")[0][:3]
            say(f"    {tag:<44} {time.perf_counter() - t0:6.1f}s  " + (
                f"run {r['throughput']:,.1f} {unit}/s, loop {r['throughput_loop']:,.1f} {unit}/s, "
                f"process {r['process_s']:,.1f}s" if r.get("status") == "ok" else str(r.get("status"))[:100]))
    return runs


def prune(runs: dict, keep: set[Path]) -> None:
    """Checkpoints and saved models of the runs no later command starts from (GBs at paper size)."""
    for r in (r for rs in runs.values() for r in rs):
        if r.get("run_dir") and Path(r["run_dir"]) not in keep:
            shutil.rmtree(Path(r["run_dir"]) / "checkpoints", ignore_errors=True)
            Path(r["run_dir"], "fastai_clf.pth").unlink(missing_ok=True)


def describe(st: Setup) -> str:
    what = (f"{st.steps} steps of bs {st.bs}, bptt {SIZES[st.size]['bptt']}"
            f"{' (variable)' if st.prep.get('variable_bptt') else ''}" if st.unit == "tokens/s" else
            f"{st.prep.get('phases', 1)} phase(s) x {st.steps} steps of bs {st.bs}, {st.prep['train_docs']} reviews"
            if st.command == "train-clf" else f"{st.units} reviews, bs {st.bs}")
    return f"  e2e {st.command} {st.size}/{st.preset}: vocab {st.vocab}, {what}, {st.tokens:,} tokens"


def error_rows(command: str, size: str, preset: str, precisions: list[str], systems: list, why: str) -> list[dict]:
    return [{"bench": "e2e", "command": command, "size": size, "vocab_preset": preset, "system": sy,
             "precision": p, "status": f"error: {why}"} for p in precisions for sy, _ in systems]


def bench_command(command: str, chain: Chain, precisions: list[str], systems: list, note: str, stamp) -> list[dict]:
    """One command: prepare its ids, alternate its runs, one row per (system, precision)."""
    size, preset, args, say = chain.size, chain.preset, chain.args, chain.say
    t0 = time.perf_counter()
    try:
        st = PREPARE[command](size, preset, args, chain, False)
    except Exception as e:  # a command that cannot start (its data, or the run it starts from) is a row
        log = Path(args.out) / "logs" / f"e2e-{command}-{size}-{preset}-prepare.log"
        log.write_text(traceback.format_exc())
        say(f"  e2e {command} {size}/{preset}: [red]{type(e).__name__}: {e}[/] (see {log})")
        return error_rows(command, size, preset, precisions, systems, f"{type(e).__name__}: {e} (see {log})")
    say(f"{describe(st)} (ids made in {time.perf_counter() - t0:.1f}s)")
    runs = alternate(st, precisions, systems, note, say)
    chain.record(command, runs)
    prune(runs, set(chain.runs.get(command, {}).values()))
    return [merge_rounds(st, sy, p, rs, stamp()) for (sy, p), rs in runs.items()]


def bench_e2e(size: str, preset: str, precisions: list[str], systems: list, args, note: str, say,
              stamp) -> list[dict]:
    """Every requested command at one size and vocabulary, in the order each hands its run on."""
    chain, rows = Chain(size, preset, args, dict(systems).get("fastai"), say), []
    try:
        for command in (c for c in E2E_COMMANDS if c in args.e2e_commands):
            rows += bench_command(command, chain, precisions, systems, note, stamp)
    finally:
        chain.close()
    return rows
