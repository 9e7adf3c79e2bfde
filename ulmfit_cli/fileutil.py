"""Files and folders written whole or not at all, JSON, and a cross-process lock (no heavy imports)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from .errors import UserError


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


class _KeepsWriteErrors:
    """A file whose failed write() is remembered: torch.save's zip writer swallows the OSError
    (ENOSPC, EDQUOT, EIO) and fails later with an unrelated RuntimeError ("unexpected pos ...")."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, data):
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


def atomic_write_bytes(path: Path, write) -> None:
    """Write through a temp file in the same directory, fsync, then rename over `path`.

    A crash leaves either the old file or the new one, never half of either. A failed write
    (a full disk) removes the temp file and raises the OSError, with `path` as its filename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            kept = _KeepsWriteErrors(f)
            try:
                write(kept)
            except Exception as e:
                if kept.error is None or e is kept.error:
                    raise
                raise kept.error from None
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


def write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, default=str).encode()
    atomic_write_bytes(Path(path), lambda f: f.write(text))


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


@contextlib.contextmanager
def dir_built_aside(out: Path, flag: str = "--out") -> Iterator[Path]:
    """A new folder `out`, built in a temp folder beside it and renamed into place when the block
    ends, so it is never seen half-written; if the block fails the temp folder is removed. An
    existing non-empty `out` is refused: nothing is ever overwritten."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{flag} {out} already exists; nothing is overwritten.",
                        f"Choose another {flag} directory, or leave {flag} out for a new one.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # as mkdir would make it (mkdtemp's is private)
    try:
        yield tmp
        if out.is_dir():
            out.rmdir()  # empty (checked above), so the rename can take its place
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
