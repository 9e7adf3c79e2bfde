"""What a run learned about a large corpus file, kept so that the next run need not read it again.

Finding the documents of a 100M-token file means reading all of it, and hashing them for the token
cache means reading it again: on a cache hit that was nearly all the data time, spent learning what
the run before already knew. Both results are kept in an index folder (the token cache's
``index/``), each as one ``.npz`` named by a key over the file's identity (device, inode, size,
modification and change times in ns), what was computed, and the source of the code that computed
it. Any write to a file moves its change time, which no tool can set back, so a changed file is
never matched. What was learned is not kept when the file changed while it was read, or changed
so recently that a second write could still share its timestamps (git's "racily clean" case).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..fileutil import atomic_write_bytes

log = logging.getLogger("ulmfit")

# A file changed less than this long ago is not indexed (coarse filesystem clocks tick in seconds).
RECENT_NS = 2_000_000_000


def identity(path: str | os.PathLike) -> os.stat_result:
    return os.stat(path)


def _fields(st: os.stat_result) -> tuple[int, ...]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@functools.cache
def _source_digest(filename: str) -> bytes:
    try:
        return hashlib.sha256(Path(filename).read_bytes()).digest()
    except OSError:
        return b"unknown"


def source_id(module: str) -> bytes:
    """The digest of a (loaded) module's source: an edit to it makes a new id."""
    return module.encode() + b"\0" + _source_digest(str(sys.modules[module].__file__))


def code_id(fn: Callable) -> bytes:
    """A function's name and the digest of its module's source."""
    return f"{fn.__qualname__}\0".encode() + source_id(fn.__module__)


def key(st: os.stat_result, *parts: bytes) -> str:
    """The name of what `parts` (what was computed, and by which code) say about the file `st` is of."""
    h = hashlib.sha256(b"ulmfit-file-index/v1\0")
    h.update(repr(_fields(st)).encode() + b"\0")
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:40]


def load(index_dir: Path | None, name: str) -> dict[str, np.ndarray] | None:
    """The arrays kept under `name`, or None (not kept, no index, or unreadable)."""
    if index_dir is None:
        return None
    path = Path(index_dir) / f"{name}.npz"
    try:
        with np.load(path, allow_pickle=False) as kept:
            return {k: kept[k] for k in kept.files}
    except FileNotFoundError:
        return None
    except Exception as e:  # truncated or from another version: computed again and rewritten
        log.warning("file index: ignoring unreadable %s (%s)", path, e)
        return None


def keep(index_dir: Path | None, name: str, path: str | os.PathLike, before: os.stat_result,
         arrays: dict[str, np.ndarray]) -> bool:
    """Keep `arrays` under `name` if the file at `path` is still what `before` says it was when they
    were computed from it, and old enough that its timestamps can be trusted. Returns whether they
    were kept; an index that cannot be written costs nothing but the next run's reading."""
    if index_dir is None:
        return False
    try:
        now = identity(path)
    except OSError:
        return False
    if _fields(now) != _fields(before) or time.time_ns() - max(now.st_mtime_ns, now.st_ctime_ns) < RECENT_NS:
        return False
    try:
        atomic_write_bytes(Path(index_dir) / f"{name}.npz", lambda f: np.savez(f, **arrays))
        return True
    except OSError as e:
        log.debug("file index: could not write %s (%s)", index_dir, e)
        return False


def remembered(index_dir: Path | None, path: str | os.PathLike, parts: Iterable[bytes],
               compute: Callable[[os.stat_result], dict[str, np.ndarray]]) -> tuple[os.stat_result, dict[str, np.ndarray]]:
    """(the file's stat, what `compute(that stat)` learns from the file at `path`): read from
    `index_dir` when the same file, unchanged, was asked the same before (`parts`: what is computed
    and by which code), else computed and kept there for the next run."""
    st = identity(path)
    name = key(st, *parts)
    found = load(index_dir, name)
    if found is None:
        found = compute(st)
        keep(index_dir, name, path, st, found)
    return st, found
