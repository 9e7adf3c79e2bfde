"""`ulmfit download NAME [--dest DIR]`."""
from ..data.download import main  # noqa: F401
