"""The optional extras (trackers, sweep launchers, Parquet, ...): whether one is installed."""
from __future__ import annotations

import importlib.util


def module_installed(module: str) -> bool:
    """Whether an optional module (an extra's, a Hydra plugin's) can be imported."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing (hydra_plugins for hydra_plugins.x)
        return False
