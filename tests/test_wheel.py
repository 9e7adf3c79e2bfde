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


def test_an_in_tree_build_leaves_out_a_module_the_source_no_longer_has(tmp_path):
    """`pip install .` and `python -m build --wheel` build in the checkout's build/: a module moved
    or removed since the last build must not ship from there."""
    tree = tmp_path / "tree"
    files = run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, timeout=60).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_bytes((REPO / name).read_bytes())
    stale = tree / "build" / "lib" / "ulmfit_cli" / "moved_away.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("raise ImportError('a module the source no longer has')\n")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(tree)], cwd=tree,
        timeout=900)
    names = zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))).namelist()
    assert "ulmfit_cli/cli.py" in names and "ulmfit_cli/moved_away.py" not in names
