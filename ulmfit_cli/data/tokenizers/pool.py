"""Worker processes for tokenizing a large corpus: texts split into chunks, each chunk handled in a
process of its own, the results back in input order. Small inputs stay in this process."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence

import numpy as np

# Worker processes start only when the input has at least this many characters.
PARALLEL_MIN_CHARS = 2_000_000

# The numericalizer of a worker process, set by its initializer (one per process, never in the parent).
_WORKER_NUM = None


def n_workers(workers: int) -> int:
    return max(1, min(int(workers or 1), os.cpu_count() or 1))


def long_enough(texts: Sequence[str]) -> bool:
    """Whether `texts` hold enough characters to pay for parallel encoding."""
    return sum(map(len, texts)) >= PARALLEL_MIN_CHARS


def worth_it(texts: Sequence[str], workers: int) -> bool:
    """Whether `texts` are many and long enough to pay for starting worker processes."""
    return workers > 1 and len(texts) >= 2 and long_enough(texts)


def chunks(seq: Sequence, n_chunks: int) -> list[tuple[int, int]]:
    n = len(seq)
    size = max(1, -(-n // n_chunks))
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def map_chunks(fn: Callable, texts: list[str], workers: int, initializer=None, initargs: tuple = ()) -> list:
    """fn(chunk) for ~4 chunks per worker (keeps the pool busy, limits pickling), in input order."""
    with ProcessPoolExecutor(max_workers=workers, initializer=initializer, initargs=initargs) as ex:
        return list(ex.map(fn, [texts[a:b] for a, b in chunks(texts, workers * 4)]))


def _worker_init(cls, state: dict) -> None:
    global _WORKER_NUM
    _WORKER_NUM = cls.from_state(state)


def _worker_encode(texts: list[str]) -> list[np.ndarray]:
    assert _WORKER_NUM is not None
    return [_WORKER_NUM.encode(t) for t in texts]


def encode_in_workers(numericalizer, texts: list[str], workers: int) -> list[np.ndarray]:
    """numericalizer.encode of every text, in `workers` processes, each holding a copy rebuilt from its state."""
    parts = map_chunks(_worker_encode, texts, workers, _worker_init, (type(numericalizer), numericalizer.state()))
    return [ids for part in parts for ids in part]
