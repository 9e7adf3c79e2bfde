"""The coordinator: settles the arguments, runs every requested bench and writes the results."""
from __future__ import annotations

import datetime as _dt
import platform
import socket
import sys
import time
from pathlib import Path

from .common import DEFAULT_FASTAI_PY, E2E_COMMANDS, E2E_VOCABS, SIZES
from .group import run_group
from .hostinfo import cpu_info, fastai_probe, git_commit, host_stamp, make_fastai_env
from .results import add_ratios, fmt, write_outputs

BENCHES = {"lm", "clf", "predict", "tokenize", "e2e"}
NOTES = ["throughput = units per step / median step time over timed steps; throughput_best uses the "
         "fastest step (robust to stalls caused by other processes on a shared machine)",
         "systems of one configuration run in separate processes, stepped in lock-step "
         "(one step each in turn, order alternating), so ratios are fair under load",
         "CPU peak memory = the child's peak RSS (VmHWM, reset at the baseline) - its RSS at the "
         "baseline (after imports and one tiny priming step, before the model was built): weights, "
         "grads, optimizer state, activations. A child's ru_maxrss is not used: it inherits the "
         "parent's high-water mark at exec. CUDA = torch.cuda.max_memory_allocated",
         "step benches: ulmfit = Trainer.train_step; fastai = fastai's models and Adam in a minimal loop "
         "(no Learner callbacks)",
         "e2e: ulmfit = its console script (pretrain, finetune-lm, train-clf, predict); fastai = its Learner "
         "(language_model_learner fit / fit_one_cycle, text_classifier_learner freeze_to + fit_one_cycle, get_preds) "
         "on the same ids. throughput = units / summed intervals between step ends (what the run logs); "
         "throughput_loop = units / wall time of the training (or prediction) loop, evaluations left out; "
         "process_s and process_peak_rss_mb = the whole process; medians over --e2e-rounds"]


def settle(args) -> str | None:
    """Defaults that depend on other arguments; returns an error message for bad ones."""
    if args.threads is None:
        args.threads = 1 if args.quick else 2
    if args.quick:
        args.sizes = args.sizes or "tiny"
        args.steps, args.warmup, args.clf_warmup = min(args.steps, 3), min(args.warmup, 1), min(args.clf_warmup, 1)
        args.min_steps, args.e2e_steps = min(args.min_steps, 3), min(args.e2e_steps, 3)
        args.e2e_clf_steps, args.e2e_predict_docs = min(args.e2e_clf_steps, 1), min(args.e2e_predict_docs, 200)
    args.sizes = (args.sizes or ("small,paper30k,paper60k" if args.device == "cuda" else "small,paper30k")).split(",")
    args.benches = args.benches.split(",")
    args.precisions = args.precision.split(",")
    args.e2e_commands, args.e2e_vocabs = args.e2e_commands.split(","), args.e2e_vocabs.split(",")
    args.out = str(Path(args.out).resolve())  # e2e runs its commands in <out>, with run dirs under it
    bad = [s for s in args.sizes if s not in SIZES]
    if bad:
        return f"unknown size(s) {bad}; choose from {list(SIZES)}"
    if not set(args.benches) <= BENCHES:
        return f"unknown bench(es) {sorted(set(args.benches) - BENCHES)}; choose from {sorted(BENCHES)}"
    if not set(args.precisions) <= {"fp32", "bf16"}:
        return f"--precision {args.precision}: use fp32, bf16 or fp32,bf16"
    return settle_e2e(args)


def settle_e2e(args) -> str | None:
    if not set(args.e2e_commands) <= set(E2E_COMMANDS):
        unknown = sorted(set(args.e2e_commands) - set(E2E_COMMANDS))
        return f"--e2e-commands: unknown {unknown}; choose from {','.join(E2E_COMMANDS)}"
    if not set(args.e2e_vocabs) <= set(E2E_VOCABS):
        return f"--e2e-vocabs: unknown {sorted(set(args.e2e_vocabs) - set(E2E_VOCABS))}; choose from {list(E2E_VOCABS)}"
    steps = args.e2e_unfreeze.split(",")
    if not all(k.isdigit() and 1 <= int(k) <= 4 for k in steps) or sorted(set(steps)) != steps:
        return f"--e2e-unfreeze {args.e2e_unfreeze}: increasing layer-group counts from 1 to 4, e.g. 1,2,3,4 or 1,2,3"
    counts = {"--e2e-steps": args.e2e_steps, "--e2e-clf-steps": args.e2e_clf_steps,
              "--e2e-predict-docs": args.e2e_predict_docs, "--e2e-rounds": args.e2e_rounds}
    low = [k for k, v in counts.items() if v < 1]
    low += ["--e2e-clf-bs"] if args.e2e_clf_bs is not None and args.e2e_clf_bs < 2 else []
    if low:
        return f"{', '.join(low)}: too small (counts >= 1; --e2e-clf-bs >= 2, as BatchNorm needs two rows)"
    return None


def fastai_setup(args, console) -> tuple[bool, str]:
    if args.no_fastai:
        return False, "skipped (--no-fastai)"
    py = Path(args.fastai_python)
    ok, note = fastai_probe(py)
    if not ok and not py.exists() and py == DEFAULT_FASTAI_PY:
        ok, note = make_fastai_env(py, console)
    if not ok:
        console.print(f"[yellow]fastai: {note}[/]\n  To compare against fastai: "
                      f"bash scripts/fastai_env.sh   (creates {DEFAULT_FASTAI_PY.parent.parent})")
    return ok, note


def make_meta(args, torch, cpu: dict, device_name: str, fastai_note: str) -> dict:
    return {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "git_commit": git_commit(),
            "device": args.device, "device_name": device_name, "torch": torch.__version__,
            "python": platform.python_version(), "host": socket.gethostname(), "threads": args.threads,
            "precision": args.precision, **cpu,
            "bf16_note": ("CPU has avx512_bf16: bf16 autocast can use native bf16 dot products" if cpu["avx512_bf16"]
                          else "CPU lacks avx512_bf16: bf16 autocast is emulated (usually slower)"),
            "fastai": fastai_note, "sizes": args.sizes, "benches": sorted(args.benches), "steps": args.steps,
            "warmup": args.warmup, "clf_warmup": args.clf_warmup, "min_steps": args.min_steps,
            "max_seconds": args.max_seconds, "e2e_steps": args.e2e_steps, "e2e_rounds": args.e2e_rounds,
            **({"e2e_commands": args.e2e_commands, "e2e_vocabs": args.e2e_vocabs, "e2e_clf_steps": args.e2e_clf_steps,
                "e2e_clf_bs": args.e2e_clf_bs, "e2e_unfreeze": args.e2e_unfreeze,
                "e2e_predict_docs": args.e2e_predict_docs, "e2e_fixed_bptt": args.e2e_fixed_bptt}
               if "e2e" in args.benches else {}),
            "quick": args.quick, "argv": sys.argv[1:], "notes": NOTES}


class Bench:
    """The state of one bench invocation: arguments, where fastai is, the rows so far."""

    def __init__(self, args, console, meta: dict, fastai: tuple[bool, str]):
        self.args, self.console, self.meta = args, console, meta
        self.have_fastai, self.fastai_note = fastai
        self.out = Path(args.out)
        self.log_dir = self.out / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = []

    def systems(self, task: str, bare: bool = True) -> list[tuple[str, str | None]]:
        s = [("ulmfit", sys.executable)]
        if task in ("lm", "clf", "predict", "e2e"):
            s.append(("fastai", self.args.fastai_python if self.have_fastai else None))
        if task == "lm" and bare:
            s.append(("bare", sys.executable))
        return s

    def entries(self, task: str, size_name: str, sz: dict, extra: dict, bare: bool) -> tuple[list, list]:
        base = {"device": self.args.device, "threads": self.args.threads, "seed": self.args.seed}
        entries, skipped = [], []
        for prec in self.args.precisions:
            for system, py in self.systems(task, bare):
                spec = {**base, "task": task, "system": system, "size_name": size_name, "size": sz,
                        "precision": prec, **extra}
                if py is None:
                    skipped.append({"bench": task, "size": size_name, "system": system, "precision": prec,
                                    "doc_len": extra.get("doc_len"), "bs": extra.get("bs", sz["bs"]),
                                    "status": self.fastai_note})
                else:
                    entries.append((system, py, spec))
        return entries, skipped

    def group(self, task: str, size_name: str, extra: dict, warmup: int, *, sz: dict | None = None,
              bare: bool = True, profile: bool = False) -> None:
        sz = sz or dict(SIZES[size_name])
        entries, skipped = self.entries(task, size_name, sz, extra, bare)
        label = f"{task}-{size_name}" + (f"-L{extra['doc_len']}" if "doc_len" in extra else "")
        t0 = time.perf_counter()
        got = run_group(label, entries, self.args, self.log_dir, warmup, profile=profile) + skipped
        for r in got:
            r.update(vocab=sz["vocab"], emb=sz["emb"], hidden=sz["hidden"], layers=sz["layers"], bptt=sz["bptt"],
                     max_len=sz["max_len"] if task != "lm" else None,
                     unit="tokens/s" if task == "lm" else "docs/s")
        self.add(got)
        multi = len(self.args.precisions) > 1
        unit = "tok/s" if task == "lm" else "docs/s"
        self.say(f"  {label:<24} {time.perf_counter() - t0:6.1f}s  " + ", ".join(
            f"{r['system']}{'/' + r['precision'] if multi else ''} {fmt(r.get('throughput'))} {unit}"
            if r.get("status") == "ok" else f"{r['system']} {r.get('status', '')[:80]}" for r in got))

    def add(self, rows: list[dict]) -> None:
        self.rows.extend(rows)
        add_ratios(self.rows)
        write_outputs(self.out, {**self.meta, "partial": True}, self.rows)  # a killed run leaves what it measured

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    # -- the benches -----------------------------------------------------------------------
    def step_benches(self, size_name: str) -> None:
        args, sz = self.args, SIZES[size_name]
        cpu = args.device == "cpu"
        clf_bs = args.clf_bs or (sz["clf_bs_cpu"] if cpu else sz["clf_bs_cuda"])
        lens = ([int(x) for x in args.clf_lens.split(",")] if args.clf_lens
                else sz.get("clf_lens_cpu", sz["clf_lens"]) if cpu else sz["clf_lens"])
        if "lm" in args.benches:
            self.group("lm", size_name, {}, args.warmup, profile=args.profile)
        for task in ("clf", "predict"):
            if task in args.benches:
                for L in lens:
                    self.group(task, size_name, {"doc_len": L, "bs": clf_bs}, args.clf_warmup)

    def e2e(self, size_name: str) -> None:
        """The real runs at each vocabulary, and (unless --no-e2e-step) the lm step bench at the
        vocabulary they trained, so that step and run are compared at the same sizes."""
        from .e2e_chain import bench_e2e

        for preset in self.args.e2e_vocabs:
            rows = bench_e2e(size_name, preset, self.args.precisions, self.systems("e2e"), self.args,
                             self.fastai_note, self.say, host_stamp)
            vocab = next((r["vocab"] for r in rows if r.get("unit") == "tokens/s" and r.get("vocab")), None)
            if vocab and not self.args.no_e2e_step:
                sz = {**SIZES[size_name], "vocab": vocab}
                self.group("lm", f"{size_name}@v{vocab}", {}, self.args.warmup, sz=sz, bare=False)
            self.add(rows)

    def tokenize(self) -> None:
        from .tokenize_bench import bench_tokenize

        t0 = time.perf_counter()
        rows = bench_tokenize(self.args.quick)
        self.add(rows)
        self.say(f"  {'tokenize':<24} {time.perf_counter() - t0:6.1f}s  " + ", ".join(
            f"{r['system']} {fmt(r.get('throughput'), 0)} tok/s (fit {fmt(r.get('fit_s'), 2)}s)" for r in rows))

    def finish(self, t_start: float) -> int:
        from .tables import print_e2e, print_e2e_pairs, print_steps

        self.meta.update(total_s=round(time.perf_counter() - t_start, 1), partial=False)
        add_ratios(self.rows)
        write_outputs(self.out, self.meta, self.rows)
        print_steps(self.console, self.rows, self.meta)
        print_e2e(self.console, self.rows)
        print_e2e_pairs(self.console, self.rows)
        for r in self.rows:
            if r.get("profile_top"):
                self.say(f"profile {r['bench']} {r['size']} {r['system']} (self time, top 6): " + "; ".join(
                    f"{p['op']} {p['share']:.0%}" for p in r["profile_top"][:6]))
        self.say(f"wrote {self.out / 'results.json'} and {self.out / 'results.csv'} ({self.meta['total_s']}s)")
        return 1 if any(str(r.get("status", "")).startswith("error") for r in self.rows) else 0


def coordinate(args) -> int:
    error = settle(args)
    if error:
        print(error, file=sys.stderr)
        return 2
    import torch
    from rich.console import Console

    console = Console(width=240)
    if args.device == "cuda" and not torch.cuda.is_available():
        console.print("[red]--device cuda: no CUDA device visible to torch[/]")
        return 2
    cpu = cpu_info()
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else cpu["cpu_model"]
    fastai = fastai_setup(args, console)
    bench = Bench(args, console, make_meta(args, torch, cpu, device_name, fastai[1]), fastai)
    bench.say(f"[bold]bench[/] {device_name} · torch {torch.__version__} · threads {args.threads} · "
              f"{args.precision} · avx512_bf16={cpu['avx512_bf16']} · fastai: {fastai[1]}")
    t_start = time.perf_counter()
    for size_name in args.sizes:
        bench.step_benches(size_name)
        if "e2e" in args.benches:
            bench.e2e(size_name)
    if "tokenize" in args.benches:
        bench.tokenize()
    return bench.finish(t_start)
