"""Checkpoints load without executing code, and broken ones are clear errors."""
import os

import pytest
import torch

from ulmfit_cli.checkpoints import load_checkpoint, save_checkpoint
from ulmfit_cli.errors import UserError


class Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_crafted_to_run_code_is_refused_unopened(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "fwd.pt"
    torch.save({"format": "ulmfit-checkpoint", "model": Evil(str(marker))}, path)
    with pytest.raises(UserError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "fwd.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(1000)}})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or not a checkpoint"):
        load_checkpoint(path)


def test_foreign_torch_file_and_newer_version(tmp_path):
    torch.save({"weights": torch.ones(2)}, tmp_path / "a.pt")
    with pytest.raises(UserError, match="not an ulmfit checkpoint"):
        load_checkpoint(tmp_path / "a.pt")
    torch.save({"format": "ulmfit-checkpoint", "version": 99}, tmp_path / "b.pt")
    with pytest.raises(UserError, match="newer"):
        load_checkpoint(tmp_path / "b.pt")


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "fwd.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}})

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, {"model": {"w": torch.ones(3)}})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(3))
    assert [p.name for p in tmp_path.iterdir()] == ["fwd.pt"]  # no temp file left behind
