"""The docs' shell examples that work on the embedded sample are run, so the guides cannot rot.

A ```bash block right after a `<!-- docs-test -->` line is run with bash -euo pipefail, `ulmfit`
on PATH, in a fresh folder per page (the marked blocks of a page run in order in one folder, so a
later block may use an earlier one's outputs), with SHARED pointing at ../shared.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

MARK = "<!-- docs-test -->"
BLOCK = re.compile(re.escape(MARK) + r"\s*\n```(?:bash|sh|console)\n(.*?)\n```", re.S)
DOCS = REPO / "docs"


def marked_blocks(text: str) -> list[str]:
    return BLOCK.findall(text)


def pages_with_examples() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if MARK in p.read_text())


def test_every_mark_is_followed_by_a_shell_block():
    """A mark before anything but a bash block would silently run nothing."""
    for page in pages_with_examples():
        text = page.read_text()
        assert text.count(MARK) == len(marked_blocks(text)), page


def test_the_block_reader_finds_marked_blocks_only():
    text = f"```bash\nnot me\n```\n{MARK}\n```bash\nulmfit --version\n```\ntext\n{MARK}\n```bash\na\nb\n```\n"
    assert marked_blocks(text) == ["ulmfit --version", "a\nb"]


@pytest.mark.integration
@pytest.mark.parametrize("page", pages_with_examples(), ids=lambda p: p.relative_to(DOCS).as_posix())
def test_the_examples_of_a_docs_page_run(page, tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "SHARED": str(REPO.parent / "shared"), "HYDRA_FULL_ERROR": "0"}
    for i, block in enumerate(marked_blocks(page.read_text())):
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"block {i} of {page.name} exited {proc.returncode}:\n{block}\n" \
                                     f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
