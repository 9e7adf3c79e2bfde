"""What machine and code a result came from, and the fastai interpreter's state."""
from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from pathlib import Path

from .common import REPO


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


def host_stamp() -> dict:
    """Where and when a result row was measured: date, host, CPU model and this interpreter's torch
    (a fastai row's worker reports its own torch over it)."""
    import datetime as _dt
    import socket

    import torch

    return {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "host": socket.gethostname(),
            "cpu_model": cpu_info()["cpu_model"], "torch": torch.__version__}


def gemm_rate(m: int, k: int, n: int, dtype=None, reps: int = 20) -> float:
    """GFLOP/s of an (m x k) @ (k x n) product in `dtype` (default fp32) on this host, best of `reps`."""
    import torch

    a, b = torch.randn(m, k).to(dtype or torch.float32), torch.randn(k, n).to(dtype or torch.float32)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * m * k * n / best / 1e9
