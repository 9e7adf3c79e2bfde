"""A corpus's token ids gathered as its chunks are tokenized, then mapped onto the vocabulary.

The vocabulary is known only once every chunk has been counted, so each chunk's ids are first
provisional (numbered as their tokens were first seen) and mapped at the end. `IdWriter(path)`
keeps them in a .npy file as they come, so a corpus of any size costs the memory of one chunk;
`IdWriter(None)` keeps them in memory.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

_BLOCK = 1 << 20  # ids mapped at a time in the file


def _npy_header(n: int) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": np.dtype(np.int32).str, "fortran_order": False,
                                               "shape": (n,)})
    return out.getvalue()


# Written first and rewritten with the count at the end: the same length for any count up to this.
_PLACEHOLDER = _npy_header(10**15)


class IdWriter:
    """Append int32 ids chunk by chunk; `finish(table)` maps every id i to table[i] and returns
    them all (a read-only memory map of `path` when there is one)."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else None
        self.count = 0
        self._parts: list[np.ndarray] = []
        self._file = None
        if self.path is not None:
            self._file = open(self.path, "w+b")
            self._file.write(_PLACEHOLDER)

    def append(self, ids: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int32)
        self.count += len(ids)
        if self._file is None:
            self._parts.append(ids)
        else:
            self._file.write(ids)

    def finish(self, table: np.ndarray | None = None) -> np.ndarray:
        """Every id mapped through `table` (None: kept as it is), in the order appended."""
        if self._file is None:
            flat = np.empty(self.count, dtype=np.int32)
            at = 0
            while self._parts:  # each part is let go once copied: the ids are held once, plus a part
                part = self._parts.pop(0)
                flat[at:at + len(part)] = part if table is None else table[part]
                at += len(part)
            return flat
        header = _npy_header(self.count)
        if len(header) != len(_PLACEHOLDER):
            raise ValueError(f"{self.count} ids do not fit a .npy header of {len(_PLACEHOLDER)} bytes")
        f, self._file = self._file, None
        with f:
            f.flush()
            fd = f.fileno()
            os.pwrite(fd, header, 0)
            if table is not None:
                for start in range(0, self.count, _BLOCK):
                    at = len(header) + 4 * start
                    block = np.frombuffer(os.pread(fd, 4 * min(_BLOCK, self.count - start), at), dtype=np.int32)
                    os.pwrite(fd, table[block], at)
            os.fsync(fd)
        return np.load(self.path, mmap_mode="r", allow_pickle=False)

    def discard(self) -> None:
        """Drop what was written (a run stopped before `finish`)."""
        self._parts.clear()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
