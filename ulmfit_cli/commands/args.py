"""key=value arguments for the non-Hydra tools, typed by a dataclass like the stage configs."""
from __future__ import annotations

import dataclasses
import typing

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import UserError


def parse(schema, argv: list[str], usage: str):
    """argv of KEY=VALUE -> a typed, read-only config; unknown keys and bad types are UserErrors."""
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise UserError(f"'{bad[0]}' is not KEY=VALUE.", usage)
    # A string-typed value stays as typed: YAML would read `output=-` as a list and `text_col=no` as False.
    hints = typing.get_type_hints(schema)
    text_keys = {f.name for f in dataclasses.fields(schema) if str in (hints[f.name], *typing.get_args(hints[f.name]))}
    raw = {k: v for k, v in (a.split("=", 1) for a in argv) if k in text_keys}
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema),
                              OmegaConf.from_dotlist([a for a in argv if a.split("=", 1)[0] not in raw]), raw)
        OmegaConf.to_container(cfg, throw_on_missing=True)
    except OmegaConfBaseException as e:
        msg = str(e).splitlines()[0]
        raise UserError(f"Bad argument: {msg}.", usage) from None
    return cfg


def flags_to_dotlist(argv: list[str], usage: str) -> list[str]:
    """`--key value`, `--key=value` (dashes in key become _) and `key=value` -> key=value."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            key, eq, val = a[2:].partition("=")
            key = key.replace("-", "_")
            if not eq:
                if key == "verbose":
                    val = "true"
                elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    i += 1
                    val = argv[i]
                else:
                    raise UserError(f"{a} needs a value.", usage)
            out.append(f"{key}={val}")
        else:
            out.append(a)
        i += 1
    return out
