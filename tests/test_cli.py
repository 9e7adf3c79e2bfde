"""The CLI contract, through the real console script on the embedded sample."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from conftest import assert_clean_error, FAST, ulmfit

METRIC_COLUMNS = ["stage", "direction", "epoch", "step", "split", "loss", "accuracy", "perplexity", "lr",
                  "throughput", "elapsed_s"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """pretrain -> finetune-lm -> train-clf (fwd+bwd) using the default `latest` hand-off."""
    cwd = tmp_path_factory.mktemp("pipe")
    ulmfit("pretrain", *FAST, cwd=cwd)
    ulmfit("finetune-lm", *FAST, cwd=cwd)
    ulmfit("train-clf", *FAST, "unfreeze=none", cwd=cwd)
    runs = {s: sorted((cwd / "outputs" / s).iterdir()) for s in ("pretrain", "finetune-lm", "train-clf")}
    return cwd, runs


# What each subcommand's --help must say that no other's does: its own usage and options.
HELP_SAYS = {
    "pretrain": ["usage: ulmfit pretrain", "stage: pretrain", "name: wikitext103"],
    "finetune-lm": ["usage: ulmfit finetune-lm", "stage: finetune-lm", "pretrained: latest"],
    "train-clf": ["usage: ulmfit train-clf", "stage: train-clf", "lm: latest", "tfidf_baseline: true"],
    "pipeline": ["usage: ulmfit pipeline", "skip=pretrain"],
    "evaluate": ["usage: ulmfit evaluate", "run=<train-clf run dir>", "split=test|valid"],
    "predict": ["usage: ulmfit predict", "input=<texts.txt"],
    "download": ["usage: ulmfit download", "--dest DIR", "--list", "wt103"],
    "report": ["usage: ulmfit report", "--paper"],
    "import-fastai": ["usage: ulmfit import-fastai", "--weights lstm_fwd.pth", "--vocab itos_wt103.pkl"],
    "export-fastai": ["usage: ulmfit export-fastai", "run=<pretrain or finetune-lm run dir>"],
    "generate": ["usage: ulmfit generate", "prompt=", "temperature="],
}


def test_help_lists_every_subcommand(tmp_path):
    from ulmfit_cli.cli import HYDRA_APPS, TOOLS

    assert set(HELP_SAYS) == set(HYDRA_APPS) | set(TOOLS)  # a new subcommand needs its help checked below
    out = ulmfit("--help", cwd=tmp_path).stdout
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == [*HYDRA_APPS, *TOOLS]


@pytest.mark.parametrize("sub", list(HELP_SAYS))
def test_each_subcommand_help_says_what_it_does(sub, tmp_path, monkeypatch, capsys):
    """`ulmfit SUB --help` exits 0 with its own usage, and starts nothing (no outputs/, no download)."""
    from ulmfit_cli.cli import main

    monkeypatch.chdir(tmp_path)
    try:  # a Hydra app ends its help with sys.exit(0), a tool returns 0
        rc = main([sub, "--help"])
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr().out
    assert rc in (0, None)
    missing = [s for s in HELP_SAYS[sub] if s not in out]
    assert not missing, f"`ulmfit {sub} --help` does not say {missing}:\n{out[:2000]}"
    others = [o for o in HELP_SAYS if o != sub and f"usage: ulmfit {o} " in out]
    assert not others, f"`ulmfit {sub} --help` shows the usage of {others}"
    assert list(tmp_path.iterdir()) == []


def test_stage_help_and_cfg_job(tmp_path):
    help_text = ulmfit("train-clf", "--help", cwd=tmp_path).stdout
    assert "ulmfit train-clf" in help_text and "-m/--multirun may go anywhere" in help_text
    cfg = ulmfit("train-clf", "--cfg", "job", "schedule.cut_frac=0.2", "model=tiny", cwd=tmp_path).stdout
    assert "cut_frac: 0.2" in cfg and "hidden_size: 192" in cfg
    assert not (tmp_path / "outputs").exists()


def test_each_stage_writes_the_outputs_contract(pipeline):
    cwd, runs = pipeline
    for stage, dirs in runs.items():
        assert len(dirs) == 1
        run = dirs[0]
        for name in ("config.yaml", "train.log", "metrics.csv", "summary.json", ".hydra/config.yaml"):
            assert (run / name).exists(), f"{stage}: {name} missing"
        rows = list(csv.DictReader(open(run / "metrics.csv")))
        assert list(rows[0])[: len(METRIC_COLUMNS)] == METRIC_COLUMNS
        assert {r["direction"] for r in rows} == {"fwd", "bwd"}
        summary = json.loads((run / "summary.json").read_text())
        assert summary["stage"] == stage and summary["device"].startswith("cpu")
        for d in ("fwd", "bwd"):
            ckpt = torch.load(run / "checkpoints" / f"{d}.pt", weights_only=True)
            assert ckpt["stage"] == stage and ckpt["direction"] == d
    lm_rows = list(csv.DictReader(open(runs["pretrain"][0] / "metrics.csv")))
    assert all(float(r["perplexity"]) > 1 for r in lm_rows if r["split"] == "valid")
    clf = json.loads((runs["train-clf"][0] / "summary.json").read_text())
    assert set(clf["results"]) == {"fwd", "bwd", "ensemble"}
    assert 0 <= clf["results"]["ensemble"]["test_error"] <= 100


def test_default_hand_off_is_the_newest_previous_run(pipeline):
    cwd, runs = pipeline
    ft = json.loads((runs["finetune-lm"][0] / "summary.json").read_text())
    clf = json.loads((runs["train-clf"][0] / "summary.json").read_text())
    assert Path(ft["started_from"]).resolve() == runs["pretrain"][0].resolve()
    assert Path(clf["started_from"]).resolve() == runs["finetune-lm"][0].resolve()
    # the LM under the classifier is scored beside it: its validation perplexity, per direction
    for d in ("fwd", "bwd"):
        assert clf["lm_results"][d]["val_perplexity"] == ft["results"][d]["val_perplexity"] > 1


def test_report_shows_the_perplexity_of_the_lm_under_each_classifier(pipeline):
    from ulmfit_cli.commands.report import load_runs, seed_aggregates
    from ulmfit_cli.reporting.tables import stage_tables

    cwd, runs = pipeline
    df = load_runs([runs["train-clf"][0]])
    (table,) = stage_tables(df, seed_aggregates(df))
    assert table.constant["lm.fwd.val_perplexity"] == df["lm.fwd.val_perplexity"].iloc[0] > 1  # one run: said under the table


def test_latest_names_the_run_it_picked_and_the_unfinished_ones_it_passed_over(tmp_path, caplog):
    import os

    from ulmfit_cli.stages.sources import find_source_run

    root = tmp_path / "outputs" / "finetune-lm"
    for age, name in ((300, "old_done"), (200, "done"), (100, "stopped")):
        run = root / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.yaml").write_text(f"dataset:\n  name: csv\n  train_file: {name}.csv\n")
        os.utime(run / "config.yaml", (1e9 - age, 1e9 - age))
        if name != "stopped":
            (run / "checkpoints" / "fwd.pt").write_bytes(b"")
            (run / "summary.json").write_text("{}")
            os.utime(run / "summary.json", (1e9 - age + 50, 1e9 - age + 50))
    (root / "report").mkdir()  # `ulmfit report`'s folder is no run
    with caplog.at_level("INFO", logger="ulmfit"):
        chosen = find_source_run("latest", "train-clf", str(tmp_path / "outputs"), ["fwd"], "lm")
    assert chosen == (root / "done").resolve()
    assert (f"lm=latest: starting from {chosen} (dataset csv, done.csv), the newest finished run; "
            "passed over newer unfinished run(s) stopped.") in caplog.text


def test_reloaded_checkpoint_gives_the_same_predictions(pipeline, tmp_path):
    cwd, runs = pipeline
    run = runs["train-clf"][0]
    from ulmfit_cli.data.sample import generate_sample

    texts = generate_sample().test_texts[:40]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    a = ulmfit("predict", f"run={run}", f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'a.csv'}", cwd=cwd)
    assert a.returncode == 0
    ulmfit("predict", f"run={run}", f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'b.jsonl'}", cwd=cwd)
    rows = list(csv.DictReader(open(tmp_path / "a.csv")))
    assert [r["text"] for r in rows] == texts
    jl = [json.loads(line) for line in open(tmp_path / "b.jsonl")]
    assert [r["label"] for r in rows] == [r["label"] for r in jl]
    # the same probabilities the training run wrote for these test documents
    written = list(csv.DictReader(open(run / "predictions_test.csv")))[:40]
    for r, w in zip(rows, written):
        assert float(r["p_positive"]) == pytest.approx(float(w["p_positive"]), abs=2e-4)
    # never overwrite an output file
    again = ulmfit("predict", f"run={run}", f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'a.csv'}",
                   cwd=cwd, check=False)
    assert again.returncode == 2 and "overwrite=true" in again.stderr


def test_evaluate_scores_the_recorded_test_split(pipeline):
    cwd, runs = pipeline
    run = runs["train-clf"][0]
    out = json.loads(ulmfit("evaluate", f"run={run}", "split=test", cwd=cwd).stdout)
    summary = json.loads((run / "summary.json").read_text())
    assert out["accuracy"] == pytest.approx(summary["results"]["ensemble"]["test_accuracy"], abs=1e-6)


def test_evaluate_a_new_labelled_file_with_its_own_column_names(pipeline):
    """input= scores any labelled file; a row whose label train never saw is wrong and out of the loss."""
    cwd, runs = pipeline
    run = runs["train-clf"][0]
    split = json.loads(ulmfit("evaluate", f"run={run}", "split=test", cwd=cwd).stdout)
    rows = list(csv.DictReader(open(run / "predictions_test.csv", newline="")))
    with open(cwd / "new.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerows([("review", "gold"), *((r["text"], r["label"]) for r in rows), ("an unseen kind of text", "zzz")])
    proc = ulmfit("evaluate", f"run={run}", "input=new.csv", "text_col=review", "label_col=gold", cwd=cwd)
    out = json.loads(proc.stdout)
    assert out["n"] == split["n"] + 1 == len(rows) + 1
    assert out["accuracy"] == pytest.approx(split["accuracy"] * split["n"] / (split["n"] + 1), abs=1e-9)
    assert out["loss"] == pytest.approx(split["loss"], abs=1e-6)
    assert "1 labelled row(s) carry labels not seen in train: ['zzz']" in proc.stderr
    proc = ulmfit("evaluate", f"run={run}", "input=new.csv", cwd=cwd, check=False)
    assert proc.returncode == 2
    assert_clean_error(proc, "new.csv has no column 'text'", "text_col=review")
    proc = ulmfit("evaluate", f"run={run}", "input=new.csv", "split=valid", cwd=cwd, check=False)
    assert proc.returncode == 2
    assert_clean_error(proc, "input=new.csv and split=valid both name what to score", "one or the other")


def test_multirun_flag_moves_before_the_overrides():
    from ulmfit_cli.commands.hydra_app import multirun_first

    assert multirun_first(["a=1", "-m", "b=1,2"]) == ["-m", "a=1", "b=1,2"]
    assert multirun_first(["a=1", "--multirun"]) == ["--multirun", "a=1"]
    assert multirun_first(["a=1", "b=2"]) == ["a=1", "b=2"]


@pytest.mark.integration
def test_multirun_two_jobs_two_run_dirs(tmp_path):
    """-m after the overrides, as people type it (Hydra's own parser wants it first)."""
    ulmfit("train-clf", *FAST, "lm=null", "bidirectional=fwd", "unfreeze=none", "-m",
           "schedule=stlr", "schedule.cut_frac=0.1,0.2", cwd=tmp_path)
    sweeps = list((tmp_path / "outputs" / "multirun" / "train-clf").iterdir())
    assert len(sweeps) == 1
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    cut = [json.loads(json.dumps(open(p / "config.yaml").read())) for p in jobs]
    assert "cut_frac: 0.1" in cut[0] and "cut_frac: 0.2" in cut[1]
    assert all((p / "summary.json").exists() for p in jobs)


# ---- bad input: one paragraph, non-zero exit, no traceback, nothing overwritten ----------------

@pytest.mark.parametrize("args,needles", [
    (["schedule.cutfrac=0.2"], ["cutfrac"]),
    pytest.param(["schedule.ratio=abc"], ["ratio", "abc"], marks=pytest.mark.integration),
    pytest.param(["device=cuda", "lm=null"], ["device=cuda", "device=cpu"], marks=pytest.mark.integration),
    pytest.param(["dataset=csv", "dataset.train_file=nope.csv", "lm=null"], ["nope.csv"], marks=pytest.mark.integration),
    (["lm=does/not/exist"], ["lm=does/not/exist"]),
])
def test_bad_input_is_a_clean_error(tmp_path, args, needles):
    proc = ulmfit("train-clf", *FAST, *args, cwd=tmp_path, check=False)
    assert_clean_error(proc, *needles)


def test_csv_without_the_named_columns(tmp_path):
    (tmp_path / "d.csv").write_text("review,stars\ngood film,5\nbad film,1\n")
    proc = ulmfit("train-clf", *FAST, "lm=null", "dataset=csv", f"dataset.train_file={tmp_path / 'd.csv'}",
                  cwd=tmp_path, check=False)
    assert_clean_error(proc, "has no column 'text'", "dataset.text_cols=[review]")
    # the hint is an override Hydra takes: with it, the label column is what is missing
    proc = ulmfit("train-clf", *FAST, "lm=null", "dataset=csv", f"dataset.train_file={tmp_path / 'd.csv'}",
                  "dataset.text_cols=[review]", cwd=tmp_path, check=False)
    assert_clean_error(proc, "has no column 'label'", "dataset.label_col=stars")


def test_empty_dataset(tmp_path):
    (tmp_path / "e.csv").write_text("text,label\n")
    proc = ulmfit("train-clf", *FAST, "lm=null", "dataset=csv", f"dataset.train_file={tmp_path / 'e.csv'}",
                  cwd=tmp_path, check=False)
    assert_clean_error(proc, "e.csv")


def test_lm_dir_without_checkpoint_and_checkpoint_of_another_stage(pipeline, tmp_path):
    cwd, runs = pipeline
    (tmp_path / "empty_run").mkdir()
    proc = ulmfit("train-clf", *FAST, f"lm={tmp_path / 'empty_run'}", cwd=tmp_path, check=False)
    assert_clean_error(proc, "checkpoints/fwd.pt")
    proc = ulmfit("train-clf", *FAST, f"lm={runs['train-clf'][0]}", cwd=tmp_path, check=False)
    assert_clean_error(proc, "not a language model")
    proc = ulmfit("finetune-lm", *FAST, "pretrained=latest", cwd=tmp_path, check=False)
    assert_clean_error(proc, "pretrained=latest", "pretrained=null")


def test_existing_run_dir_is_never_overwritten(pipeline):
    cwd, runs = pipeline
    run = runs["pretrain"][0]
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    proc = ulmfit("pretrain", *FAST, f"hydra.run.dir={run}", cwd=cwd, check=False)
    assert_clean_error(proc, "never overwrites")
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


def test_verbose_shows_the_traceback(tmp_path):
    proc = ulmfit("train-clf", *FAST, "device=cuda", "lm=null", "verbose=true", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_torch_loads_with_a_short_openmp_spin_unless_the_user_set_one(tmp_path, monkeypatch):
    """libgomp spin-waits ~300k times by default, and two runs side by side then each run many times
    slower (benchmarks/bench_contention.py): the console script sets GOMP_SPINCOUNT before torch loads.
    OMP_DISPLAY_ENV makes libgomp itself print what it read."""
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    env = {"OMP_DISPLAY_ENV": "VERBOSE"}
    shown = ulmfit("train-clf", "--cfg", "job", cwd=tmp_path, env=env)
    assert "GOMP_SPINCOUNT = '1000'" in shown.stdout + shown.stderr
    mine = ulmfit("train-clf", "--cfg", "job", cwd=tmp_path, env={**env, "GOMP_SPINCOUNT": "300000"})
    assert "GOMP_SPINCOUNT = '300000'" in mine.stdout + mine.stderr


def test_two_hydra_mode_flags_are_a_clear_error(tmp_path):
    """Hydra raises a bare ValueError (a traceback) for -m with --cfg; nothing is written."""
    proc = ulmfit("train-clf", "-m", "experiment=quickstart", "--cfg", "job", cwd=tmp_path, check=False)
    assert_clean_error(proc, "--cfg and --multirun were both given", "Drop all but one")
    assert proc.returncode == 2 and not (tmp_path / "outputs").exists()
    assert "train" in ulmfit("train-clf", "experiment=quickstart", "--cfg", "job", cwd=tmp_path).stdout
