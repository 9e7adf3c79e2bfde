"""Multirun sweeps: sweep.csv from the SweepTable callback, failed jobs, launchers, `ulmfit report`."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import ulmfit
from ulmfit_cli.extras import module_installed

# One epoch of three batches, one thread (other processes may share the 2 cores): about 2 s a job.
TINY = ["experiment=quickstart", "schedule=stlr", "lm=null", "bidirectional=fwd", "progress=none", "train.epochs=1", "unfreeze=none",
        "dataset.max_docs=100", "train.bs=16", "train.max_steps_per_epoch=3", "threads=1"]
PNG = b"\x89PNG\r\n\x1a\n"


def sweep_dirs(cwd: Path, stage: str = "train-clf") -> list[Path]:
    return sorted((cwd / "outputs" / "multirun" / stage).iterdir())


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def job_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A 2x2 sweep over schedule.cut_frac and schedule.ratio with Hydra's basic launcher."""
    cwd = tmp_path_factory.mktemp("grid")
    proc = ulmfit("train-clf", "-m", *TINY, "schedule.cut_frac=0.1,0.2", "schedule.ratio=16,32", cwd=cwd)
    (sweep,) = sweep_dirs(cwd)
    return cwd, sweep, proc


def test_grid_sweep_writes_one_row_per_job(grid):
    cwd, sweep, proc = grid
    jobs = job_dirs(sweep)
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    rows = read_csv(sweep / "sweep.csv")
    assert len(rows) == 4
    header = list(rows[0])
    assert header[:4] == ["job", "schedule.cut_frac", "schedule.ratio", "status"]
    for col in ("error", "fwd.val_accuracy", "fwd.val_error", "fwd.test_accuracy", "fwd.test_error", "wall_time_s"):
        assert col in header
    assert {(r["schedule.cut_frac"], r["schedule.ratio"]) for r in rows} == {
        ("0.1", "16"), ("0.1", "32"), ("0.2", "16"), ("0.2", "32")}
    for r in rows:
        assert r["status"] == "ok" and r["error"] == ""
        assert 0 <= float(r["fwd.test_error"]) <= 100 and 0 <= float(r["fwd.val_accuracy"]) <= 1
        assert float(r["wall_time_s"]) > 0
        # the row's values are the ones that job really ran with
        cfg = yaml.safe_load((sweep / r["job"] / "config.yaml").read_text())
        assert cfg["schedule"]["cut_frac"] == float(r["schedule.cut_frac"])
        assert cfg["schedule"]["ratio"] == float(r["schedule.ratio"])
    assert "sweep table:" in proc.stdout + proc.stderr and "(4 ok)" in proc.stdout + proc.stderr


def test_report_on_a_sweep_dir(grid):
    cwd, sweep, _ = grid
    proc = ulmfit("report", str(sweep), cwd=cwd)
    out = sweep / "report"
    for name in ("report.csv", "report.md"):
        assert (out / name).stat().st_size > 0
    pngs = sorted(out.rglob("*.png"))
    names = {p.relative_to(out).as_posix() for p in pngs}
    assert {"lr_schedule.png", "sweep_fwd.val_error.png", "valid_loss.png", "curves/0.png", "curves/3.png"} <= names
    for p in pngs:
        assert p.read_bytes()[:8] == PNG and p.stat().st_size > 2000
    rows = read_csv(out / "report.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"} and {r["dataset"] for r in rows} == {"sample"}
    assert "schedule.cut_frac" in rows[0] and "fwd.test_error" in rows[0]
    md = (out / "report.md").read_text()
    assert "## train-clf on sample: 4 runs (4 ok)" in md and "lr_schedule.png" in md
    assert "| run | schedule.cut_frac | schedule.ratio | fwd.val_error | fwd.test_error |" in md
    assert f"| {sweep / '0'} | 0.1 | 16 |" in md  # the full path in the Markdown, the job number in the terminal
    assert "cut_frac" in proc.stdout and "train-clf on sample: 4 runs (4 ok)" in proc.stdout


def test_recomputed_lr_curve_matches_the_logged_lr(grid):
    from ulmfit_cli.reporting.plots import lr_curve

    _, sweep, _ = grid
    for job in job_dirs(sweep):
        steps, lrs, logged = lr_curve(job)
        assert len(steps) == 3 and len(logged) == 1
        for step, lr in logged:
            assert lrs[int(step) - 1] == pytest.approx(lr, rel=1e-5)
        cfg = yaml.safe_load((job / "config.yaml").read_text())["schedule"]
        assert lrs[0] == pytest.approx(cfg["lr"] / cfg["ratio"])  # STLR starts at eta_max / ratio


def test_report_on_a_partial_sweep_shows_running_jobs(grid, tmp_path):
    _, sweep, _ = grid
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("report", "checkpoints"))
    (copy / "3" / "summary.json").unlink()  # job 3 still training
    (copy / "3" / ".hydra" / "job_status.json").unlink()
    proc = ulmfit("report", str(copy), "--out", str(tmp_path / "rep"), cwd=tmp_path)
    rows = {r["run"]: r for r in read_csv(tmp_path / "rep" / "report.csv")}
    assert rows["3"]["status"] == "running" and rows["0"]["status"] == "ok"
    assert "(3 ok, 1 running)" in proc.stdout

    from ulmfit_cli.reporting.sweep import collect_runs

    df = collect_runs([copy], finished=True)  # once the multirun is over, no summary.json = failed
    assert df.set_index("run").loc["3", "status"] == "failed"


@pytest.mark.integration
def test_a_failed_job_does_not_stop_the_sweep_and_is_listed(tmp_path):
    # cuda:99 fails on any machine (no CUDA, or fewer than 100 GPUs) with a UserError.
    proc = ulmfit("train-clf", "-m", *TINY, "device=cuda:99,cpu", cwd=tmp_path, check=False)
    assert proc.returncode != 0  # Hydra reports the failure at the end of the sweep...
    assert "cuda:99" in proc.stderr and "sweep.csv" in proc.stderr
    assert "Traceback" not in proc.stderr  # ...as the job's one-paragraph error
    (sweep,) = sweep_dirs(tmp_path)
    rows = {r["device"]: r for r in read_csv(sweep / "sweep.csv")}
    assert set(rows) == {"cuda:99", "cpu"}
    assert rows["cuda:99"]["status"] == "failed" and "cuda:99" in rows["cuda:99"]["error"]
    assert rows["cuda:99"]["fwd.test_error"] == ""
    assert rows["cpu"]["status"] == "ok" and rows["cpu"]["error"] == "" and 0 <= float(rows["cpu"]["fwd.test_error"]) <= 100
    assert (sweep / "1" / "summary.json").exists()  # the job after the failed one ran


@pytest.mark.integration
def test_a_signal_stops_the_whole_sweep_and_resume_continues_it(tmp_path):
    """Ctrl-C during job 1 of 3: job 1 saves its progress, job 2 never starts, exit 130 naming
    resume=<sweep dir>; that command keeps job 0, continues job 1 from its checkpoint, runs job 2."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = [*TINY, "train.max_steps_per_epoch=null", "train.epochs=4", "checkpoint.every_steps=2"]
    exe = Path(sys.executable).with_name("ulmfit")
    proc = subprocess.Popen([str(exe), "train-clf", "-m", *args, "schedule.cut_frac=0.1,0.2,0.3"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root, deadline = tmp_path / "outputs" / "multirun" / "train-clf", time.time() + 180
    while not list(root.glob("*/1/checkpoints/last/fwd-*.pt")):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    (sweep,) = sweep_dirs(tmp_path)
    assert proc.returncode == 130, out
    assert "during job #1 of the sweep" in out and f"resume={sweep}" in out and "Traceback" not in out, out
    assert [p.name for p in job_dirs(sweep)] == ["0", "1"]
    assert [(r["job"], r["status"]) for r in read_csv(sweep / "sweep.csv")] == [("0", "ok"), ("1", "stopped")]
    report = ulmfit("report", str(sweep), cwd=tmp_path).stdout
    assert "(1 ok, 1 stopped)" in report and "run 1 stopped: Stopped by a signal" in report, report
    done = (sweep / "0" / "summary.json").read_bytes()

    ulmfit("train-clf", f"resume={sweep}", "threads=1", cwd=tmp_path)
    rows = read_csv(sweep / "sweep.csv")
    assert [(r["job"], r["schedule.cut_frac"], r["status"]) for r in rows] == [
        ("0", "0.1", "ok"), ("1", "0.2", "ok"), ("2", "0.3", "ok")]
    assert (sweep / "0" / "summary.json").read_bytes() == done  # kept, not trained again
    assert "resuming fwd from fwd-" in (sweep / "1" / "train.log").read_text()
    epochs = [[int(r["epoch"]) for r in read_csv(d / "metrics.csv") if r["split"] == "train"] for d in job_dirs(sweep)]
    assert epochs == [[1, 2, 3, 4]] * 3  # job 1's rows: each epoch once, across the stop
    # the sweep dir now holds its jobs: only this sweep continues it, and nothing overwrites it
    again = ulmfit("train-clf", "-m", *args, "schedule.cut_frac=0.1,0.2,0.3", f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path, check=False)
    assert again.returncode == 2 and f"Continue that sweep with resume={sweep}" in again.stderr
    other = ulmfit("train-clf", "-m", *args, "schedule.cut_frac=0.5,0.6", f"hydra.sweep.dir={sweep}", "resume=auto",
                   cwd=tmp_path, check=False)
    assert other.returncode == 2 and "schedule.cut_frac=0.1,0.2,0.3, not experiment=quickstart schedule.cut_frac=0.5,0.6" in other.stderr
    assert (sweep / "0" / "summary.json").read_bytes() == done


def test_resume_of_a_sweep_dir_reruns_its_own_overrides(tmp_path):
    from omegaconf import OmegaConf

    from ulmfit_cli.commands.resume import check_sweep_dir, expand_resume
    from ulmfit_cli.errors import UserError

    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "summary.json").write_text("{}")
    OmegaConf.save({"hydra": {"overrides": {"task": ["experiment=quickstart", "seed=0,1", "resume=auto"],
                                            "hydra": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                                      "hydra.mode=MULTIRUN", f"hydra.sweep.dir={sweep}"]}}},
                   sweep / "multirun.yaml")
    want = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "experiment=quickstart", "seed=0,1", "threads=1",
            f"hydra.sweep.dir={sweep}", "resume=auto"]
    assert expand_resume("train-clf", [f"resume={sweep}", "threads=1"]) == want
    assert expand_resume("train-clf", ["threads=1", "-m", f"resume={sweep}"]) == want
    check_sweep_dir(["-m", "seed=0,1", "experiment=quickstart", "train.bs=8", f"hydra.sweep.dir={sweep}", "resume=auto"])
    for argv, needle in [(["seed=1,0", "experiment=quickstart"], "over experiment=quickstart seed=0,1, not experiment=quickstart seed=1,0"),
                         (["seed=0,1", "experiment=trec6"], "not experiment=trec6 seed=0,1"),
                         (["seed=0,1", "experiment=quickstart", "resume=null"], "already holds the jobs")]:
        with pytest.raises(UserError, match=needle):
            check_sweep_dir(["-m", *argv, f"hydra.sweep.dir={sweep}", *([] if "resume=null" in argv else ["resume=auto"])])
    check_sweep_dir(["-m", "seed=5,6", f"hydra.sweep.dir={tmp_path / 'new'}"])  # a new dir: anything goes


def test_a_knob_the_chosen_option_never_reads_is_refused(tmp_path):
    from ulmfit_cli.config import ScheduleConfig, UnfreezeConfig
    from ulmfit_cli.training import param_groups, schedules

    assert schedules.ignored_knobs(ScheduleConfig(name="stlr"), {"cut_frac", "ratio", "decay", "lr"}) == []
    assert schedules.ignored_knobs(ScheduleConfig(name="constant", discriminative=False), {"cut_frac", "decay", "lr"}) == [
        ("cut_frac", "add schedule=stlr to use it"), ("decay", "add schedule.discriminative=true to use it")]
    assert [k for k, _ in schedules.ignored_knobs(ScheduleConfig(name="stlr"), {"pct_start", "div"})] == ["div", "pct_start"]
    assert param_groups.ignored_knobs(UnfreezeConfig(name="chain_thaw"), {"steps", "epochs_per_phase"}) == [
        ("steps", "add unfreeze=gradual to use it")]
    # quickstart trains at a constant LR: a cut_frac sweep there would be identical jobs
    proc = ulmfit("train-clf", "experiment=quickstart", "schedule.cut_frac=0.2", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert ("schedule.cut_frac has no effect with schedule=constant (discriminative=False) and unfreeze=none: the run "
            "would train as if it were not set. schedule.cut_frac: add schedule=stlr to use it, or drop it.") in proc.stderr
    assert not list((tmp_path / "outputs" / "train-clf").glob("*/summary.json"))


@pytest.mark.integration
def test_sweep_stlr_experiment_sweeps_its_params(tmp_path):
    cfg = ulmfit("train-clf", "experiment=sweep_stlr", "--cfg", "hydra", "-p", "hydra.sweeper.params", cwd=tmp_path).stdout
    params = yaml.safe_load(cfg)
    assert set(params) == {"schedule.cut_frac", "schedule.ratio", "schedule.decay"}
    assert all("," in str(v) for v in params.values())
    # Keys given on the command line win over the experiment's grid: 3 jobs (decay) here, failing fast.
    ulmfit("train-clf", "-m", *TINY, "experiment=sweep_stlr", "schedule.cut_frac=0.1", "schedule.ratio=32",
           "device=cuda:99", cwd=tmp_path, check=False)
    (sweep,) = sweep_dirs(tmp_path)
    rows = read_csv(sweep / "sweep.csv")
    assert sorted(r["schedule.decay"] for r in rows) == sorted(str(params["schedule.decay"]).split(","))
    assert {r["schedule.cut_frac"] for r in rows} == {"0.1"} and {r["status"] for r in rows} == {"failed"}


def test_mean_and_std_over_seeds(tmp_path):
    """Runs whose overrides differ only in seed= get mean ± std rows (no training needed)."""
    from ulmfit_cli.commands.report import main

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"overrides": {"task": ["schedule.ratio=16,32", "seed=0,1"]}, "sweeper": {"params": None}}}))
    errors = {("16", "0"): 10.0, ("16", "1"): 20.0, ("32", "0"): 30.0, ("32", "1"): 50.0}
    for job, ((ratio, seed), err) in enumerate(errors.items()):
        d = sweep / str(job)
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"schedule.ratio={ratio}", f"seed={seed}"]))
        (d / "summary.json").write_text(json.dumps({"stage": "train-clf", "wall_time_s": 1.0,
                                                    "results": {"fwd": {"val_error": err, "test_error": err}}}))
    assert main([str(sweep)]) == 0
    rows = read_csv(sweep / "report" / "report.csv")
    agg = {(r["schedule.ratio"], r["aggregate"]): r for r in rows if r["aggregate"]}
    assert float(agg[("16", "mean")]["fwd.val_error"]) == pytest.approx(15.0)
    assert float(agg[("32", "mean")]["fwd.val_error"]) == pytest.approx(40.0)
    assert float(agg[("32", "std")]["fwd.val_error"]) == pytest.approx(14.1421356)
    assert agg[("16", "mean")]["n"] == "2" and agg[("16", "mean")]["seed"] == "0,1"
    assert "mean±std" in (sweep / "report" / "report.md").read_text()
    # Two run dirs given by hand: the report goes beside them, not into the first run.
    assert main([str(sweep / "0"), str(sweep / "2")]) == 0
    assert len(read_csv(sweep / "report" / "report.csv")) == 2 and not (sweep / "0" / "report").exists()


@pytest.mark.parametrize("launcher,module,extra", [
    ("joblib", "hydra_plugins.hydra_joblib_launcher", ["hydra.launcher.n_jobs=2"]),
    ("submitit_local", "hydra_plugins.hydra_submitit_launcher", []),
])
@pytest.mark.integration
def test_process_launchers_write_the_sweep_table(tmp_path, launcher, module, extra):
    if not module_installed(module):
        pytest.skip(f"{module} is not installed (pip install 'ulmfit-cli[sweeps]')")
    ulmfit("train-clf", "-m", *TINY, "schedule.cut_frac=0.1,0.2", f"hydra/launcher={launcher}", *extra, cwd=tmp_path)
    (sweep,) = sweep_dirs(tmp_path)
    rows = read_csv(sweep / "sweep.csv")
    assert sorted(r["schedule.cut_frac"] for r in rows) == ["0.1", "0.2"]
    assert [r["status"] for r in rows] == ["ok", "ok"] and sorted(r["job"] for r in rows) == ["0", "1"]


def test_a_launcher_or_sweeper_without_its_plugin_names_the_extra(tmp_path):
    """Hydra alone says `Could not find 'hydra/launcher/joblib'`; ulmfit names the package and the
    extra, also for a plugin an experiment file picks, before Hydra writes anything."""
    from ulmfit_cli.commands.hydra_app import check_plugins
    from ulmfit_cli.errors import UserError

    def without(missing):
        return lambda module: module != missing

    assert not module_installed("no_such_package.no_such_plugin")  # find_spec alone raises here
    assert module_installed("hydra") and module_installed("omegaconf.omegaconf")

    with pytest.raises(UserError, match=r"hydra/launcher=joblib needs Hydra's hydra-joblib-launcher plugin.*\[sweeps\]"):
        check_plugins(["-m", "hydra/launcher=joblib"], installed=without("hydra_plugins.hydra_joblib_launcher"))
    with pytest.raises(UserError, match=r"hydra/sweeper=optuna needs Hydra's hydra-optuna-sweeper plugin"):
        check_plugins(["-m", "experiment=optuna_lr"], installed=without("hydra_plugins.hydra_optuna_sweeper"))
    with pytest.raises(UserError, match="hydra-submitit-launcher"):
        check_plugins(["hydra/launcher=submitit_slurm_ddp"], installed=without("hydra_plugins.hydra_submitit_launcher"))
    check_plugins(["-m", "hydra/launcher=joblib", "experiment=optuna_lr"], installed=lambda module: True)
    check_plugins(["-m", "hydra/launcher=basic", "experiment=sweep_stlr"], installed=lambda module: False)  # no plugin needed
