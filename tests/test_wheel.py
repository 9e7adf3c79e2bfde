"""A regular install works: the wheel ships conf/, and runs every stage from any folder.

Builds the sdist and, from it, the wheel with the standard front end (`python -m build`), checks the
wheel's contents, installs it into a fresh venv that cannot see the checkout, and runs
`ulmfit --version` and the quickstart pipeline from an empty folder.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.integration


def run(cmd: list[str], cwd: Path, timeout: int, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def project_version() -> str:
    return re.search(r'^version = "([^"]+)"$', (REPO / "pyproject.toml").read_text(), re.M).group(1)


def clean_env(venv: Path) -> dict:
    """The environment of a user who activated only the fresh venv: no checkout on any path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)], cwd=dist, timeout=900)
    wheels = list(dist.glob("ulmfit_cli-*.whl"))
    assert len(wheels) == 1 and list(dist.glob("ulmfit_cli-*.tar.gz")), sorted(p.name for p in dist.iterdir())
    return wheels[0]


def test_the_wheel_holds_every_config_and_module_and_nothing_else(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    yamls = {f"ulmfit_cli/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "ulmfit_cli").rglob("*.py")}
    assert len(yamls) > 50 and yamls <= names, sorted(yamls - names)
    assert modules <= names, sorted(modules - names)
    stray = [n for n in names if not (n.startswith("ulmfit_cli/") or ".dist-info/" in n)]
    assert stray == []  # no tests/, outputs/, docs/, scripts/, benchmarks/, studies/
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pt")]
    assert wheel.name.startswith(f"ulmfit_cli-{project_version()}-")


def test_an_installed_wheel_runs_the_quickstart_from_an_empty_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, timeout=300)
    py, env = venv / "bin" / "python", clean_env(venv)
    # The CPU build of torch where the machine has it (scripts/install_torch.sh), then the wheel and
    # the dependencies it declares.
    run(["bash", "-c", f'VENV_PY="{py}" . "{REPO}/scripts/install_torch.sh"'], cwd=tmp_path, timeout=1200, env=env)
    run([str(py), "-m", "pip", "install", "-q", str(wheel)], cwd=tmp_path, timeout=1200, env=env)

    work = tmp_path / "empty"
    work.mkdir()
    where = run([str(py), "-c", "import ulmfit_cli, sys; print(ulmfit_cli.__file__)"], cwd=work, timeout=60, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout  # the installed copy, not the checkout

    version = run([str(venv / "bin" / "ulmfit"), "--version"], cwd=work, timeout=60, env=env)
    assert version.stdout.strip() == f"ulmfit {project_version()}"  # no git commit: not a checkout

    run([str(venv / "bin" / "ulmfit"), "pipeline", "experiment=quickstart", "progress=none"], cwd=work,
        timeout=1200, env=env)
    summaries = sorted(work.glob("outputs/*/*/summary.json"))
    assert {p.parent.parent.name for p in summaries} == {"pretrain", "finetune-lm", "train-clf"}, summaries
    clf = json.loads(next(p for p in summaries if p.parent.parent.name == "train-clf").read_text())
    assert clf["ulmfit"] == {"version": project_version()}
    assert 0.0 <= clf["results"]["ensemble"]["test_accuracy"] <= 1.0
