"""The worker process: builds one (system, task, size, precision) configuration, then steps it
on the coordinator's command (JSON lines: stdin in, the original stdout out).

Imports only the stdlib at module level: it also runs in fastai's interpreter.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import time
from pathlib import Path

from .common import FIRST_WORD_ID, N_CLASSES, REPO, n_params

RUNNERS = {"ulmfit": "benchlib.runners_ulmfit", "fastai": "benchlib.runners_fastai", "bare": "benchlib.runners_bare"}


def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def maxrss_mb() -> float:
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
        self.baseline = _proc_status_mb("VmRSS") or maxrss_mb()

    def peak(self) -> float:
        hwm = _proc_status_mb("VmHWM") if self.method.startswith("VmHWM") else None
        return hwm if hwm is not None else maxrss_mb()


def prime(torch, dev):
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


def sync(torch, dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def autocast(torch, dev, precision):
    """The comparison runners' autocast; ulmfit's Trainer applies its own."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)


class Cycle:
    """Endless round-robin over a few prepared batches (no data loading inside a timed step)."""

    def __init__(self, items):
        self.items, self.i = list(items), 0

    def __call__(self):
        item = self.items[self.i % len(self.items)]
        self.i += 1
        return item


def make_data(torch, spec, n=4):
    """Random token ids: LM (x, y) pairs, or equal-length classifier documents and labels."""
    s, seed = spec["size"], spec["seed"]
    if spec["task"] == "lm":
        g = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(n):
            x = torch.randint(FIRST_WORD_ID, s["vocab"], (s["bs"], s["bptt"] + 1), generator=g)
            out.append((x[:, :-1].contiguous(), x[:, 1:].contiguous()))
        return out
    import numpy as np

    rng = np.random.default_rng(seed)
    n_docs = spec["bs"] * 2
    docs = [rng.integers(FIRST_WORD_ID, s["vocab"], spec["doc_len"]).astype(np.int32) for _ in range(n_docs)]
    return docs, rng.integers(0, N_CLASSES, n_docs)


def build(spec):
    """-> (step() -> units, info, model, PeakRSS) for this process's configuration."""
    import torch

    dev = torch.device(spec["device"])
    torch.manual_seed(spec["seed"])
    runners = importlib.import_module(RUNNERS[spec["system"]])
    # The system's imports and config come before the RSS baseline: library code is not counted.
    info, prepared = runners.prepare(spec)
    data = make_data(torch, spec)
    prime(torch, dev)
    baseline = PeakRSS()
    step, more, model = runners.build(spec, dev, data, prepared)
    return step, {"torch": torch.__version__, **info, **more}, model, baseline


def profile_step(torch, dev, step) -> dict:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts, record_shapes=False) as prof:
        step()
        sync(torch, dev)
    ka = prof.key_averages()
    cuda = dev.type == "cuda"
    table = ka.table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=25)
    key = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)
    total = sum(key(e) for e in ka) or 1
    top = [{"op": e.key, "self_ms": key(e) / 1000, "share": key(e) / total, "calls": e.count}
           for e in sorted(ka, key=key, reverse=True)[:12]]
    return {"table": table, "top": top}


def memory(torch, dev, baseline) -> dict:
    peak = baseline.peak()
    mem = {"peak_rss_mb": peak, "baseline_rss_mb": baseline.baseline, "peak_rss_delta_mb": peak - baseline.baseline,
           "rss_method": baseline.method, "ru_maxrss_mb": maxrss_mb()}
    if dev.type == "cuda":
        mem["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return mem


def serve(send, torch, dev, step, baseline) -> int:
    """Answer the coordinator's commands until `finish` (or stdin closes)."""
    for line in sys.stdin:
        cmd = json.loads(line)["cmd"]
        if cmd == "step":
            sync(torch, dev)
            t = time.perf_counter()
            units = step()
            sync(torch, dev)
            send(dt=time.perf_counter() - t, units=units)
        elif cmd == "profile":
            send(**profile_step(torch, dev, step))
        elif cmd == "mem":
            send(**memory(torch, dev, baseline))
        elif cmd == "finish":
            send(bye=True)
            return 0
    return 0


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
        step, info, model, baseline = build(spec)
        sync(torch, dev)
        send(ready=True, setup_s=time.perf_counter() - t0, n_params=n_params(model), **info)
        return serve(send, torch, dev, step, baseline)
    except Exception as e:
        import traceback

        traceback.print_exc()
        send(error=f"{type(e).__name__}: {e}")
        return 1
