"""A cross-process file lock, shared by `ulmfit download` and the sweep table (no heavy imports)."""
from __future__ import annotations

import contextlib
import errno
from pathlib import Path
from typing import Callable, Iterator


@contextlib.contextmanager
def file_lock(path: Path, *, wait: bool = True, busy: Callable[[], Exception] | None = None,
              remove: bool = False) -> Iterator[None]:
    """Hold an exclusive advisory lock (flock) on `path`, creating the file.

    wait=False: when another process holds it, raise `busy()` at once instead of waiting.
    remove=True: the holder deletes the file on release (for locks that should leave no trace).
    Where flock does not exist (Windows) or the file system refuses it (ENOLCK, EOPNOTSUPP),
    this runs unlocked rather than failing.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock
        yield
        return
    with open(path, "a+b") as fh:
        locked = True
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as e:
            if not wait and e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise (busy() if busy else e) from e
            locked = False  # a file system without locks: go on unlocked
        try:
            yield
        finally:
            if remove:
                path.unlink(missing_ok=True)
            if locked:
                with contextlib.suppress(OSError):
                    fcntl.flock(fh, fcntl.LOCK_UN)
