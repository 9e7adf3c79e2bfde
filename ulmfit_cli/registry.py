"""Options chosen by name (schedule=stlr, unfreeze=gradual, tokenizer=spm, logger=mlflow).

Each option registers itself beside its builder, with the knobs of its config group that only some
options read: `@SCHEDULES.register("stlr", reads=("cut_frac", "ratio"))`. The knob check, the error
for an unknown name and the docs' reference read that one entry, so adding an option is its builder
and its conf/<group>/<name>.yaml. A registry is filled once, at import, by those decorators.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from .errors import UserError


@dataclass(frozen=True)
class Option:
    name: str
    build: Callable
    reads: tuple[str, ...] = ()  # knobs of the group this option reads that some other option does not
    doc: str = ""  # the builder's docstring, first line
    info: Mapping[str, Any] = field(default_factory=dict)  # what a group asks of its options (unfreeze: partly_frozen)


class Registry:
    """The options of one config group, by name, in the order they registered."""

    def __init__(self, group: str):
        self.group = group
        self._options: dict[str, Option] = {}

    def register(self, name: str, reads: tuple[str, ...] = (), **info) -> Callable:
        def add(build: Callable) -> Callable:
            if name in self._options:
                raise ValueError(f"{self.group} option '{name}' is registered twice")
            doc = (build.__doc__ or "").strip().split("\n\n")[0]
            self._options[name] = Option(name, build, tuple(reads), " ".join(doc.split()), MappingProxyType(info))
            return build
        return add

    def names(self) -> list[str]:
        return list(self._options)

    def __contains__(self, name: str) -> bool:
        return name in self._options

    def __getitem__(self, name: str) -> Option:
        """The option called `name`; an unknown name is a UserError listing the registered ones."""
        if name not in self._options:
            names = [f"{self.group}={n}" for n in self._options]
            raise UserError(f"Unknown {self.group}.name '{name}'.",
                            f"Use {', '.join(names[:-1])} or {names[-1]}." if len(names) > 1 else f"Use {names[0]}.")
        return self._options[name]

    def ignored_knobs(self, chosen: str, keys: set[str]) -> list[tuple[str, str]]:
        """(knob, the fix) for each knob in `keys` that some option reads but `chosen` does not."""
        reads = self[chosen].reads
        return [(k, f"add {self.group}={self.first_reader(k)} to use it")
                for k in sorted(keys) if self.first_reader(k) and k not in reads]

    def first_reader(self, knob: str) -> str | None:
        return next((o.name for o in self._options.values() if knob in o.reads), None)

    def describe(self) -> list[tuple[str, tuple[str, ...], str]]:
        """(name, knobs it reads, one-line doc) of each option, for the docs' reference."""
        return [(o.name, o.reads, o.doc) for o in self._options.values()]
