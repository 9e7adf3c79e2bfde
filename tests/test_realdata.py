"""Real-data checks (slow: tens of minutes on 2 CPU cores). Run with `python -m pytest -m slow`
or `bash scripts/realdata.sh`; they read ../shared/data."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_trec6_pretraining_and_lm_finetuning_cut_error(shared_data, tmp_path):
    subprocess.run([sys.executable, str(REPO / "studies" / "realdata_trec6.py"), "--shared", str(shared_data),
                    "--out", str(tmp_path)], check=True)
    r = json.loads((tmp_path / "results.json").read_text())["trec6_test_error"]
    assert r["ulmfit"]["ensemble"] < r["from_scratch"]["ensemble"]
    assert r["ulmfit"]["ensemble"] < r["no_pretraining"]["ensemble"]


@pytest.mark.slow
def test_imdb_low_shot_lm_fine_tuning_beats_scratch(shared_data, tmp_path):
    """The paper's headline (Figure 3), CPU-sized: with 100 and with 1,000 labels the classifier on
    the fine-tuned LM errs less than the same classifier from scratch (about an hour on 2 cores)."""
    subprocess.run([sys.executable, str(REPO / "studies" / "realdata_imdb_lowshot.py"), "--shared", str(shared_data),
                    "--out", str(tmp_path)], check=True)
    r = json.loads((tmp_path / "results.json").read_text())["imdb_test_error"]
    for n in ("100", "1000"):
        assert r[n]["ulmfit"] < r[n]["from_scratch"], r


@pytest.mark.slow
def test_bf16_trains_to_fp32_perplexity(tmp_path, shared_data):
    subprocess.run([sys.executable, str(REPO / "studies" / "bf16_parity.py"), "--shared", str(shared_data),
                    "--out", str(tmp_path)], check=True)
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["parity"], r
