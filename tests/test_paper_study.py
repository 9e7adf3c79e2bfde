"""studies/paper_study.py --quick (integration tier: a tiny model, 3 steps an epoch, about 6 minutes
on 2 cores): the IMDb part and its three 100-label probes run end to end, print their tables, hand
each run the LM it names, and a second invocation skips every finished run."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]


def study(out: Path, shared: Path) -> str:
    # the user's override for every run: it must win over the classifiers' own train.epochs
    cmd = [sys.executable, str(REPO / "studies" / "paper_study.py"), "--quick", "--seeds", "0",
           "--parts", "imdb,recipe100,lm_tokens100,bidir100", "--shared", str(shared), "--out", str(out), "--", "train.epochs=2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.integration
def test_imdb_probes_run_on_the_lms_they_name_and_resume_as_no_ops(shared_data, tmp_path):
    first = study(tmp_path, shared_data)
    # the recipe probe: one row per override, each a run with that override
    for override in ("ablation=clf_freez_stlr", "unfreeze=none", "ablation=clf_last", "model.drop_mult=1.0",
                     "schedule.lr=0.001", "train.epochs=48"):
        assert re.search(rf"^\| `{re.escape(override)}` \| \d+\.\d\d \| \d+\.\d\d \(n=1\) \|$", first, re.M), override
    probe = tmp_path / "probe" / "recipe100_last" / "s0"
    assert "ablation=clf_last" in (probe / ".hydra" / "overrides.yaml").read_text()
    # the LM probe: the warm-started LM starts from the study's LM, reads another shuffle (seed 1),
    # and its token count adds the study LM's
    twice = json.loads((tmp_path / "lm" / "imdb_twice" / "summary.json").read_text())
    assert Path(twice["started_from"]) == tmp_path / "lm" / "imdb"
    assert "seed=1" in (tmp_path / "lm" / "imdb_twice" / ".hydra" / "overrides.yaml").read_text()
    rows = dict(re.findall(r"^\| `([^`]+)`: ~(\d+\.\d)M IMDb tokens, (?:WikiText-2|IMDb) val perplexity", first, re.M))
    assert list(rows) == ["pretrain", "lm/imdb_1200", "lm/imdb", "lm/imdb_twice", "lm/imdb_random"]
    assert rows["pretrain"] == "0.0" and float(rows["lm/imdb_twice"]) >= float(rows["lm/imdb"])
    assert rows["lm/imdb_random"] == rows["lm/imdb"]  # the study's LM again, from a random start
    assert re.search(r"^\| `lm/imdb_random`: .* \(from a random LM, no WikiText-2\) \|", first, re.M)
    random_lm = json.loads((tmp_path / "lm" / "imdb_random" / "summary.json").read_text())
    assert random_lm.get("started_from") is None
    clf = json.loads((tmp_path / "probe" / "lm_tokens100_pretrain" / "s0" / "summary.json").read_text())
    assert Path(clf["started_from"]) == tmp_path / "pretrain"
    # --quick's cap and the user's overrides win over each run's own cap (1200) and epochs (1, 12)
    for run_dir in ("lm/imdb_1200", "lm/imdb_twice", "probe/lm_tokens100_pretrain/s0", "clf/figure3_100_ulmfit/s0"):
        train = OmegaConf.load(tmp_path / run_dir / ".hydra" / "config.yaml").train
        assert (train.max_steps_per_epoch, train.epochs) == (3, 2), run_dir
    check_bidir100(tmp_path, first)
    # resumable: everything is skipped, the same tables print again
    second = study(tmp_path, shared_data)
    assert "$ ulmfit" not in second
    assert [ln for ln in second.splitlines() if ln.startswith("|")] == [ln for ln in first.splitlines()
                                                                          if ln.startswith("|")]


def table_row(stdout: str, label: str) -> float:
    (value,) = re.findall(rf"^\| {re.escape(label)} \| (\d+\.\d\d) \|", stdout, re.M)
    return float(value)


def check_bidir100(out: Path, stdout: str) -> None:
    """The backward LM is pretrained and fine-tuned backward, like the study's forward one; the
    ensemble rows are the error of the two runs' mean probabilities, computed here from their
    predictions_test.csv."""
    lm = json.loads((out / "lm" / "imdb_bwd" / "summary.json").read_text())
    assert Path(lm["started_from"]) == out / "pretrain_bwd" and list(lm["results"]) == ["bwd"]
    for kind in ("ulmfit", "scratch"):
        fwd_dir, bwd_dir = out / "clf" / f"figure3_100_{kind}" / "s0", out / "probe" / f"bidir100_{kind}_bwd" / "s0"
        bwd = json.loads((bwd_dir / "summary.json").read_text())
        assert bwd.get("started_from") == (str(out / "lm" / "imdb_bwd") if kind == "ulmfit" else None)
        assert table_row(stdout, f"{kind}: bwd") == round(bwd["results"]["bwd"]["test_error"], 2)
        a, b = (pd.read_csv(d / "predictions_test.csv") for d in (fwd_dir, bwd_dir))
        mean_pos = (a["p_pos"] + b["p_pos"]) / 2
        expected = 100 * np.mean(np.where(mean_pos > 0.5, "pos", "neg") != a["label"])
        assert table_row(stdout, f"{kind}: fwd + bwd") == round(expected, 2)
