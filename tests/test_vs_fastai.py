"""studies/vs_fastai.py, reduced (slow tier: `python -m pytest -m slow tests/test_vs_fastai.py`, about
15 minutes on 2 cores): the tiny model, 600 TREC-6 training questions, 2 seeds. It checks the
plumbing the full study relies on, not the numbers: both systems read the same documents, every
row of the table is filled, and a second invocation skips every finished step. Needs
.venv-fastai (bash scripts/fastai_env.sh) and ../shared/data.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FASTAI_PY = REPO / ".venv-fastai" / "bin" / "python"
REDUCED = ["--model", "tiny", "--tasks", "trec6", "--seeds", "0,1", "--max-train", "600", "--max-pretrain-docs", "100",
           "--pretrain-epochs", "1", "--lm-epochs", "2", "--clf-epochs", "5"]


@pytest.mark.slow
def test_vs_fastai_reduced_study_fills_the_table_and_resumes(shared_data, tmp_path):
    if not FASTAI_PY.exists():
        pytest.skip("no .venv-fastai: run bash scripts/fastai_env.sh")
    cmd = [sys.executable, str(REPO / "studies" / "vs_fastai.py"), "--shared", str(shared_data), "--out", str(tmp_path),
           *REDUCED]
    subprocess.run(cmd, check=True)
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["versions"]["fastai"] == "2.8.12"
    t = r["tasks"]["trec6"]
    assert set(t["rows"]) == {"fastai_fwd", "ulmfit_fwd", "ulmfit_ensemble", "tfidf_lr"}
    for key in ("fastai_fwd", "ulmfit_fwd", "ulmfit_ensemble"):
        row = t["rows"][key]
        assert row["seeds"] == [0, 1]
        assert 0 <= row["test_error"]["mean"] <= 100
        assert row["total_train_s"]["mean"] > 0 and row["total_process_s"]["mean"] >= row["total_train_s"]["mean"]
    v, fa_err, ul_err = t["verdict"], t["rows"]["fastai_fwd"]["test_error"], t["rows"]["ulmfit_fwd"]["test_error"]
    assert v["error_gap_points"] == pytest.approx(ul_err["mean"] - fa_err["mean"])
    assert v["error_ok"] == (v["error_gap_points"] <= max(ul_err["std"], fa_err["std"]))
    assert v["time_ratio_ulmfit_over_fastai"] > 0 and isinstance(v["time_ok"], bool)
    md = (tmp_path / "results.md").read_text()
    assert "| fastai 2.8.12, fwd | 2 |" in md and "| ulmfit, fwd+bwd ensemble | 2 |" in md

    # the same documents on both sides
    for seed in (0, 1):
        d = tmp_path / "trec6" / f"s{seed}"
        fa = json.loads((d / "fastai_clf" / "summary.json").read_text())
        ul = json.loads((d / "ulmfit_clf_fwd" / "summary.json").read_text())
        assert fa["n_train"] == ul["n_train"] == 600
        assert fa["n_test"] == 500 and fa["classes"] == ul["classes"]
        assert json.loads((d / "fastai_lm" / "summary.json").read_text())["train_docs"] == 600

    # a finished study is not redone
    stamps = {p: p.stat().st_mtime for p in tmp_path.glob("trec6/s*/*/summary.json")}
    again = subprocess.run(cmd, check=True, capture_output=True, text=True)
    assert "$ ulmfit" not in again.stdout and "vs_fastai_worker.py" not in again.stdout
    assert {p: p.stat().st_mtime for p in stamps} == stamps
