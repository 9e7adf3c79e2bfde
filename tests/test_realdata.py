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
    subprocess.run([sys.executable, str(REPO / "scripts" / "realdata_trec6.py"), "--shared", str(shared_data),
                    "--out", str(tmp_path)], check=True)
    r = json.loads((tmp_path / "results.json").read_text())["trec6_test_error"]
    assert r["ulmfit"]["ensemble"] < r["from_scratch"]["ensemble"]
    assert r["ulmfit"]["ensemble"] < r["no_pretraining"]["ensemble"]
