"""Coordinator side of the step benches: one worker process per configuration, stepped in
lock-step (one step each in turn, order alternating every round), so that load from other
processes hits every system alike and the ratios stay fair when absolute numbers are noisy."""
from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
from pathlib import Path

from .common import BENCH, REPO


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
        self.proc = subprocess.Popen([python, str(BENCH), "--worker", json.dumps(spec)],
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


def live(workers: list[Worker]) -> list[Worker]:
    return [w for w in workers if not w.error]


def step_rounds(workers: list[Worker], args, warmup: int) -> None:
    """Untimed warm-up rounds, then timed rounds until --steps rounds are done, or (after
    --min-steps rounds) the slowest worker has spent --max-seconds in timed steps."""
    for _ in range(warmup):
        for w in live(workers):
            w.call("step")
    rnd = 0
    while live(workers):
        order = live(workers) if rnd % 2 == 0 else live(workers)[::-1]
        for w in order:
            msg = w.call("step")
            if msg:
                w.times.append(msg["dt"])
                w.units = msg["units"]
        rnd += 1
        if rnd >= args.steps:
            break
        if rnd >= args.min_steps and max(sum(w.times) for w in live(workers) or workers) > args.max_seconds:
            break


def profiles(workers: list[Worker], group: str, out_dir: Path) -> dict:
    """One profiled step per live worker; the full tables go to <out>/profile_*.txt."""
    got = {}
    for w in live(workers):
        msg = w.call("profile")
        if msg:
            got[w.name] = msg
            (out_dir / f"profile_{group}_{w.spec['system']}_{w.spec['precision']}.txt").write_text(msg["table"])
    return got


def result_row(w: Worker, mem: dict, profile: dict | None) -> dict:
    spec = w.spec
    row = {"bench": spec["task"], "size": spec["size_name"], "system": spec["system"],
           "precision": spec["precision"], "doc_len": spec.get("doc_len"), "bs": spec.get("bs", spec["size"]["bs"]),
           "status": "ok" if not w.error else f"error: {w.error}"}
    if w.times:
        med = statistics.median(w.times)
        row.update(throughput=w.units / med, median_step_s=med, steps=len(w.times),
                   throughput_best=w.units / min(w.times), min_step_s=min(w.times),
                   step_times=[round(t, 5) for t in w.times], units_per_step=w.units)
    row.update({k: v for k, v in w.info.items() if k != "ready"})
    row.update(mem)
    if spec["device"].startswith("cuda"):
        row["peak_mem_mb"], row["mem_kind"] = mem.get("cuda_peak_mb"), "cuda_max_allocated"
    else:
        row["peak_mem_mb"], row["mem_kind"] = mem.get("peak_rss_delta_mb"), "rss_delta"
    if profile:
        row["profile_top"] = profile["top"]
    return row


def run_group(group: str, entries: list[tuple[str, str, dict]], args, log_dir: Path, warmup: int,
              profile: bool = False) -> list[dict]:
    """Start one worker per (system, python, spec), step them in lock-step; one result row each."""
    workers = [Worker(f"{group}-{system}-{spec['precision']}", py, spec, log_dir, args.threads)
               for system, py, spec in entries]
    for w in workers:
        w.ready()
    step_rounds(workers, args, warmup)
    mems = {w.name: w.call("mem") or {} for w in workers}  # before profiling, which allocates
    profs = profiles(workers, group, log_dir.parent) if profile else {}
    rows = []
    for w in workers:
        w.call("finish")
        w.close()
        rows.append(result_row(w, mems[w.name], profs.get(w.name)))
    return rows
