"""benchmarks/bench.py --quick runs end to end (ulmfit + bare only; the e2e test with fastai too when
.venv-fastai exists) and writes complete results."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WIKITEXT2 = REPO.parent / "shared" / "data" / "wikitext2"
IMDB = REPO.parent / "shared" / "data" / "imdb"
FASTAI_PY = REPO / ".venv-fastai" / "bin" / "python"
E2E_COMMANDS = ("pretrain", "finetune-lm", "train-clf", "predict")
E2E_KEYS = {"bench", "command", "size", "vocab_preset", "system", "precision", "status", "unit", "bs", "bptt", "vocab",
            "steps", "rounds", "throughput", "throughput_loop", "loop_s", "eval_s", "process_s", "process_peak_rss_mb",
            "units_seen", "tokens_seen", "run_dir", "date", "host", "torch", "per_round"}


def bench(tmp_path, *argv, fastai: bool = False, timeout: int = 110) -> dict:
    """bench.py --quick with one thread; fastai only when asked (else --no-fastai: the bench would
    otherwise create .venv-fastai from the package registry)."""
    out = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench.py"), "--quick", *([] if fastai else ["--no-fastai"]),
         "--threads", "1", "--out", str(out), *argv],
        capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
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
@pytest.mark.timeout(600)
@pytest.mark.skipif(not (WIKITEXT2 / "wiki.valid.tokens").exists() or not (IMDB / "train.csv.gz").exists(),
                    reason="needs ../shared/data/wikitext2 and ../shared/data/imdb")
def test_bench_e2e_quick(tmp_path):
    """The four commands as users run them (3 LM steps; 1 step per unfreezing phase; 200 reviews to
    predict), each read back from its own run, beside fastai's worker on the same ids when
    .venv-fastai exists; fixed BPTT, so that both LMs train on exactly the same number of tokens."""
    fastai = FASTAI_PY.exists()
    data = bench(tmp_path, "--benches", "e2e", "--no-e2e-step", "--e2e-fixed-bptt", fastai=fastai, timeout=560)
    rows = {(r["command"], r["system"]): r for r in data["results"] if r["bench"] == "e2e"}
    assert sorted(rows) == sorted((c, s) for c in E2E_COMMANDS for s in ("ulmfit", "fastai"))
    for command in E2E_COMMANDS:
        u, f = rows[(command, "ulmfit")], rows[(command, "fastai")]
        assert u["status"] == "ok", u
        assert E2E_KEYS <= set(u), E2E_KEYS - set(u)
        assert u["throughput"] > 0 and u["throughput_loop"] > 0 and u["units_seen"] > 0 and u["tokens_seen"] > 0
        assert 0 < u["loop_s"] < u["process_s"] and u["process_peak_rss_mb"] > 0 and u["vocab"] > 0
        assert u["unit"] == ("tokens/s" if command in ("pretrain", "finetune-lm") else "docs/s")
        assert Path(u["run_dir"]).is_dir() and u["command_line"].startswith(f"ulmfit {command} ")
        if not fastai:
            assert f["status"].startswith("skipped"), f
            continue
        assert f["status"] == "ok", f
        assert E2E_KEYS <= set(f), E2E_KEYS - set(f)
        assert f["throughput"] > 0 and f["throughput_loop"] > 0 and 0 < f["loop_s"] < f["process_s"]
        assert (f["units_seen"], f["tokens_seen"], f.get("docs_seen")) == \
            (u["units_seen"], u["tokens_seen"], u.get("docs_seen")), command  # the same work
        assert (f["vocab"], f["bs"], f["steps"]) == (u["vocab"], u["bs"], u["steps"])
        assert u["ratio_loop_vs_fastai"] > 0 and u["process_ratio_vs_fastai"] > 0 and u["rss_ratio_vs_fastai"] > 0
    clf = rows[("train-clf", "ulmfit")]
    # ulmfit's default unfreeze.steps=[1,2,3,4]: 5 phases of 1 step, each over every training review
    assert clf["phases"] == 5 and clf["steps_seen"] == 5 and clf["docs_seen"] == 5 * clf["bs"]
    assert rows[("predict", "ulmfit")]["docs_seen"] == 200
    assert Path(rows[("pretrain", "ulmfit")]["run_dir"], "summary.json").exists()
    assert data["meta"]["e2e_commands"] == list(E2E_COMMANDS)
    with open(tmp_path / "bench" / "results.csv") as f:
        assert {r["command"] for r in csv.DictReader(f)} == set(E2E_COMMANDS)
