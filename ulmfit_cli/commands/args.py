"""key=value arguments for the non-Hydra tools, typed by a dataclass like the stage configs."""
from __future__ import annotations

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import UserError


def parse(schema, argv: list[str], usage: str):
    """argv of KEY=VALUE -> a typed, read-only config; unknown keys and bad types are UserErrors."""
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise UserError(f"'{bad[0]}' is not KEY=VALUE.", usage)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(argv))
        OmegaConf.to_container(cfg, throw_on_missing=True)
    except OmegaConfBaseException as e:
        msg = str(e).splitlines()[0]
        raise UserError(f"Bad argument: {msg}.", usage) from None
    return cfg
