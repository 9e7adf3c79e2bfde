"""The docs' reference pages are generated from the code and cannot drift from it."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import gen_reference  # noqa: E402

from ulmfit_cli import cli, config  # noqa: E402

CONFIG_PAGE = REPO / "docs" / "reference" / "config.md"


def schema_keys(cls, prefix: str = "") -> list[str]:
    """Every dotted key of a schema, nested schemas (config groups) included."""
    keys = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)] or [tp]
        if dataclasses.is_dataclass(inner[0]):
            keys += schema_keys(inner[0], f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def test_the_committed_reference_pages_are_what_the_code_generates():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_reference.py"), "--check"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("schema", [config.PretrainConfig, config.FinetuneLMConfig, config.TrainClfConfig])
def test_every_key_of_every_group_is_a_row_of_the_config_reference(schema):
    page = CONFIG_PAGE.read_text()
    keys = schema_keys(schema)
    assert {"model.emb_size", "schedule.cut_frac", "logger.mlflow.tracking_uri", "train.bptt"} <= set(keys)
    missing = [k for k in keys if f"\n| {k} |" not in page]
    assert missing == []


def test_every_option_of_every_group_is_on_the_config_reference():
    page = CONFIG_PAGE.read_text()
    conf = REPO / "conf"
    options = [(p.parent.relative_to(conf).as_posix(), p.stem) for p in conf.glob("*/**/*.yaml")]
    assert len(options) > 50
    missing = [f"{g}/{o}" for g, o in options if f"| `{o}` |" not in page]
    assert missing == []


def test_a_schema_key_without_a_comment_stops_the_generator():
    @dataclasses.dataclass
    class Undocumented:
        knob: int = 3

    with pytest.raises(gen_reference.MissingDoc, match="Undocumented.knob"):
        gen_reference.schema_rows(Undocumented, "", gen_reference.schema_comments(), set())


def test_the_cli_reference_has_every_subcommand():
    page = (REPO / "docs" / "reference" / "cli.md").read_text()
    for name in [*cli.HYDRA_APPS, *cli.TOOLS]:
        assert f"`ulmfit {name}`" in page, name
    assert "usage: ulmfit predict" in page and "usage: ulmfit report" in page


def test_each_registered_option_is_listed_with_the_knobs_it_reads():
    from ulmfit_cli.reporting.options import options

    page = CONFIG_PAGE.read_text()
    groups = options()
    assert {"schedule", "unfreeze", "tokenizer"} <= set(groups)
    for group, entries in groups.items():
        section = page.split(f"\n## `{group}`\n", 1)[1].split("\n## ", 1)[0]
        for name, reads, _doc in entries:
            row = next((ln for ln in section.splitlines() if ln.startswith(f"| `{name}` |")), None)
            assert row is not None, f"{group}={name}"
            assert row.rstrip(" |").endswith(", ".join(reads) or "-"), row
