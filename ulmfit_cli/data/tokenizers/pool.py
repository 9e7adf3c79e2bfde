"""Worker processes for tokenizing a large corpus: texts split into chunks, each chunk handled in a
process of its own, the results back in input order. Small inputs stay in this process."""
from __future__ import annotations

import os
import signal
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator, Sequence

import numpy as np

# Worker processes start only when the input has at least this many characters.
PARALLEL_MIN_CHARS = 2_000_000
# A chunk of texts tokenized at once holds about this many characters: what a process holds of the
# corpus's tokens at a time stays the same however large the corpus.
CHUNK_CHARS = 4_000_000

# The numericalizer of a worker process, set by its initializer (one per process, never in the parent).
_WORKER_NUM = None


def n_workers(workers: int) -> int:
    return max(1, min(int(workers or 1), os.cpu_count() or 1))


def text_sizes(texts: Sequence[str]) -> np.ndarray:
    """Each text's length in characters (int64), or, for documents read from a file on demand
    (which offer `sizes()`), in bytes, without reading them."""
    sizes = getattr(texts, "sizes", None)
    return sizes() if sizes is not None else np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))


def long_enough(texts: Sequence[str]) -> bool:
    """Whether `texts` hold enough characters to pay for parallel encoding."""
    return int(text_sizes(texts).sum()) >= PARALLEL_MIN_CHARS


def worth_it(texts: Sequence[str], workers: int) -> bool:
    """Whether `texts` are many and long enough to pay for starting worker processes."""
    return workers > 1 and len(texts) >= 2 and long_enough(texts)


def chunks(texts: Sequence[str], workers: int, chunk_chars: int | None = None) -> list[tuple[int, int]]:
    """(start, end) of consecutive runs of `texts` of about equal size: at least 4 per worker (keeps
    the pool busy) and none much over `chunk_chars` characters (what a process holds at once)."""
    n, chunk_chars = len(texts), chunk_chars or CHUNK_CHARS
    if n == 0:
        return []
    ends = np.cumsum(text_sizes(texts))
    n_chunks = min(n, max(workers * 4, -(-int(ends[-1]) // chunk_chars)))
    cuts = np.searchsorted(ends, ends[-1] * np.arange(1, n_chunks) / n_chunks, side="right")
    bounds = np.unique(np.concatenate([[0], cuts, [n]]))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def imap_chunks(fn: Callable, texts: Sequence[str], workers: int, initializer=None,
                initargs: tuple = ()) -> Iterator:
    """fn(chunk) for each of `chunks(texts, workers)`, in input order, as they are done: in worker
    processes when `workers` > 1 or an `initializer` must set a worker up, else here. A chunk of
    documents read from a file on demand is sent as their spans; the worker reads them."""
    parts = (texts[a:b] for a, b in chunks(texts, workers))
    if workers <= 1 and initializer is None:
        yield from map(fn, parts)
        return
    ex = ProcessPoolExecutor(max_workers=workers, initializer=_worker_start, initargs=(initializer, initargs))
    try:
        pending: deque = deque()
        for part in parts:  # two chunks in flight per worker: results never pile up here
            pending.append(ex.submit(fn, part))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # stopped or failed: the queued chunks are dropped, the running ones end the workers
        ex.shutdown(wait=True, cancel_futures=True)


def _worker_start(initializer, initargs: tuple) -> None:
    """A worker leaves SIGINT and SIGTERM to the process that started it, which stops the pool (a
    terminal's Ctrl-C reaches every process of the group)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def map_chunks(fn: Callable, texts: Sequence[str], workers: int, initializer=None, initargs: tuple = ()) -> list:
    """`imap_chunks` as a list."""
    return list(imap_chunks(fn, texts, workers, initializer, initargs))


def _worker_init(cls, state: dict) -> None:
    global _WORKER_NUM
    _WORKER_NUM = cls.from_state(state)


def _worker_encode(texts: list[str]) -> list[np.ndarray]:
    assert _WORKER_NUM is not None
    return [_WORKER_NUM.encode(t) for t in texts]


def encode_in_workers(numericalizer, texts: Sequence[str], workers: int) -> Iterator[list[np.ndarray]]:
    """numericalizer.encode of every text, chunk by chunk in input order, in `workers` processes,
    each holding a copy rebuilt from its state."""
    return imap_chunks(_worker_encode, texts, workers, _worker_init, (type(numericalizer), numericalizer.state()))
