"""benchmarks/bench.py --quick runs end to end (ulmfit + bare only) and writes complete results."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WIKITEXT2 = REPO.parent / "shared" / "data" / "wikitext2"


def bench(tmp_path, *argv) -> dict:
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench.py"), "--quick", "--no-fastai", "--threads", "1",
         "--out", str(out), *argv],
        capture_output=True, text=True, timeout=110, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_bench_quick(tmp_path):
    data = bench(tmp_path, "--benches", "lm,clf,predict,tokenize")
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
    assert "make_optimizer" in rows[("lm", "ulmfit")]["optimizer"]  # the stage's own wiring, not a copy
    assert rows[("lm", "fastai")]["status"].startswith("skipped")
    assert rows[("lm", "ulmfit")]["ratio_vs_bare"] > 0
    tok = [r for r in data["results"] if r["bench"] == "tokenize"]
    assert {r["system"] for r in tok} == {"ulmfit-word", "ulmfit-spm"}
    for r in tok:  # the tokenizer bench reads WikiText-2's valid split; without it, it says so
        if (WIKITEXT2 / "wiki.valid.tokens").is_file():
            assert r["status"] == "ok" and r["throughput"] > 0, r
        else:
            assert r["status"].startswith("no data"), r
    with open(tmp_path / "bench" / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(data["results"]) and "ratio_vs_bare" in csv_rows[0]


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.skipif(not (WIKITEXT2 / "wiki.valid.tokens").exists(), reason="needs ../shared/data/wikitext2")
def test_bench_e2e_quick(tmp_path):
    """A real `ulmfit pretrain` of 3 steps, read back from its own metrics.csv."""
    data = bench(tmp_path, "--benches", "e2e", "--no-e2e-step")
    rows = {r["system"]: r for r in data["results"] if r["bench"] == "e2e"}
    r = rows["ulmfit"]
    assert r["status"] == "ok", r
    assert r["steps"] == 3 and r["tokens"] > 0 and r["vocab"] > 0
    assert r["throughput"] > 0 and 0 < r["throughput_loop"] <= r["throughput"] * 1.01
    assert r["eval_s"] > 0 and r["process_s"] > r["loop_s"] + r["eval_s"]
    assert r["process_peak_rss_mb"] > 0
    assert Path(r["run_dir"], "summary.json").exists()
    assert rows["fastai"]["status"].startswith("skipped")
