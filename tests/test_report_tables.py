"""`ulmfit report`'s tables on hand-made run dirs shaped like a quickstart's (no training): one table
per stage, short run names, only the columns that vary, and the best run of each figure marked."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ulmfit_cli.commands.report import main, seed_aggregates
from ulmfit_cli.reporting.sweep import collect_runs
from ulmfit_cli.reporting.tables import best_rows, short_names, stage_tables

METRICS_HEADER = "stage,direction,epoch,step,split,loss,accuracy,perplexity,lr,throughput,elapsed_s\n"


def make_run(d: Path, stage: str, dataset: str, results: dict, overrides=(), wall=10.0, summary=True, **extra) -> Path:
    """A run dir as a stage leaves it: .hydra/overrides.yaml, config.yaml, metrics.csv, summary.json."""
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["experiment=quickstart", *overrides]))
    (d / "config.yaml").write_text(yaml.safe_dump({"stage": stage, "seed": 0, "dataset": {"name": dataset}}))
    (d / "metrics.csv").write_text(METRICS_HEADER + f"{stage},fwd,1,92,train,3.5,,,0.003,4485.5,26.2\n")
    if summary:
        (d / "summary.json").write_text(json.dumps({"stage": stage, "run_dir": str(d), "results": results,
                                                    "wall_time_s": wall, "dataset": dataset, **extra}))
    return d


def lm(ppl_fwd: float, ppl_bwd: float) -> dict:
    import math

    return {d: {"val_loss": math.log(p), "val_perplexity": p, "val_accuracy": 0.68, "epochs": 4, "train_tokens": 118921}
            for d, p in (("fwd", ppl_fwd), ("bwd", ppl_bwd))}


@pytest.fixture
def outputs(tmp_path):
    return make_outputs(tmp_path)


def make_outputs(tmp_path: Path) -> Path:
    """One pretrain run, two finetune-lm runs (each best in one direction) and a 3-job train-clf sweep
    over schedule.cut_frac whose job 2 failed; every job read the same LM and the same baseline."""
    out = tmp_path / "outputs"
    make_run(out / "pretrain" / "2026-12-07_01-21-19-550663", "pretrain", "sample_general", lm(3.25, 3.41), wall=252.5)
    make_run(out / "finetune-lm" / "2026-12-07_01-21-19-550663", "finetune-lm", "sample", lm(2.5, 2.9), wall=130.0)
    make_run(out / "finetune-lm" / "2026-12-07_02-00-00-000001", "finetune-lm", "sample", lm(2.7, 2.6), wall=120.0)
    sweep = out / "multirun" / "train-clf" / "2026-12-07_03-00-00"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"overrides": {"task": ["experiment=quickstart", "schedule.cut_frac=0.1,0.2,0.3"]}}}))
    errors = {0: (20.0, 12.5), 1: (15.0, 17.5), 2: None}
    for job, err in errors.items():
        clf = {"fwd": {"val_loss": 0.5, "val_accuracy": 0.8, "val_error": err[0], "test_accuracy": 0.85,
                       "test_error": err[1], "epochs": 3}} if err else {}
        d = make_run(sweep / str(job), "train-clf", "sample", clf, [f"schedule.cut_frac=0.{job + 1}"],
                     wall=30.0 + job, summary=err is not None,
                     baselines={"tfidf_lr": {"val_error": 22.0, "test_error": 21.0}},
                     lm_results={"fwd": {"val_perplexity": 2.5, "val_loss": 0.92}})
        (d / ".hydra" / "job_status.json").write_text(json.dumps(
            {"job": job, "status": "ok" if err else "failed", "error": None if err else "UserError: boom"}))
    return out


def tables_of(out: Path):
    df = collect_runs([out])
    return {t.stage: t for t in stage_tables(df, seed_aggregates(df), None)}


def test_one_table_per_stage_with_short_names_and_only_the_columns_that_vary(outputs):
    tables = tables_of(outputs)
    assert list(tables) == ["pretrain", "finetune-lm", "train-clf"]
    pre, ft, clf = tables["pretrain"], tables["finetune-lm"], tables["train-clf"]
    assert pre.names == ["12-07 01:21:19"] and ft.names == ["12-07 01:21:19", "12-07 02:00:00"]
    assert clf.names == ["0", "1", "2"]
    # An LM's loss is its perplexity on another scale; epochs and tokens are no score.
    assert ft.columns == ["fwd.val_perplexity", "bwd.val_perplexity", "wall_time_s"]
    assert pre.constant == {"dataset": "sample_general"} and ft.constant == {"dataset": "sample"}
    # The swept key varies; the baseline and the LM under every job are said once, not per row.
    assert clf.columns == ["schedule.cut_frac", "fwd.val_error", "fwd.test_error", "wall_time_s"]
    assert clf.constant == {"dataset": "sample", "lm.fwd.val_perplexity": 2.5, "tfidf_lr.val_error": 22.0,
                            "tfidf_lr.test_error": 21.0}
    assert list(clf.runs["status"]) == ["ok", "ok", "failed"]


def test_best_run_per_figure_in_its_direction_and_no_mark_on_settings(outputs):
    tables = tables_of(outputs)
    ft, clf = tables["finetune-lm"], tables["train-clf"]
    assert ft.best == {"fwd.val_perplexity": {0}, "bwd.val_perplexity": {1}, "wall_time_s": {1}}
    # The failed job holds no figure; the swept knob is not a score.
    assert clf.best == {"fwd.val_error": {1}, "fwd.test_error": {0}, "wall_time_s": {0}}
    assert tables["pretrain"].best == {}  # one run: nothing to compare
    runs = pd.DataFrame({"status": ["ok", "ok", "ok", "failed"], "fwd.val_f1_micro": [0.5, 0.7, 0.7, 0.9],
                         "fwd.val_accuracy": [0.9, 0.8, 0.85, None], "fwd.epochs": [3, 4, 5, None],
                         "fwd.val_error": [10.0, 10.0, 10.0, None]})
    assert best_rows(runs, "fwd.val_f1_micro") == {1, 2}  # higher is better; ties all marked; a failed run never
    assert best_rows(runs, "fwd.val_accuracy") == {0}
    assert best_rows(runs, "fwd.epochs") == set() and best_rows(runs, "fwd.val_error") == set()


def test_short_names_grow_only_as_far_as_needed():
    def runs(*dirs):
        return pd.DataFrame({"run_dir": list(dirs), "run": [Path(d).name for d in dirs], "job": [pd.NA] * len(dirs)})

    assert short_names(runs("o/2025-12-31_23-59-59-1", "o/2026-01-01_00-00-01-2")) == \
        ["2025-12-31 23:59:59", "2026-01-01 00:00:01"]
    # two runs started in the same second: the whole name
    assert short_names(runs("o/2026-12-07_01-21-19-1", "o/2026-12-07_01-21-19-2")) == \
        ["2026-12-07_01-21-19-1", "2026-12-07_01-21-19-2"]
    assert short_names(runs("outputs/es", "outputs/2026-12-07_01-21-19-2")) == ["es", "12-07 01:21:19"]


def test_jobs_of_two_sweeps_are_named_by_sweep_time_and_job_number(outputs):
    first = outputs / "multirun" / "train-clf" / "2026-12-07_03-00-00"
    second = first.with_name("2026-12-07_04-30-00")
    second.mkdir()
    (second / "multirun.yaml").write_text((first / "multirun.yaml").read_text())
    make_run(second / "0", "train-clf", "sample", {"fwd": {"val_error": 9.0, "test_error": 9.5}}, ["schedule.cut_frac=0.1"])
    clf = tables_of(outputs / "multirun")["train-clf"]
    assert clf.names == ["12-07 03:00:00/0", "12-07 03:00:00/1", "12-07 03:00:00/2", "12-07 04:30:00/0"]
    assert clf.best["fwd.val_error"] == {3}


def no_plots(monkeypatch):
    """The plots are tests/test_sweeps.py's; drawing them here would only slow the default tier."""
    from ulmfit_cli.commands import report

    monkeypatch.setattr(report, "make_plots", lambda df, out, metric: [])


def test_terminal_fits_and_marks_best_markdown_keeps_full_paths(outputs, capsys, monkeypatch):
    no_plots(monkeypatch)
    monkeypatch.setenv("COLUMNS", "120")
    assert main([str(outputs), "--out", str(outputs.parent / "rep")]) == 0
    text = capsys.readouterr().out
    assert all(len(line) <= 120 for line in text.splitlines()), text
    assert "2026-12-07_01-21-19-550663" not in text and "12-07 02:00:00" in text
    assert "pretrain on sample_general: 1 run (1 ok)" in text and "train-clf on sample: 3 runs (2 ok, 1 failed)" in text
    assert "same for every run: lm.fwd.val_perplexity=2.5, tfidf_lr.val_error=22, tfidf_lr.test_error=21" in text
    assert "run 2 failed: UserError: boom" in text and "* best in its column" in text
    job1 = next(line for line in text.splitlines() if line.startswith("1 "))
    assert re.search(r"\b15\*", job1) and re.search(r"\b17\.5 ", job1)  # best val error, not best test error
    md = (outputs.parent / "rep" / "report.md").read_text()
    assert "## train-clf on sample: 3 runs (2 ok, 1 failed)" in md
    assert f"| {outputs / 'multirun/train-clf/2026-12-07_03-00-00/1'} | ok | 0.2 | **15** | 17.5 | 31 |" in md
    with open(outputs.parent / "rep" / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["run_dir"] for r in rows} >= {str(outputs / "pretrain" / "2026-12-07_01-21-19-550663")}
    assert "tfidf_lr.test_error" in rows[0] and "fwd.val_loss" in rows[0]  # every column stays in the CSV


def test_a_table_wider_than_the_terminal_goes_on_in_blocks_that_repeat_the_run_names(tmp_path, capsys, monkeypatch):
    """fwd, bwd and the ensemble, two swept keys and the LM under each job: 13 columns, at 80 and 120."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"overrides": {"task": ["schedule.cut_frac=0.1,0.2", "schedule.ratio=16,32"]}}}))
    for job, (cut_frac, ratio) in enumerate([("0.1", "16"), ("0.1", "32"), ("0.2", "16"), ("0.2", "32")]):
        results = {d: {"val_error": 10.0 + job + i, "test_error": 12.0 + job / 2 + i}
                   for i, d in enumerate(["fwd", "bwd", "ensemble"])}
        make_run(sweep / str(job), "train-clf", "sample", results,
                 [f"schedule.cut_frac={cut_frac}", f"schedule.ratio={ratio}", f"lm=outputs/finetune-lm/lm{job % 2}"],
                 wall=40.0 - job, lm_results={d: {"val_perplexity": 2.5 + job % 2} for d in ("fwd", "bwd")})
    no_plots(monkeypatch)
    for width, blocks in ((80, 3), (120, 2)):
        monkeypatch.setenv("COLUMNS", str(width))
        assert main([str(sweep), "--out", str(tmp_path / f"rep{width}")]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert all(len(line) <= width for line in lines), "\n".join(lines)
        assert sum(line.startswith("run ") for line in lines) == blocks, "\n".join(lines)
        assert not any("…" in line for line in lines)
        job0 = [line for line in lines if line.startswith("0 ")]  # job 0: best in every error column
        assert len(job0) == blocks and sum(line.count("*") for line in job0) == 8, "\n".join(lines)
        job3 = [line for line in lines if line.startswith("3 ")]  # job 3: the fastest
        assert job3[-1].endswith("37*") and sum(line.count("*") for line in job3) == 1
