"""Every config default lives in one place: the schema (ulmfit_cli/config.py).

The rule (config.py's docstring): the schema's defaults are the values of each group's default
option, so that option's YAML file names itself and nothing else; any other option's YAML, and a
stage's primary config, sets only values that differ from the schema. A YAML line that repeats
a schema default is a second copy that can drift from it (as unfreeze.steps once did), and fails
here naming the file and key.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ulmfit_cli import config

CONF = Path(config.conf_dir())
GROUPS = {"model": config.ModelConfig, "dataset": config.DatasetConfig, "tokenizer": config.TokenizerConfig,
          "schedule": config.ScheduleConfig, "unfreeze": config.UnfreezeConfig,
          "bidirectional": config.BidirectionalConfig, "distributed": config.DistributedConfig,
          "logger": config.LoggerConfig}
PRIMARY = {"pretrain.yaml": config.PretrainConfig, "finetune_lm.yaml": config.FinetuneLMConfig,
           "train_clf.yaml": config.TrainClfConfig}


def repeats(values: dict, defaults: dict, where: str) -> list[str]:
    """Keys of `values` (nested) equal to the schema's `defaults`."""
    found = []
    for key, value in values.items():
        if key in ("defaults", "hydra") or key not in defaults:
            continue
        if isinstance(value, dict) and isinstance(defaults[key], dict):
            found += repeats(value, defaults[key], f"{where}{key}.")
        elif value == defaults[key]:
            found.append(f"{where}{key}: {value!r}")
    return found


def yaml_values(path: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(path)) or {}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_group_options_set_only_what_differs_from_the_schema(group):
    defaults = OmegaConf.to_container(OmegaConf.structured(GROUPS[group]))
    bad = []
    for path in sorted((CONF / group).glob("*.yaml")):
        values = yaml_values(path)
        bad += repeats({k: v for k, v in values.items() if k != "name"}, defaults, f"{path.relative_to(CONF)}: ")
    assert not bad, "these repeat the schema's default (config.py); delete them from the YAML:\n" + "\n".join(bad)


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_the_default_option_is_the_schema_itself(group):
    """The option the schema's `name` default names holds nothing but that name."""
    fields = {f.name: f for f in dataclasses.fields(GROUPS[group])}
    name = fields["name"].default if "name" in fields else None
    if not isinstance(name, str) or name == "???":
        pytest.skip(f"{group} has no default option")
    values = yaml_values(CONF / group / f"{name}.yaml")
    assert set(values) <= {"name"}, f"{group}/{name}.yaml sets {sorted(set(values) - {'name'})}: put them in config.py"


@pytest.mark.parametrize("primary", sorted(PRIMARY))
def test_primary_configs_set_only_what_differs_from_the_schema(primary):
    defaults = OmegaConf.to_container(OmegaConf.structured(PRIMARY[primary]))
    bad = repeats(yaml_values(CONF / primary), defaults, f"{primary}: ")
    assert not bad, "these repeat the schema's default (config.py):\n" + "\n".join(bad)


def test_the_checker_catches_a_repeated_default(tmp_path):
    """unfreeze.steps as it once was: a YAML copy of a default (caught), or a disagreeing one in the
    default option's file (caught by the default-option rule)."""
    defaults = OmegaConf.to_container(OmegaConf.structured(config.UnfreezeConfig))
    assert repeats({"steps": defaults["steps"], "epochs_per_phase": 2}, defaults, "") == [f"steps: {defaults['steps']!r}"]


def test_paper_gradual_unfreezing_is_the_default():
    """Paper §3.3: unfreeze the top group, train an epoch, unfreeze the next lower one, ...: the
    classifier's 5 groups (embedding, 3 LSTM layers, head) open as 1, 2, 3, 4, then all."""
    cfg = config.compose("train_clf", [])
    assert cfg.unfreeze.name == "gradual" and list(cfg.unfreeze.steps) == [1, 2, 3, 4]


def test_per_stage_values_are_named_and_overridable():
    cfg = config.compose("train_clf", ["experiment=trec6"])
    assert cfg.train.epochs == cfg.per_stage.epochs["train-clf"]
    cfg = config.compose("train_clf", ["experiment=trec6", "per_stage.epochs.train-clf=3"])
    assert cfg.train.epochs == 3
    assert config.compose("finetune_lm", ["experiment=trec6", "per_stage.epochs.train-clf=3"]).train.epochs != 3
