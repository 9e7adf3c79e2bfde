"""`ulmfit pipeline --config-dir DIR`: a user's own configs reach all three stages."""
from __future__ import annotations

import pytest

from conftest import assert_clean_error, ulmfit

from ulmfit_cli.commands.pipeline import config_dir_as_searchpath, pretrain_corpus
from ulmfit_cli.errors import UserError


def test_each_spelling_of_the_flag_becomes_one_absolute_searchpath(tmp_path, monkeypatch):
    (tmp_path / "myconf").mkdir()
    monkeypatch.chdir(tmp_path)
    want = f"hydra.searchpath=[file://{tmp_path / 'myconf'}]"
    for argv in (["--config-dir", "myconf"], ["--config-dir=myconf"], ["-cd", "myconf"], ["-cd=myconf"]):
        assert config_dir_as_searchpath(["experiment=x", *argv, "seed=1"]) == ["experiment=x", want, "seed=1"]


def test_a_missing_folder_or_value_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        config_dir_as_searchpath(["--config-dir", str(tmp_path / "nope")])
    with pytest.raises(UserError, match="needs a folder"):
        config_dir_as_searchpath(["-cd"])
    assert_clean_error(ulmfit("pipeline", "--config-dir", "nope", cwd=tmp_path, check=False), "--config-dir nope")


def test_the_pipeline_composes_a_users_experiment_to_pick_the_pretraining_corpus(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /dataset: trec6\n")
    overrides = config_dir_as_searchpath(["--config-dir", str(tmp_path), "experiment=mine"])
    assert pretrain_corpus(overrides) == "wikitext103"  # trec6's, not the default sample's
