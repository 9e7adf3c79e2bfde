"""Options that register themselves: one entry per option holds its builder and the knobs it reads,
and the conf/ YAML options, the knob check, the unknown-name error and the docs read those entries."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ulmfit_cli import config
from ulmfit_cli.errors import UserError
from ulmfit_cli.registry import Registry
from ulmfit_cli.reporting.options import options

CONF = Path(config.conf_dir())
SCHEMAS = {"schedule": config.ScheduleConfig, "unfreeze": config.UnfreezeConfig, "tokenizer": config.TokenizerConfig,
           "logger": config.LoggerConfig}


def test_every_yaml_option_is_registered_and_every_registered_option_has_its_yaml():
    for group, entries in options().items():
        yamls = {p.stem for p in (CONF / group).glob("*.yaml")} - ({"csv"} if group == "logger" else set())
        assert yamls == {name for name, _, _ in entries}, group


def test_every_knob_an_option_reads_is_a_key_of_its_group():
    for group, entries in options().items():
        if group == "logger":  # a tracker reads the keys of its own node, logger.<name>.*
            nodes = {f.name: f.type for f in dataclasses.fields(config.LoggerConfig)}
            for name, reads, _ in entries:
                assert name in nodes and reads and all(isinstance(k, str) for k in reads)
            continue
        keys = {f.name for f in dataclasses.fields(SCHEMAS[group])}
        for name, reads, doc in entries:
            assert set(reads) <= keys, (group, name)
            assert doc and "\n" not in doc, (group, name)


def test_an_unknown_name_lists_the_registered_ones():
    from ulmfit_cli.training.param_groups import unfreeze_plan

    with pytest.raises(UserError, match=r"^Unknown unfreeze.name 'gradually'\. Use unfreeze=gradual, unfreeze=none, "
                                        r"unfreeze=last or unfreeze=chain_thaw\.$"):
        unfreeze_plan(config.UnfreezeConfig(name="gradually"), 5, 3)
    from ulmfit_cli.data.tokenizers import fit_numericalizer

    with pytest.raises(UserError, match=r"^Unknown tokenizer.name 'bpe'\. Use tokenizer=word or tokenizer=spm\.$"):
        fit_numericalizer(["a b"], {"name": "bpe"})


def test_ignored_knobs_name_the_first_option_that_reads_them():
    from ulmfit_cli.data.tokenizers import TOKENIZERS

    assert TOKENIZERS.ignored_knobs("word", {"vocab_size", "max_vocab", "name"}) == [
        ("vocab_size", "add tokenizer=spm to use it")]
    assert TOKENIZERS.ignored_knobs("spm", {"vocab_size", "model_type"}) == []


def test_a_registry_refuses_a_name_twice_and_keeps_the_builder_usable():
    reg = Registry("thing")

    @reg.register("a", reads=("x",), flag=True)
    def build_a(cfg):
        """Builds a.

        More words that are not the one-line doc."""
        return cfg * 2

    assert build_a(3) == 6 and reg["a"].build(4) == 8 and reg["a"].info["flag"] is True
    assert reg.describe() == [("a", ("x",), "Builds a.")]
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(build_a)
    with pytest.raises(UserError, match=r"^Unknown thing.name 'b'\. Use thing=a\.$"):
        reg["b"]


def test_the_short_budget_warning_follows_the_registry():
    from ulmfit_cli.training.param_groups import UNFREEZE

    assert {n for n in UNFREEZE.names() if UNFREEZE[n].info["thaws_in_phases"]} == {"gradual", "chain_thaw"}


def test_unknown_tokenizer_on_the_command_line_fails_before_any_work(tmp_path):
    from conftest import assert_clean_error, ulmfit

    proc = ulmfit("pretrain", "experiment=quickstart", "tokenizer.name=bpe", cwd=tmp_path, check=False)
    assert_clean_error(proc, "Unknown tokenizer.name 'bpe'. Use tokenizer=word or tokenizer=spm.")
    assert not list(tmp_path.glob("outputs/pretrain/*/metrics.csv"))
    proc = ulmfit("pretrain", "experiment=quickstart", "tokenizer.vocab_size=500", cwd=tmp_path, check=False)
    assert_clean_error(proc, "tokenizer.vocab_size has no effect with", "tokenizer.vocab_size: add tokenizer=spm to use it")
