"""scripts/bench.py --quick runs end to end (ulmfit + bare only) and writes complete results."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
def test_bench_quick(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--quick", "--no-fastai", "--threads", "1",
         "--benches", "lm,clf,predict,tokenize", "--out", str(out)],
        capture_output=True, text=True, timeout=110, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    meta = data["meta"]
    for key in ("device", "device_name", "torch", "threads", "date", "git_commit", "avx512_bf16", "precision"):
        assert key in meta, key
    assert meta["threads"] == 1 and meta["device"] == "cpu"
    rows = {(r["bench"], r["system"]): r for r in data["results"]}
    for key in [("lm", "ulmfit"), ("lm", "bare"), ("clf", "ulmfit"), ("predict", "ulmfit")]:
        r = rows[key]
        assert r["status"] == "ok", r
        assert r["throughput"] > 0 and r["median_step_s"] > 0 and r["steps"] >= 2
        assert r["peak_mem_mb"] is not None and r["peak_mem_mb"] > 0 and r["n_params"] > 0
        assert r["unit"] == ("tokens/s" if key[0] == "lm" else "docs/s")
    assert rows[("lm", "fastai")]["status"].startswith("skipped")
    assert rows[("lm", "ulmfit")]["ratio_vs_bare"] > 0
    tok = [r for r in data["results"] if r["bench"] == "tokenize"]
    assert {r["system"] for r in tok} == {"ulmfit-word", "ulmfit-spm"}
    for r in tok:
        assert r["status"] == "ok" and r["throughput"] > 0 or r["status"].startswith("no data")
    with open(out / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(data["results"]) and "ratio_vs_bare" in csv_rows[0]
