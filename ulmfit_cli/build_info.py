"""Which ulmfit made a result: the package version, and the git commit when it runs from a checkout.

summary.json records both, so a number in a table can be traced to the code that produced it.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from . import __version__


def checkout_root() -> Path | None:
    """The git checkout the package is imported from (an editable install), else None (a wheel)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / ".git").exists() and (root / "pyproject.toml").is_file() else None


def git_commit(root: Path) -> tuple[str, bool] | None:
    """(HEAD's commit, whether tracked files differ from it), or None where git cannot tell."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head, bool(dirty)


def build_info() -> dict:
    """{"version": ...} plus {"git_commit", "git_dirty"} when run from a checkout git can read."""
    info: dict = {"version": __version__}
    root = checkout_root()
    found = git_commit(root) if root is not None else None
    if found is not None:
        info["git_commit"], info["git_dirty"] = found
    return info
