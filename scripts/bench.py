#!/usr/bin/env python
"""Throughput and peak-memory benchmark: ulmfit vs fastai vs a bare nn.LSTM stack (issue 6).

One command, one machine, identical model configurations:

  lm        LM training tokens/s (forward + backward + clip + AdamW step, with the AWD-LSTM
            regularisation: weight drop, embedding/locked dropout, AR/TAR) for
            ulmfit (build_lm + lm_step + make_optimizer, the Trainer's step body),
            fastai (AWD_LSTM + get_language_model + its Adam, RNNRegularizer's AR/TAR) and
            bare (nn.Embedding + nn.LSTM x n_layers + tied decoder, no dropouts, no AR/TAR: the ceiling)
  clf       classifier training docs/s for documents of 200 / 1,000 / 5,000 tokens (BPT3C,
            max_len 1400): ulmfit's TextClassifier (build_classifier + clf_step) vs fastai's
            get_text_classifier (SentenceEncoder + PoolingLinearClassifier)
  predict   inference docs/s through ulmfit's predict_proba (what `ulmfit predict` calls), and
            fastai's classifier forward under no_grad for comparison
  tokenize  tokens/s of fit_numericalizer and encode_many (word and spm) on WikiText-2 valid

Every measured configuration runs in its own child process (so peak memory is that
configuration's alone: CPU = ru_maxrss of the child minus its RSS before the model was built;
CUDA = torch.cuda.max_memory_allocated). The systems compared are stepped in lock-step, one
step each in turn (order alternating every round), so load from other processes hits them alike
and the ratios stay fair even when absolute numbers are noisy.

fastai runs in its own interpreter (default .venv-fastai/bin/python): when that is missing the bench
creates it first with `bash scripts/fastai_env.sh` (fastai 2.8.12 beside the same torch); with
--no-fastai, or if that fails, fastai's rows say why they were skipped.

    python scripts/bench.py --quick                      # smoke test, < 1 minute
    python scripts/bench.py --sizes small,paper30k --steps 10 --warmup 3
    python scripts/bench.py --device cuda --precision bf16 --profile
    python scripts/bench.py --sizes paper30k --benches lm --precision fp32,bf16   # bf16 lever, interleaved

Writes <out>/results.json and <out>/results.csv (default outputs/bench/).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as _dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FASTAI_PY = REPO / ".venv-fastai" / "bin" / "python"
WIKI_VALID = REPO.parent / "shared" / "data" / "wikitext2" / "wiki.valid.tokens"
PAD_ID = 1  # ulmfit and fastai both put xxpad at id 1
FIRST_WORD_ID = 9  # ids 0..8 are the special tokens

# Dropouts of conf/model/awd_lstm.yaml (drop_mult 1.0) = fastai's awd_lstm_clas_config.
DROPS = dict(output_p=0.4, hidden_p=0.3, input_p=0.4, embed_p=0.05, weight_p=0.5)
# TrainConfig defaults (ulmfit_cli/config.py): AdamW(0.7, 0.99), eps 1e-5, wd 0.01, AR 2, TAR 1.
OPT = dict(lr=1e-3, beta1=0.7, beta2=0.99, eps=1e-5, weight_decay=0.01)
LM_CLIP, CLF_CLIP, ALPHA, BETA = 0.4, 25.0, 2.0, 1.0

SIZES = {
    # name: model and batch sizes; clf_bs_cpu keeps a CPU run within minutes
    "tiny": dict(vocab=1000, emb=32, hidden=64, layers=3, bs=16, bptt=20, max_len=100,
                 clf_lens=[300], clf_bs_cpu=8, clf_bs_cuda=16),  # 300 > max_len: BPT3C's no_grad chunks run
    "small": dict(vocab=5000, emb=64, hidden=128, layers=3, bs=64, bptt=70, max_len=1400,
                  clf_lens=[200, 1000, 5000], clf_bs_cpu=16, clf_bs_cuda=64),
    "paper30k": dict(vocab=30000, emb=400, hidden=1152, layers=3, bs=64, bptt=70, max_len=1400,
                     clf_lens=[200, 1000, 5000], clf_lens_cpu=[200], clf_bs_cpu=4, clf_bs_cuda=64),
    "paper60k": dict(vocab=60000, emb=400, hidden=1152, layers=3, bs=64, bptt=70, max_len=1400,
                     clf_lens=[200, 1000, 5000], clf_lens_cpu=[200], clf_bs_cpu=4, clf_bs_cuda=64),
}
N_CLASSES = 2


# =========================================================================== worker side
# Runs in a child process (ulmfit's venv, or fastai's). Imports only the stdlib at module
# level so that the fastai interpreter never needs ulmfit_cli, rich, omegaconf...

class NS:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class PeakRSS:
    """Peak resident memory of this process from a baseline on.

    ru_maxrss is not usable as is in a child: at exec the kernel folds the *parent's* high-water
    mark into signal->maxrss (the child shares the parent's mm under vfork), so a child's
    ru_maxrss is never below the coordinator's RSS. Instead the mm's own high-water mark
    (VmHWM) is reset at the baseline (`echo 5 > /proc/self/clear_refs`, Linux >= 4.0) and read at
    the end. Without /proc, falls back to ru_maxrss (and says so).
    """

    def __init__(self):
        import gc

        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM (reset at baseline)"
        except OSError:
            self.method = "ru_maxrss (VmHWM reset unavailable: may include earlier peaks)"
        self.baseline = _proc_status_mb("VmRSS") or _maxrss_mb()

    def peak(self) -> float:
        hwm = _proc_status_mb("VmHWM") if self.method.startswith("VmHWM") else None
        return hwm if hwm is not None else _maxrss_mb()


def _prime(torch, dev):
    """Run each kind of kernel once on tiny tensors, so lazy library initialisation (oneDNN/MKL
    buffers, autograd threads, CUDA context) happens before the memory baseline."""
    import torch.nn.functional as F

    lstm = torch.nn.LSTM(8, 8, batch_first=True).to(dev)
    emb = torch.nn.Embedding(16, 8).to(dev)
    opt = torch.optim.AdamW(list(lstm.parameters()) + list(emb.parameters()))
    x = torch.randint(0, 16, (2, 3), device=dev)
    out, _ = lstm(emb(x))
    loss = F.cross_entropy((out @ emb.weight.t()).reshape(-1, 16), x.reshape(-1)) + out.pow(2).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(lstm.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        lstm(emb(x))
    del lstm, emb, opt, x, out, loss


def _sync(torch, dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _autocast(torch, dev, precision):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)


def _lm_batches(torch, s, seed, n=4):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randint(FIRST_WORD_ID, s["vocab"], (s["bs"], s["bptt"] + 1), generator=g)
        out.append((x[:, :-1].contiguous(), x[:, 1:].contiguous()))
    return out


def _clf_docs(s, doc_len, n_docs, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    docs = [rng.integers(FIRST_WORD_ID, s["vocab"], doc_len).astype(np.int32) for _ in range(n_docs)]
    labels = rng.integers(0, N_CLASSES, n_docs)
    return docs, labels


def _ulmfit_model_cfg(s):
    """The `model` config as the stages get it (a DictConfig), at conf/model/awd_lstm.yaml's dropouts."""
    from omegaconf import OmegaConf

    return OmegaConf.create(dict(name="awd_lstm", emb_size=s["emb"], hidden_size=s["hidden"], n_layers=s["layers"],
                                 drop_mult=1.0, tie_weights=True, clf_hidden=50, clf_dropout=0.1, **DROPS))


def _ulmfit_optimizer(groups):
    from ulmfit_cli.stages.lm import make_optimizer

    cfg = NS(schedule=NS(lr=OPT["lr"], decay=2.6, discriminative=True),
             train=NS(beta1=OPT["beta1"], beta2=OPT["beta2"], eps=OPT["eps"], weight_decay=OPT["weight_decay"]))
    return make_optimizer(cfg, groups)[0]


def _ulmfit_trainer_step(torch, dev, precision, model, opt, step_fn, clip):
    """The body of ulmfit_cli.training.loop.Trainer._train_epoch for one batch (fp32/bf16: no scaling)."""
    from ulmfit_cli.training.loop import autocast_for

    scaler = torch.amp.GradScaler(dev.type, enabled=precision == "fp16")

    def step(batch):
        with autocast_for(dev, precision):
            out = step_fn(model, batch)
        loss = out.loss
        if not torch.isfinite(loss.detach()):
            raise RuntimeError(f"loss became {float(loss)}")
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        gnorm = torch.nn.utils.clip_grad_norm_(params, clip)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        _ = out.report_loss if out.report_loss is not None else float(loss.detach())
        _ = float(gnorm)
        return out.n_units

    return step


def _fastai_optimizer(torch, model, split):
    """fastai's default opt_func (Adam with decoupled wd) over its layer-group splitter, as Learner does."""
    try:
        from fastai.optimizer import Adam

        return Adam(split(model), lr=OPT["lr"], mom=OPT["beta1"], sqr_mom=OPT["beta2"], eps=OPT["eps"],
                    wd=OPT["weight_decay"]), "fastai.Adam"
    except Exception as e:  # pragma: no cover - depends on the fastai version
        print(f"fastai Adam unavailable ({e!r}); using torch AdamW", file=sys.stderr)
        return torch.optim.AdamW(model.parameters(), lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]),
                                 eps=OPT["eps"], weight_decay=OPT["weight_decay"]), "torch.AdamW"


def build_runner(spec):
    """-> (step() -> units, info dict, model) for one (system, task, size) on this process."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    dev = torch.device(spec["device"])
    precision, s, seed = spec["precision"], spec["size"], spec["seed"]
    system, task = spec["system"], spec["task"]
    torch.manual_seed(seed)
    info = {"torch": torch.__version__}
    # Import the system's modules before the RSS baseline so that library code is not counted.
    if system == "fastai":
        import fastai.optimizer  # noqa: F401
        import fastai.text.models.core  # noqa: F401
    elif system == "ulmfit":
        import ulmfit_cli.data.batching  # noqa: F401
        import ulmfit_cli.models  # noqa: F401
        import ulmfit_cli.stages.clf  # noqa: F401
        import ulmfit_cli.stages.lm  # noqa: F401
        import ulmfit_cli.training.loop  # noqa: F401
    it = {"i": 0}

    def nxt(items):
        item = items[it["i"] % len(items)]
        it["i"] += 1
        return item

    # ------------------------------------------------------------------ language model
    if task == "lm":
        data = _lm_batches(torch, s, seed)
        _prime(torch, dev)
        baseline = PeakRSS()
        if system == "ulmfit":
            from ulmfit_cli.data.batching import LMBatch
            from ulmfit_cli.models import build_lm
            from ulmfit_cli.stages.lm import lm_step

            batches = [LMBatch(x, y) for x, y in data]
            model = build_lm(_ulmfit_model_cfg(s), s["vocab"], PAD_ID).to(dev).train()
            opt = _ulmfit_optimizer(model.layer_groups())
            info["optimizer"] = "torch.AdamW (make_optimizer)"
            body = _ulmfit_trainer_step(torch, dev, precision, model, opt, lm_step(ALPHA, BETA, dev), LM_CLIP)
            return (lambda: body(nxt(batches))), info, model, baseline
        if system == "fastai":
            from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_split
            from fastai.text.models.core import get_language_model
            import fastai

            info["fastai"] = fastai.__version__
            config = dict(emb_sz=s["emb"], n_hid=s["hidden"], n_layers=s["layers"], pad_token=PAD_ID, bidir=False,
                          tie_weights=True, out_bias=True, **DROPS)
            model = get_language_model(AWD_LSTM, s["vocab"], config=config, drop_mult=1.0).to(dev).train()
            opt, info["optimizer"] = _fastai_optimizer(torch, model, awd_lstm_lm_split)

            def step():
                x, y = nxt(data)
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                with _autocast(torch, dev, precision):
                    pred, raw_out, out = model(x)  # LinearDecoder -> (decoded, input, dropped input)
                    loss = F.cross_entropy(pred.float().reshape(-1, pred.size(-1)), y.reshape(-1))
                    # RNNRegularizer.after_loss
                    loss = loss + ALPHA * out.float().pow(2).mean()
                    if raw_out.size(1) > 1:
                        loss = loss + BETA * (raw_out[:, 1:] - raw_out[:, :-1]).float().pow(2).mean()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), LM_CLIP)
                opt.step()
                opt.zero_grad()
                _ = float(loss.detach())
                return x.numel()

            return step, info, model, baseline
        if system == "bare":
            class BareLM(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.emb = nn.Embedding(s["vocab"], s["emb"], padding_idx=PAD_ID)
                    sizes = [s["emb"]] + [s["hidden"]] * (s["layers"] - 1) + [s["emb"]]
                    self.rnns = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1], batch_first=True)
                                              for i in range(s["layers"]))
                    self.dec = nn.Linear(s["emb"], s["vocab"])
                    self.dec.weight = self.emb.weight
                    self.hidden = None

                def forward(self, x):
                    h, new = self.emb(x), []
                    for i, rnn in enumerate(self.rnns):
                        h, st = rnn(h, None if self.hidden is None else self.hidden[i])
                        new.append(tuple(t.detach() for t in st))
                    self.hidden = new
                    return self.dec(h)

            model = BareLM().to(dev).train()
            opt = torch.optim.AdamW(model.parameters(), lr=OPT["lr"], betas=(OPT["beta1"], OPT["beta2"]),
                                    eps=OPT["eps"], weight_decay=OPT["weight_decay"])
            info["optimizer"] = "torch.AdamW"

            def step():
                x, y = nxt(data)
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                with _autocast(torch, dev, precision):
                    logits = model(x)
                    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), LM_CLIP)
                opt.step()
                opt.zero_grad(set_to_none=True)
                _ = float(loss.detach())
                return x.numel()

            return step, info, model, baseline

    # ------------------------------------------------------------------ classifier / predict
    if task in ("clf", "predict"):
        doc_len, bs = spec["doc_len"], spec["bs"]
        docs, labels = _clf_docs(s, doc_len, bs * 2, seed)
        _prime(torch, dev)
        baseline = PeakRSS()
        if system == "ulmfit":
            from ulmfit_cli.data.batching import ClassifierBatches
            from ulmfit_cli.models import build_classifier

            model = build_classifier(_ulmfit_model_cfg(s), s["vocab"], PAD_ID, N_CLASSES, s["bptt"],
                                     s["max_len"]).to(dev)
            if task == "clf":
                from ulmfit_cli.stages.clf import clf_step

                batches = list(ClassifierBatches(docs, labels, bs, PAD_ID, s["bptt"], seed=seed).epoch(0))
                model.train()
                opt = _ulmfit_optimizer(model.layer_groups())
                info["optimizer"] = "torch.AdamW (make_optimizer)"
                body = _ulmfit_trainer_step(torch, dev, precision, model, opt, clf_step(dev, False), CLF_CLIP)
                return (lambda: body(nxt(batches))), info, model, baseline
            from ulmfit_cli.stages.clf import predict_proba

            one_batch = docs[:bs]

            def step():
                probs = predict_proba(model, one_batch, bs=bs, pad_id=PAD_ID, reverse=False, device=dev,
                                      precision=precision)
                assert probs.shape == (bs, N_CLASSES)
                return bs

            return step, info, model, baseline
        if system == "fastai":
            import fastai
            from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_clas_split
            from fastai.text.models.core import get_text_classifier

            info["fastai"] = fastai.__version__
            config = dict(emb_sz=s["emb"], n_hid=s["hidden"], n_layers=s["layers"], pad_token=PAD_ID, bidir=False,
                          **DROPS)
            model = get_text_classifier(AWD_LSTM, s["vocab"], N_CLASSES, seq_len=s["bptt"], config=config,
                                        drop_mult=1.0, pad_idx=PAD_ID, max_len=s["max_len"]).to(dev)
            # equal-length documents: no padding needed (what pad_input_chunk would give)
            import numpy as np

            xs = [torch.as_tensor(np.stack(docs[i:i + bs])).long() for i in (0, bs)]
            ys = [torch.as_tensor(labels[i:i + bs]).long() for i in (0, bs)]
            if task == "clf":
                model.train()
                opt, info["optimizer"] = _fastai_optimizer(torch, model, awd_lstm_clas_split)

                def step():
                    k = it["i"] % 2
                    it["i"] += 1
                    x, y = xs[k].to(dev, non_blocking=True), ys[k].to(dev, non_blocking=True)
                    with _autocast(torch, dev, precision):
                        logits = model(x)[0]
                        loss = F.cross_entropy(logits.float(), y)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), CLF_CLIP)
                    opt.step()
                    opt.zero_grad()
                    _ = float(loss.detach())
                    return x.size(0)

                return step, info, model, baseline
            model.eval()

            def step():
                with torch.no_grad(), _autocast(torch, dev, precision):
                    logits = model(xs[0].to(dev))[0].float()
                probs = torch.softmax(logits, -1).cpu().numpy()
                assert probs.shape == (bs, N_CLASSES)
                return bs

            return step, info, model, baseline
    raise ValueError(f"no runner for system={system} task={task}")


def worker_main(spec_json: str) -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)  # the protocol channel
    os.dup2(2, 1)  # anything else printed (library banners, warnings) goes to stderr

    def send(**msg):
        proto.write(json.dumps(msg) + "\n")
        proto.flush()

    spec = json.loads(spec_json)
    try:
        if spec["system"] != "fastai" and str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        import torch

        torch.set_num_threads(spec["threads"])
        dev = torch.device(spec["device"])
        t0 = time.perf_counter()
        step, info, model, baseline = build_runner(spec)
        n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        if dev.type == "cuda":
            torch.cuda.synchronize()
        send(ready=True, setup_s=time.perf_counter() - t0, n_params=n_params, **info)
    except Exception as e:
        import traceback

        traceback.print_exc()
        send(error=f"{type(e).__name__}: {e}")
        return 1
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "step":
                _sync(torch, dev)
                t = time.perf_counter()
                units = step()
                _sync(torch, dev)
                send(dt=time.perf_counter() - t, units=units)
            elif cmd["cmd"] == "profile":
                from torch.profiler import ProfilerActivity, profile

                acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
                with profile(activities=acts, record_shapes=False) as prof:
                    step()
                    _sync(torch, dev)
                ka = prof.key_averages()
                sort = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
                table = ka.table(sort_by=sort, row_limit=25)
                key = (lambda e: e.self_device_time_total) if dev.type == "cuda" else (lambda e: e.self_cpu_time_total)
                total = sum(key(e) for e in ka) or 1
                top = [{"op": e.key, "self_ms": key(e) / 1000, "share": key(e) / total, "calls": e.count}
                       for e in sorted(ka, key=key, reverse=True)[:12]]
                send(table=table, top=top)
            elif cmd["cmd"] == "finish":
                send(bye=True)
                return 0
            elif cmd["cmd"] == "mem":
                peak = baseline.peak()
                mem = {"peak_rss_mb": peak, "baseline_rss_mb": baseline.baseline,
                       "peak_rss_delta_mb": peak - baseline.baseline, "rss_method": baseline.method,
                       "ru_maxrss_mb": _maxrss_mb()}
                if dev.type == "cuda":
                    mem["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
                send(**mem)
        except Exception as e:
            import traceback

            traceback.print_exc()
            send(error=f"{type(e).__name__}: {e}")
            return 1
    return 0


# =========================================================================== coordinator side

class Worker:
    """A child process holding one configuration; steps on demand (JSON lines over pipes)."""

    def __init__(self, name: str, python: str, spec: dict, log_dir: Path, threads: int):
        self.name, self.spec = name, spec
        self.log_path = log_dir / f"{name}.log"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}
        if spec["system"] == "fastai":
            env.pop("PYTHONPATH", None)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([python, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, bufsize=1, env=env, cwd=str(REPO))
        self.times: list[float] = []
        self.units = 0
        self.error: str | None = None
        self.info: dict = {}

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"worker exited (rc {self.proc.returncode}); see {self.log_path}: {self._tail()}")
        msg = json.loads(line)
        if "error" in msg:
            raise RuntimeError(f"{msg['error']} (log: {self.log_path})")
        return msg

    def _tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text().strip().splitlines()[-3:])
        except OSError:
            return ""

    def ready(self):
        try:
            self.info = self._read()
        except Exception as e:
            self.error = str(e)

    def call(self, cmd: str) -> dict | None:
        if self.error:
            return None
        try:
            self.proc.stdin.write(json.dumps({"cmd": cmd}) + "\n")
            self.proc.stdin.flush()
            return self._read()
        except Exception as e:
            self.error = str(e)
            return None

    def close(self):
        with contextlib.suppress(Exception):
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def run_group(group: str, entries: list[tuple[str, str, dict]], args, log_dir: Path, warmup: int,
              profile: bool = False) -> list[dict]:
    """Start one worker per (system, python, spec), then step them in lock-step.

    Timed rounds continue until --steps rounds are done, or (after --min-steps rounds) the
    slowest worker has spent --max-seconds in timed steps. Returns one result row per worker.
    """
    workers = [Worker(f"{group}-{system}-{spec['precision']}", py, spec, log_dir, args.threads)
               for system, py, spec in entries]
    for w in workers:
        w.ready()
    live = lambda: [w for w in workers if not w.error]  # noqa: E731
    for _ in range(warmup):
        for w in live():
            w.call("step")
    rnd = 0
    while live():
        order = live() if rnd % 2 == 0 else live()[::-1]
        for w in order:
            msg = w.call("step")
            if msg:
                w.times.append(msg["dt"])
                w.units = msg["units"]
        rnd += 1
        if rnd >= args.steps:
            break
        if rnd >= args.min_steps and max(sum(w.times) for w in live() or workers) > args.max_seconds:
            break
    mems = {w.name: w.call("mem") or {} for w in workers}  # before profiling, which allocates
    profiles = {}
    if profile:
        for w in live():
            msg = w.call("profile")
            if msg:
                profiles[w.name] = msg
                (log_dir.parent / f"profile_{group}_{w.spec['system']}_{w.spec['precision']}.txt").write_text(
                    msg["table"])
    rows = []
    for w in workers:
        mem = mems[w.name]
        w.call("finish")
        w.close()
        spec = w.spec
        row = {"bench": spec["task"], "size": spec["size_name"], "system": spec["system"],
               "precision": spec["precision"], "doc_len": spec.get("doc_len"), "bs": spec.get("bs", spec["size"]["bs"]),
               "status": "ok" if not w.error else f"error: {w.error}"}
        if w.times:
            med = statistics.median(w.times)
            row.update(throughput=w.units / med, median_step_s=med, steps=len(w.times),
                       throughput_best=w.units / min(w.times), min_step_s=min(w.times),
                       step_times=[round(t, 5) for t in w.times], units_per_step=w.units)
        row.update({k: v for k, v in w.info.items() if k not in ("ready",)})
        row.update(mem)
        if spec["device"].startswith("cuda"):
            row["peak_mem_mb"], row["mem_kind"] = mem.get("cuda_peak_mb"), "cuda_max_allocated"
        else:
            row["peak_mem_mb"], row["mem_kind"] = mem.get("peak_rss_delta_mb"), "rss_delta"
        if w.name in profiles:
            row["profile_top"] = profiles[w.name]["top"]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- tokenization

def bench_tokenize(quick: bool) -> list[dict]:
    sys.path.insert(0, str(REPO))
    from ulmfit_cli.data.tokenizers import fit_numericalizer

    if not WIKI_VALID.is_file():
        return [{"bench": "tokenize", "size": "-", "system": f"ulmfit-{k}", "status": f"no data ({WIKI_VALID})"}
                for k in ("word", "spm")]
    lines = [ln for ln in WIKI_VALID.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if quick:
        lines = lines[:300]
    n_chars = sum(map(len, lines))
    rows = []
    for name, cfg in (("word", {"name": "word", "max_vocab": 60000, "min_freq": 2}),
                      ("spm", {"name": "spm", "vocab_size": 1000 if quick else 8000, "model_type": "unigram"})):
        t0 = time.perf_counter()
        numer = fit_numericalizer(lines, cfg)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ids = numer.encode_many(lines)
        enc_s = time.perf_counter() - t0
        n_tok = int(sum(len(a) for a in ids))
        rows.append({"bench": "tokenize", "size": "wikitext2-valid" + ("[:300]" if quick else ""),
                     "system": f"ulmfit-{name}", "status": "ok", "throughput": n_tok / enc_s,
                     "unit": "tokens/s", "median_step_s": enc_s, "steps": 1, "fit_s": fit_s,
                     "fit_tokens_per_s": n_tok / fit_s, "n_tokens": n_tok, "n_chars": n_chars,
                     "n_docs": len(lines), "vocab_size": len(numer.itos)})
    return rows


# --------------------------------------------------------------------------- metadata

def cpu_info() -> dict:
    model, flags = platform.processor() or "unknown", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "", "x86_64"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    return {"cpu_model": model, "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
            "avx512f": "avx512f" in flags, "cpu_count": os.cpu_count()}


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "") if sha else "unknown"
    except OSError:
        return "unknown"


def make_fastai_env(python: Path, console) -> tuple[bool, str]:
    """Creates the separate fastai venv (scripts/fastai_env.sh, ~1 min from the package registry)
    the first time the bench needs it, then probes it again."""
    console.print(f"fastai: creating {python.parent.parent} with scripts/fastai_env.sh (once; --no-fastai skips) ...")
    p = subprocess.run(["bash", str(REPO / "scripts" / "fastai_env.sh")], cwd=REPO, capture_output=True, text=True)
    if p.returncode != 0:
        return False, f"not installed (scripts/fastai_env.sh failed: {(p.stderr or p.stdout).strip()[-300:]})"
    return fastai_probe(python)


def fastai_probe(python: Path) -> tuple[bool, str]:
    if not python.exists():
        return False, f"not installed ({python} missing; create it with `bash scripts/fastai_env.sh`)"
    p = subprocess.run([str(python), "-c", "import fastai, torch; print(fastai.__version__, torch.__version__)"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return False, f"not installed (import fastai failed in {python}: {p.stderr.strip().splitlines()[-1:]})"
    fv, tv = p.stdout.split()
    return True, f"fastai {fv}, torch {tv}"


# --------------------------------------------------------------------------- output

CSV_COLS = ["bench", "size", "doc_len", "system", "precision", "status", "throughput", "unit", "median_step_s",
            "steps", "throughput_best", "min_step_s", "peak_mem_mb", "mem_kind", "peak_rss_mb", "cuda_peak_mb",
            "ratio_vs_fastai", "ratio_vs_bare", "ratio_best_vs_fastai", "ratio_best_vs_bare", "mem_ratio_vs_fastai",
            "mem_ratio_vs_bare", "ratio_vs_fp32", "ratio_best_vs_fp32", "ratio_vs_fastai_fp32",
            "ratio_best_vs_fastai_fp32", "mem_ratio_vs_fastai_fp32", "bs", "vocab", "emb", "hidden", "layers", "bptt",
            "max_len", "n_params", "optimizer", "torch", "fastai", "fit_s", "fit_tokens_per_s", "n_tokens",
            "device", "device_name", "precision", "threads", "date", "git_commit"]


def add_ratios(rows: list[dict]) -> None:
    """ulmfit / fastai and ulmfit / bare (same precision); bf16 / fp32 (same system); and ulmfit bf16 /
    fastai fp32: what a user gains by switching runner and turning on bf16 (fastai's default is fp32)."""
    by_key = {}
    for r in rows:
        by_key[(r["bench"], r["size"], r.get("doc_len"), r["system"], r.get("precision"))] = r

    def set_ratios(r: dict, system: str, precision: str, name: str, memory: bool = True) -> None:
        o = by_key.get((r["bench"], r["size"], r.get("doc_len"), system, precision))
        if not (o and o.get("throughput")):
            return
        r[f"ratio_vs_{name}"] = r["throughput"] / o["throughput"]
        r[f"ratio_best_vs_{name}"] = r["throughput_best"] / o["throughput_best"]
        if memory and r.get("peak_mem_mb") and o.get("peak_mem_mb"):
            r[f"mem_ratio_vs_{name}"] = r["peak_mem_mb"] / o["peak_mem_mb"]

    for r in rows:
        if not r.get("throughput"):
            continue
        if r.get("precision") == "bf16":
            set_ratios(r, r["system"], "fp32", "fp32", memory=False)
        if r["system"] != "ulmfit":
            continue
        for other in ("fastai", "bare"):
            set_ratios(r, other, r.get("precision"), other)
        if r.get("precision") == "bf16":
            set_ratios(r, "fastai", "fp32", "fastai_fp32")


def fmt(x, nd=1):
    if x is None or x == "":
        return "-"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return str(x)


def ratio(r: dict, other: str) -> str:
    """'median-based (best-step-based)' ratio; the second resists load spikes from other processes."""
    if r.get(f"ratio_vs_{other}") is None:
        return "-"
    return f"{r[f'ratio_vs_{other}']:.2f} ({r[f'ratio_best_vs_{other}']:.2f})"


def print_table(rows: list[dict], meta: dict) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        for r in rows:
            print(r)
        return
    t = Table(title=f"ulmfit bench — {meta['device_name']} · torch {meta['torch']} · {meta['threads']} threads · "
                    f"{meta['precision']} · ratios: median (best step)", show_lines=False)
    multi = len({r.get("precision") for r in rows if r["bench"] != "tokenize"}) > 1
    cols = ["bench", "size", "doc len", "bs", "system"] + (["prec"] if multi else []) + [
        "throughput", "unit", "med step s", "min step s", "steps", "peak mem MB", "ulmfit/fastai", "ulmfit/bare",
        "mem u/f", "mem u/b"] + (["bf16/fp32", "u bf16/f fp32", "mem u bf16/f fp32"] if multi else [])
    for c in cols:
        t.add_column(c, justify="right" if c not in ("bench", "size", "system", "unit", "prec") else "left",
                     no_wrap=True, max_width=22 if c == "throughput" else None)
    for r in rows:
        ok = r.get("status") == "ok"
        cells = [r["bench"], str(r["size"]), fmt(r.get("doc_len")), fmt(r.get("bs")), r["system"]]
        cells += [r.get("precision") or "-"] if multi else []
        cells += [fmt(r.get("throughput")) if ok else f"[yellow]{r.get('status', '')[:60]}[/]",
                  r.get("unit", ""), fmt(r.get("median_step_s"), 3), fmt(r.get("min_step_s"), 3), fmt(r.get("steps")),
                  fmt(r.get("peak_mem_mb"), 0), ratio(r, "fastai"), ratio(r, "bare"),
                  fmt(r.get("mem_ratio_vs_fastai"), 2), fmt(r.get("mem_ratio_vs_bare"), 2)]
        cells += [ratio(r, "fp32"), ratio(r, "fastai_fp32"), fmt(r.get("mem_ratio_vs_fastai_fp32"), 2)] if multi else []
        t.add_row(*cells)
    Console(width=240).print(t)


def write_outputs(out: Path, meta: dict, rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2, default=str))
    common = {k: meta[k] for k in ("device", "device_name", "threads", "date", "git_commit")}
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**common, **r})


# --------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Sizes: " + "; ".join(f"{k}: vocab {v['vocab']}, emb {v['emb']}, hidden "
                                                             f"{v['hidden']}, {v['layers']} layers, bs {v['bs']}, "
                                                             f"bptt {v['bptt']}" for k, v in SIZES.items()))
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads in every worker (default 2; 1 with --quick, which is far less "
                        "sensitive to other processes on a shared machine)")
    p.add_argument("--sizes", default=None,
                   help="comma list of " + ",".join(SIZES) + " (default: small,paper30k on cpu; "
                        "small,paper30k,paper60k on cuda)")
    p.add_argument("--benches", default="lm,clf,predict,tokenize", help="comma list of lm,clf,predict,tokenize")
    p.add_argument("--steps", type=int, default=20, help="timed steps per configuration (upper bound)")
    p.add_argument("--warmup", type=int, default=3, help="untimed LM steps first")
    p.add_argument("--clf-warmup", type=int, default=1, help="untimed classifier/predict steps first")
    p.add_argument("--min-steps", type=int, default=3, help="timed steps always done, whatever --max-seconds")
    p.add_argument("--max-seconds", type=float, default=40.0,
                   help="stop timing a configuration once its slowest system spent this long in timed steps "
                        "(after --min-steps); keeps paper sizes on CPU to minutes")
    p.add_argument("--clf-bs", type=int, default=None, help="classifier/predict batch size (default: per size, "
                   "64 on cuda, 16 (small) / 4 (paper) on cpu)")
    p.add_argument("--clf-lens", default=None,
                   help="document lengths, default 200,1000,5000 (on cpu, paper sizes default to 200 only: the "
                        "3-layer paper LSTM steps through a document one token at a time, tens of ms per token "
                        "on 2 shared cores, so one 1,000-token batch is ~1 min per system)")
    p.add_argument("--precision", default="fp32",
                   help="fp32, bf16 (autocast), or fp32,bf16: both, stepped in lock-step in the same groups")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps: a smoke test (< 1 minute)")
    p.add_argument("--no-fastai", action="store_true", help="skip fastai (and do not create its venv)")
    p.add_argument("--fastai-python", default=str(DEFAULT_FASTAI_PY), help="interpreter of the fastai venv")
    p.add_argument("--profile", action="store_true",
                   help="after timing, profile one LM step of every system (torch.profiler; top ops into the "
                        "JSON, full tables into <out>/profile_*.txt)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPO / "outputs" / "bench"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    if args.threads is None:
        args.threads = 1 if args.quick else 2
    if args.quick:
        args.sizes = args.sizes or "tiny"
        args.steps, args.warmup, args.clf_warmup = min(args.steps, 3), min(args.warmup, 1), min(args.clf_warmup, 1)
        args.min_steps = min(args.min_steps, 3)
    sizes = (args.sizes or ("small,paper30k,paper60k" if args.device == "cuda" else "small,paper30k")).split(",")
    bad = [s for s in sizes if s not in SIZES]
    if bad:
        print(f"unknown size(s) {bad}; choose from {list(SIZES)}", file=sys.stderr)
        return 2
    benches = set(args.benches.split(","))
    precisions = args.precision.split(",")
    if not set(precisions) <= {"fp32", "bf16"}:
        print(f"--precision {args.precision}: use fp32, bf16 or fp32,bf16", file=sys.stderr)
        return 2
    out = Path(args.out)
    log_dir = out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    from rich.console import Console

    console = Console(width=200)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        console.print("[red]--device cuda: no CUDA device visible to torch[/]")
        return 2
    cpu = cpu_info()
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else cpu["cpu_model"]
    fastai_py = Path(args.fastai_python)
    if args.no_fastai:
        have_fastai, fastai_note = False, "skipped (--no-fastai)"
    else:
        have_fastai, fastai_note = fastai_probe(fastai_py)
        if not have_fastai and not fastai_py.exists() and fastai_py == DEFAULT_FASTAI_PY:
            have_fastai, fastai_note = make_fastai_env(fastai_py, console)
        if not have_fastai:
            console.print(f"[yellow]fastai: {fastai_note}[/]\n  To compare against fastai: "
                          f"bash scripts/fastai_env.sh   (creates {DEFAULT_FASTAI_PY.parent.parent})")
    meta = {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "git_commit": git_commit(),
            "device": args.device, "device_name": device_name, "torch": torch.__version__,
            "python": platform.python_version(), "host": socket.gethostname(), "threads": args.threads,
            "precision": args.precision, **cpu,
            "bf16_note": ("CPU has avx512_bf16: bf16 autocast can use native bf16 dot products"
                          if cpu["avx512_bf16"] else "CPU lacks avx512_bf16: bf16 autocast is emulated (usually slower)"),
            "fastai": fastai_note, "sizes": sizes, "benches": sorted(benches), "steps": args.steps,
            "warmup": args.warmup, "clf_warmup": args.clf_warmup, "min_steps": args.min_steps,
            "max_seconds": args.max_seconds, "quick": args.quick, "argv": sys.argv[1:],
            "notes": ["throughput = units per step / median step time over timed steps; throughput_best uses the "
                      "fastest step (robust to stalls caused by other processes on a shared machine)",
                      "systems of one configuration run in separate processes, stepped in lock-step "
                      "(one step each in turn, order alternating), so ratios are fair under load",
                      "CPU peak memory = the child's peak RSS (VmHWM, reset at the baseline) - its RSS at the "
                      "baseline (after imports and one tiny priming step, before the model was built): weights, "
                      "grads, optimizer state, activations. A child's ru_maxrss is not used: it inherits the "
                      "parent's high-water mark at exec. CUDA = torch.cuda.max_memory_allocated",
                      "fastai = fastai's models and Adam in a minimal loop (no Learner callbacks)"]}
    console.print(f"[bold]bench[/] {device_name} · torch {torch.__version__} · threads {args.threads} · "
                  f"{args.precision} · avx512_bf16={cpu['avx512_bf16']} · fastai: {fastai_note}")

    base = {"device": args.device, "threads": args.threads, "seed": args.seed}
    me = sys.executable
    rows: list[dict] = []
    t_start = time.perf_counter()

    def systems(task):
        s = [("ulmfit", me)]
        if task in ("lm", "clf", "predict"):
            s.append(("fastai", str(fastai_py)) if have_fastai else ("fastai", None))
        if task == "lm":
            s.append(("bare", me))
        return s

    def group(task, size_name, extra, warmup, profile=False):
        sz = dict(SIZES[size_name])
        entries, skipped = [], []
        for prec in precisions:
            for system, py in systems(task):
                spec = {**base, "task": task, "system": system, "size_name": size_name, "size": sz,
                        "precision": prec, **extra}
                if py is None:
                    skipped.append({"bench": task, "size": size_name, "system": system, "precision": prec,
                                    "doc_len": extra.get("doc_len"), "bs": extra.get("bs", sz["bs"]),
                                    "status": fastai_note})
                else:
                    entries.append((system, py, spec))
        label = f"{task}-{size_name}" + (f"-L{extra['doc_len']}" if "doc_len" in extra else "")
        t0 = time.perf_counter()
        got = run_group(label, entries, args, log_dir, warmup, profile=profile)
        for r in got + skipped:
            r.update(vocab=sz["vocab"], emb=sz["emb"], hidden=sz["hidden"], layers=sz["layers"], bptt=sz["bptt"],
                     max_len=sz["max_len"] if task != "lm" else None,
                     unit="tokens/s" if task == "lm" else "docs/s")
        rows.extend(got + skipped)
        add_ratios(rows)
        write_outputs(out, {**meta, "partial": True}, rows)  # a killed run still leaves what it measured
        summary = ", ".join(f"{r['system']}{'/' + r['precision'] if len(precisions) > 1 else ''} {fmt(r.get('throughput'))} {'tok/s' if task == 'lm' else 'docs/s'}"
                            if r.get("status") == "ok" else f"{r['system']} {r.get('status', '')[:80]}"
                            for r in got + skipped)
        console.print(f"  {label:<24} {time.perf_counter() - t0:6.1f}s  {summary}")

    for size_name in sizes:
        sz = SIZES[size_name]
        clf_bs = args.clf_bs or (sz["clf_bs_cuda"] if args.device == "cuda" else sz["clf_bs_cpu"])
        lens = ([int(x) for x in args.clf_lens.split(",")] if args.clf_lens
                else sz.get("clf_lens_cpu", sz["clf_lens"]) if args.device == "cpu" else sz["clf_lens"])
        if "lm" in benches:
            group("lm", size_name, {}, args.warmup, profile=args.profile)
        if "clf" in benches:
            for L in lens:
                group("clf", size_name, {"doc_len": L, "bs": clf_bs}, args.clf_warmup)
        if "predict" in benches:
            for L in lens:
                group("predict", size_name, {"doc_len": L, "bs": clf_bs}, args.clf_warmup)
    if "tokenize" in benches:
        t0 = time.perf_counter()
        tok_rows = bench_tokenize(args.quick)
        rows.extend(tok_rows)
        console.print(f"  {'tokenize':<24} {time.perf_counter() - t0:6.1f}s  " + ", ".join(
            f"{r['system']} {fmt(r.get('throughput'), 0)} tok/s (fit {fmt(r.get('fit_s'), 2)}s)" for r in tok_rows))
    meta["total_s"] = round(time.perf_counter() - t_start, 1)
    meta["partial"] = False
    add_ratios(rows)
    write_outputs(out, meta, rows)
    print_table(rows, meta)
    for r in rows:
        if r.get("profile_top"):
            console.print(f"[bold]profile {r['bench']} {r['size']} {r['system']}[/] (self time, top 6): " + "; ".join(
                f"{p['op']} {p['share']:.0%}" for p in r["profile_top"][:6]))
    console.print(f"wrote {out / 'results.json'} and {out / 'results.csv'} ({meta['total_s']}s)")
    failed = [r for r in rows if str(r.get("status", "")).startswith("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
