"""Study experiments (conf/experiment/study_*.yaml), the Optuna search, `objective=`, resume=auto in sweeps."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO, ulmfit
from ulmfit_cli.extras import module_installed

# The quickstart recipe (tiny model, embedded sample) under each study: `experiment=[quickstart,<study>]`.
TINY = ["lm=null", "bidirectional=fwd", "progress=none", "train.epochs=1", "dataset.max_docs=100", "train.bs=16",
        "train.max_steps_per_epoch=3", "threads=1"]
PRETRAIN_TINY = [a for a in TINY if not a.startswith("lm=")]

STUDIES = {
    "study_schedule": {"schedule": "stlr,one_cycle,constant"},
    "study_unfreeze": {"unfreeze": "gradual,none,last,chain_thaw"},
    "study_decay": {"schedule.decay": "1.0,2.0,2.6,3.0"},
    "study_lowshot": {"dataset.max_train_examples": "100,500,1000"},
    "study_seeds": {"seed": "0,1,2"},
}


def with_study(name: str) -> str:
    return f"experiment=[quickstart,{name}]"


def rows_of(sweep: Path) -> list[dict]:
    with open(sweep / "sweep.csv", newline="") as f:
        return list(csv.DictReader(f))


def the_sweep(cwd: Path, stage: str = "train-clf") -> Path:
    (sweep,) = (cwd / "outputs" / "multirun" / stage).iterdir()
    return sweep


def test_each_study_experiment_composes_its_sweep(tmp_path):
    # one process: the studies sweep different keys, so selecting them all merges their grids
    out = ulmfit("train-clf", f"experiment=[{','.join(STUDIES)}]", "--cfg", "hydra", "-p", "hydra.sweeper.params",
                 cwd=tmp_path).stdout
    assert {k: str(v) for k, v in yaml.safe_load(out).items()} == {k: v for s in STUDIES.values() for k, v in s.items()}
    for name, params in STUDIES.items():  # and each one alone, as written in conf/experiment/
        cfg = yaml.safe_load((REPO / "conf" / "experiment" / f"{name}.yaml").read_text())
        assert {k: str(v) for k, v in cfg["hydra"]["sweeper"]["params"].items()} == params


@pytest.mark.integration
def test_study_schedule_sweeps_the_schedule_group(tmp_path):
    ulmfit("train-clf", "-m", with_study("study_schedule"), *TINY, cwd=tmp_path)
    sweep = the_sweep(tmp_path)
    rows = rows_of(sweep)
    assert [(r["job"], r["schedule"], r["status"]) for r in rows] == [
        ("0", "stlr", "ok"), ("1", "one_cycle", "ok"), ("2", "constant", "ok")]
    for r in rows:  # each job really ran with that group's config
        assert yaml.safe_load((sweep / r["job"] / "config.yaml").read_text())["schedule"]["name"] == r["schedule"]


@pytest.mark.integration
def test_study_lowshot_trains_on_n_examples(tmp_path):
    # one job: a key on the command line wins over the study's values; max_docs above N so only N caps train
    ulmfit("train-clf", "-m", with_study("study_lowshot"), *TINY, "dataset.max_docs=101",
           "dataset.max_train_examples=100", cwd=tmp_path)
    sweep = the_sweep(tmp_path)
    (row,) = rows_of(sweep)
    assert row["dataset.max_train_examples"] == "100" and row["status"] == "ok"
    assert json.loads((sweep / "0" / "summary.json").read_text())["n_train"] == 100


@pytest.mark.integration
def test_optuna_search_returns_the_objective_and_writes_the_tables(tmp_path):
    for module in ("optuna", "hydra_plugins.hydra_optuna_sweeper"):
        if not module_installed(module):
            pytest.skip(f"{module} is not installed (pip install 'ulmfit-cli[sweeps]')")
    ulmfit("train-clf", "-m", with_study("optuna_lr"), *TINY, "hydra.sweeper.n_trials=2", cwd=tmp_path)
    sweep = the_sweep(tmp_path)
    rows = rows_of(sweep)
    assert [(r["job"], r["status"]) for r in rows] == [("0", "ok"), ("1", "ok")]
    for r in rows:
        assert 0.001 <= float(r["schedule.lr"]) <= 0.05 and 0.1 <= float(r["model.drop_mult"]) <= 1.0
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["name"] == "optuna" and set(best["best_params"]) == {"schedule.lr", "model.drop_mult"}
    # Optuna saw each job's fwd.val_error (objective=fwd.val_error in the experiment)
    assert best["best_value"] == pytest.approx(min(float(r["fwd.val_error"]) for r in rows))
    assert any(float(r["schedule.lr"]) == pytest.approx(best["best_params"]["schedule.lr"]) for r in rows)


def test_objective_picks_a_summary_metric_or_names_the_available_ones():
    from ulmfit_cli.errors import UserError
    from ulmfit_cli.reporting.objective import objective_value

    summary = {"results": {"fwd": {"val_error": 12.5, "val_loss": 0.4}, "ensemble": {"val_error": 10.0}}}
    assert objective_value(summary, "ensemble.val_error") == 10.0
    with pytest.raises(UserError, match=r"objective=fwd\.val_perplexity .*fwd\.val_error, fwd\.val_loss"):
        objective_value(summary, "fwd.val_perplexity")


def test_objective_with_a_direction_the_run_lacks_fails_before_training():
    from omegaconf import OmegaConf

    from ulmfit_cli.errors import UserError
    from ulmfit_cli.reporting.objective import check_objective

    cfg = OmegaConf.create({"stage": "train-clf", "objective": "ensemble.val_error",
                            "bidirectional": {"directions": ["fwd"]}})
    with pytest.raises(UserError, match="objective=ensemble.val_error: .* direction fwd"):
        check_objective(cfg)
    cfg.bidirectional.directions = ["fwd", "bwd"]
    check_objective(cfg)  # fwd+bwd classifiers have an ensemble


@pytest.mark.integration
def test_resume_auto_in_a_sweep_continues_each_jobs_own_dir(tmp_path):
    """A requeued job (SLURM) re-runs its overrides in its own job dir: resume=auto continues from its checkpoints."""
    sweep = tmp_path / "sweep"
    args = ["pretrain", "-m", "experiment=quickstart", *PRETRAIN_TINY, "train.epochs=2", "resume=auto",
            f"hydra.sweep.dir={sweep}"]
    ulmfit(*args, cwd=tmp_path)
    job = sweep / "0"
    last = sorted((job / "checkpoints" / "last").glob("fwd-*.pt"))
    assert [p.name for p in last] == ["fwd-000000003.pt", "fwd-000000006.pt"]
    # as if preempted during epoch 2: no final outputs, only epoch 1's progress checkpoint
    for p in (job / "summary.json", job / "checkpoints" / "fwd.pt", last[-1]):
        p.unlink()
    ulmfit(*args, cwd=tmp_path)
    assert "resuming fwd from fwd-000000003.pt (epoch 1, step 3)" in (job / "train.log").read_text()
    assert json.loads((job / "summary.json").read_text())["results"]["fwd"]["epochs"] == 2
    assert [p.name for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()] == ["0"]
    assert [r["status"] for r in rows_of(sweep)] == ["ok"]
    # resume=<one run dir> makes no sense for a sweep
    from ulmfit_cli.commands.resume import expand_resume
    from ulmfit_cli.errors import UserError

    assert expand_resume("pretrain", ["-m", "resume=auto"]) == ["-m", "resume=auto"]  # left to each job
    with pytest.raises(UserError, match="resume=auto"):
        expand_resume("pretrain", ["-m", f"resume={job}"])
