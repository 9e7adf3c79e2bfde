"""ulmfit: a config-driven experiment runner for ULMFiT (Howard & Ruder 2018)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ulmfit-cli")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
