"""Every option chosen by name, from the registries of the layers that hold them, for the docs'
reference (scripts/gen_reference.py) and the tests: {group: [(name, knobs it reads, one-line doc)]}."""
from __future__ import annotations

from ..data.tokenizers import TOKENIZERS
from ..training.param_groups import UNFREEZE
from ..training.schedules import SCHEDULES
from .trackers import TRACKERS

REGISTRIES = (SCHEDULES, UNFREEZE, TOKENIZERS, TRACKERS)


def options() -> dict[str, list[tuple[str, tuple[str, ...], str]]]:
    return {r.group: r.describe() for r in REGISTRIES}
