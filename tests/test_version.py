"""`ulmfit --version`, and the record of which code made a result."""
from __future__ import annotations

import json
import re
import subprocess

from conftest import FAST, REPO, ulmfit

from ulmfit_cli import __version__
from ulmfit_cli.build_info import build_info


def pyproject_version() -> str:
    return re.search(r'^version = "([^"]+)"$', (REPO / "pyproject.toml").read_text(), re.M).group(1)


def head() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_package_version_is_the_one_pyproject_declares():
    assert __version__ == pyproject_version()


def test_version_flag_prints_the_version_and_the_checkout_commit(tmp_path):
    for flag in ("--version", "-V"):
        out = ulmfit(flag, cwd=tmp_path).stdout.strip()
        assert re.fullmatch(rf"ulmfit {re.escape(pyproject_version())} \(git {head()[:12]}(, modified)?\)", out), out


def test_build_info_names_the_checkout_commit():
    info = build_info()
    assert info["version"] == pyproject_version()
    assert info["git_commit"] == head() and isinstance(info["git_dirty"], bool)


def test_a_run_from_the_checkout_records_the_version_and_commit(tmp_path):
    ulmfit("pretrain", *FAST, "train.max_steps_per_epoch=2", cwd=tmp_path)
    summary = json.loads(next(tmp_path.glob("outputs/pretrain/*/summary.json")).read_text())
    assert summary["ulmfit"]["version"] == pyproject_version()
    assert summary["ulmfit"]["git_commit"] == head()
