"""Documents of a large text file, read from the file when they are asked for.

A 100M-token corpus is half a GB of text; held as Python strings (and, while it is being split into
documents, held twice) it would be most of a pretraining run's peak memory, although each document
is needed only twice: once to hash it for the token cache and once to tokenize it. `FileTexts` keeps
each document's byte span (16 bytes a document) and reads it with `os.pread` when indexed, so the
text stays in the page cache, which the OS can drop, and a worker process that gets a slice of it
reads its own documents instead of being sent them.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import UserError

BOM = b"\xef\xbb\xbf"
# What str.splitlines() ends a line at besides "\n", "\r\n" and a lone "\r", as UTF-8 bytes: the
# one-byte ends, then (only in a block that is not ASCII) U+0085 and U+2028/U+2029. The latter are
# found by a regex per literal prefix, which CPython's regex engine searches for faster than
# bytes.find does for a needle of two or three bytes; one regex over all of them would be ten times slower.
_RARE_BYTES = (b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e")
_RARE_MULTIBYTE = (re.compile(rb"\xc2\x85"), re.compile(rb"\xe2\x80[\xa8\xa9]"))
_LONE_CR = re.compile(rb"\r(?!\n)")
_BLOCK = 1 << 24


def _same(text: str) -> str:
    return text


class FileTexts(Sequence):
    """Sequence[str]: document i is bytes [starts[i], ends[i]) of `path`, decoded as UTF-8 (bad bytes
    replaced by U+FFFD) and passed through `transform` (a module-level function: slices are pickled)."""

    def __init__(self, path: str | Path, starts: np.ndarray, ends: np.ndarray,
                 transform: Callable[[str], str] = _same, all_nonblank: bool = False,
                 stamp: tuple[int, int] | None = None):
        self.path = str(path)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.ends = np.asarray(ends, dtype=np.int64)
        self.transform = transform
        self.all_nonblank = all_nonblank  # set by a reader that only makes documents with text in them
        self.stamp = stamp if stamp is not None else _stamp(os.stat(self.path))  # the file the spans are of
        self._fd: int | None = None

    def __len__(self) -> int:
        return len(self.starts)

    def _open(self) -> int:
        fd = os.open(self.path, os.O_RDONLY)
        if _stamp(os.fstat(fd)) != self.stamp:
            os.close(fd)
            raise UserError(f"{self.path} changed while this run was reading it (its size or modification "
                            "time is not what it was when its documents were found).",
                            "Leave a corpus unchanged while a run reads it, then start the run again.")
        return fd

    def _read(self, i: int) -> str:
        if self._fd is None:
            self._fd = self._open()
        start, end = int(self.starts[i]), int(self.ends[i])
        return self.transform(os.pread(self._fd, end - start, start).decode("utf-8", errors="replace"))

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"document {i} of {len(self)}")
        return self._read(i)

    def __iter__(self) -> Iterator[str]:
        return map(self._read, range(len(self)))

    def take(self, idx) -> "FileTexts":
        """The documents at the positions `idx`, in that order (still read on demand)."""
        idx = np.asarray(idx, dtype=np.int64)
        return FileTexts(self.path, self.starts[idx], self.ends[idx], self.transform, self.all_nonblank, self.stamp)

    def sizes(self) -> np.ndarray:
        """Each document's size in bytes: an upper bound on its characters, known without reading it."""
        return self.ends - self.starts

    def __add__(self, other):
        return list(self) + list(other)

    def __radd__(self, other):
        return list(other) + list(self)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and not isinstance(other, str) and list(self) == list(other)

    __hash__ = None  # a sequence compared by value

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)

    def __repr__(self) -> str:
        return f"FileTexts({self.path!r}, {len(self)} documents)"


def _stamp(st: os.stat_result) -> tuple[int, int]:
    return st.st_size, st.st_mtime_ns


def _body(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def _lines(line: bytes, at: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes without its end) of each line str.splitlines() sees in `line`, a line of the
    file at byte offset `at` (without its "\n") that holds one of the rarer line ends."""
    text = line.decode("utf-8", errors="surrogateescape")
    for kept, bare in zip(text.splitlines(keepends=True), text.splitlines()):
        yield at, bare.encode("utf-8", errors="surrogateescape")
        at += len(kept.encode("utf-8", errors="surrogateescape"))


def _rare_ends(block: bytes) -> Iterator[int]:
    """Where the rarer line ends are in `block` (memchr for each one-byte end)."""
    for end in _RARE_BYTES:
        at = block.find(end)
        while at >= 0:
            yield at
            at = block.find(end, at + 1)
    if not block.isascii():
        for ends in _RARE_MULTIBYTE:
            yield from (m.start() for m in ends.finditer(block))
    if b"\r" in block and block.count(b"\r") != block.count(b"\r\n"):  # a "\r" alone ends a line too
        yield from (m.start() for m in _LONE_CR.finditer(block))


def _rare_lines(block: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset in `block`, line without its "\n") of each line that holds one of the rarer line ends."""
    for start in sorted({block.rfind(b"\n", 0, at) + 1 for at in _rare_ends(block)}):
        end = block.find(b"\n", start)
        yield start, block[start:end if end >= 0 else len(block)]


def _starts(block: bytes, at: int, starts_document, candidates: re.Pattern) -> list[int]:
    """Offsets of the document-starting lines of `block` (whole lines, at byte `at` of the file).
    `candidates` is matched after a "\n" put before the block, so its match starts at the "\n"
    before a line."""
    lines = {at + m.start(): _body(m.group()[1:]) for m in candidates.finditer(b"\n" + block)}
    for start, line in _rare_lines(block):  # the few lines str.splitlines() splits further
        lines.pop(at + start, None)
        lines.update(_lines(line, at + start))
    return sorted(offset for offset, text in lines.items() if starts_document(text))


def scan_lines(path: Path, starts_document: Callable[[bytes], bool],
               candidates: bytes = rb"\n[^\n]*") -> tuple[np.ndarray, int, int, int]:
    """The byte offsets of the lines of `path` (as str.splitlines() splits the decoded file) for
    which `starts_document(line without its end)` holds; `candidates`, a regex over bytes, may
    narrow the lines it is asked about: it must match "\n" and then, whole, every line that could
    start one (a literal start keeps the scan fast).
    Returns (those offsets, the offset of the
    first byte after a UTF-8 BOM, the file's size, how many "\n"-separated lines are not valid UTF-8)."""
    offsets: list[int] = []
    bad = 0
    candidates = re.compile(candidates)
    with open(path, "rb") as f:
        first = len(BOM) if f.read(len(BOM)) == BOM else 0
        f.seek(first)
        at = first
        while block := f.read(_BLOCK):
            if not block.endswith(b"\n"):
                block += f.readline()
            if not block.isascii():
                bad += undecodable_lines(block)
            offsets += _starts(block, at, starts_document, candidates)
            at += len(block)
    return np.array(offsets, dtype=np.int64), first, path.stat().st_size, bad


def undecodable_lines(raw: bytes) -> int:
    """How many of the "\n"-separated lines of `raw` are not valid UTF-8."""
    try:
        raw.decode("utf-8")
        return 0
    except UnicodeDecodeError:
        return sum(1 for line in raw.split(b"\n") if not _valid(line))


def _valid(line: bytes) -> bool:
    try:
        line.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
