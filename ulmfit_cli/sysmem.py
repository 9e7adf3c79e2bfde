"""Giving freed memory back to the operating system."""
from __future__ import annotations

import ctypes
import ctypes.util
import gc


def return_freed_memory() -> None:
    """Ask the C allocator to hand back the pages of freed objects (glibc's malloc_trim; elsewhere
    nothing). After a large corpus's texts are dropped, glibc keeps most of their pages for reuse,
    so the process would train holding the corpus's size in memory it no longer uses."""
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc: its allocator returns memory its own way
        pass
