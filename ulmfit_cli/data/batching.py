"""Batches for the two kinds of training: contiguous LM streams and length-sorted documents.

Every iterator is a pure function of (seed, epoch), so a resumed run sees the same batches.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError


@dataclass
class LMBatch:
    x: torch.Tensor  # (bs, seq_len) int64
    y: torch.Tensor  # (bs, seq_len) next tokens
    lr_scale: float = 1.0


class LMStream:
    """bs contiguous streams over the concatenated documents (fastai's LMDataLoader).

    Documents are shuffled each epoch (train) and concatenated; the backward model reads the
    whole stream reversed. With variable BPTT (Merity et al.) the sequence length is drawn
    around bptt each batch and the LR is scaled by seq_len / bptt.

    Data-parallel (rank r of world_size W): the same bs streams are cut, and rank r reads rows
    [r*bs/W, (r+1)*bs/W) of every batch. Every rank draws the same sequence lengths (same seed)
    and so takes the same number of steps; each stream stays on one rank, so its LSTM state is
    carried there exactly as on one process, and the W ranks together compute the one-process
    batch. (Cutting the corpus into W pieces and those into streams instead gives other streams
    and hidden states than one process: https://github.com/fastai/fastai/issues/1933.)
    """

    def __init__(self, docs: list[np.ndarray], bs: int, bptt: int, *, seed: int = 0,
                 shuffle: bool = True, variable: bool = True, reverse: bool = False,
                 rank: int = 0, world_size: int = 1):
        if bs % world_size:  # the user-facing check is distributed.check_supported, before any data is read
            raise ValueError(f"LMStream: bs={bs} must be a multiple of world_size={world_size}")
        self.rows = slice(rank * bs // world_size, (rank + 1) * bs // world_size)
        self.docs, self.bs, self.bptt = docs, bs, bptt
        self.seed, self.shuffle, self.variable, self.reverse = seed, shuffle, variable, reverse
        self.n_tokens = int(doc_lengths(docs).sum())
        self.stream_len = (self.n_tokens - 1) // bs if bs else 0
        if self.stream_len < 2:
            raise UserError(
                f"The language-model corpus has {self.n_tokens} tokens, too few for batch size {bs}.",
                "Give a larger corpus or lower train.bs.",
            )

    def __len__(self) -> int:
        return max((self.stream_len - 1) // self.bptt, 1)

    def _order(self, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(len(self.docs)) if self.shuffle else np.arange(len(self.docs))

    def epoch(self, epoch: int):
        rng = np.random.default_rng([self.seed, epoch])
        text = ConcatView(self.docs, self._order(rng), self.reverse)
        rows = range(self.bs)[self.rows]
        i, L = 0, self.stream_len
        while i < L - 1:
            seq_len = self.bptt
            if self.variable:
                base = self.bptt if rng.random() < 0.95 else self.bptt / 2
                seq_len = max(5, int(rng.normal(base, 5)))
            seq_len = min(seq_len, L - i)
            window = torch.from_numpy(text.rows([r * L + i for r in rows], seq_len + 1))
            yield LMBatch(window[:, :-1], window[:, 1:], seq_len / self.bptt)
            i += seq_len


def doc_lengths(docs) -> np.ndarray:
    """Every document's length (int64): the token cache's `DocIds` know them without making views."""
    if hasattr(docs, "lengths"):
        return docs.lengths()
    return np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))


class ConcatView:
    """The documents in `order`, concatenated (and, with `reverse`, read back to front), without
    building that stream: a batch copies its rows' windows out of the documents themselves, so an
    epoch costs memory in proportion to the batch, not the corpus (the documents may be
    memory-mapped from the token cache)."""

    def __init__(self, docs: list[np.ndarray], order: np.ndarray, reverse: bool):
        self.docs, self.order, self.reverse = docs, order, reverse
        self.ends = np.cumsum(doc_lengths(docs)[order])
        self.total = int(self.ends[-1]) if len(self.ends) else 0

    def rows(self, starts: list[int], width: int) -> np.ndarray:
        """int64 (len(starts), width): positions [s, s + width) of the stream for each s."""
        out = np.empty((len(starts), width), dtype=np.int64)
        for row, s in zip(out, starts):
            if self.reverse:
                self._copy(row[::-1], self.total - s - width)
            else:
                self._copy(row, s)
        return out

    def _copy(self, dest: np.ndarray, start: int) -> None:
        """dest[:] = forward stream[start : start + len(dest)]."""
        k = int(np.searchsorted(self.ends, start, side="right"))
        filled, pos = 0, start
        while filled < len(dest):
            doc = self.docs[self.order[k]]
            begin = pos - (int(self.ends[k]) - len(doc))
            n = min(len(doc) - begin, len(dest) - filled)
            dest[filled:filled + n] = doc[begin:begin + n]
            filled, pos, k = filled + n, pos + n, k + 1


@dataclass
class ClfBatch:
    x: torch.Tensor  # (bs, max_len_in_batch), padded by pad_chunks
    y: torch.Tensor | None  # (bs,) class ids, or (bs, n_classes) multi-hot
    idx: np.ndarray  # positions of these documents in the input order
    n_tokens: int = 0
    # This process's share of the global batch's rows x world size (1 on one process): a loss
    # averaged over its rows and scaled by `share` makes DDP's mean over ranks the global mean.
    share: float = 1.0


def pad_chunks(docs: list[np.ndarray], pad_id: int, bptt: int) -> torch.Tensor:
    """Pad so that every document starts on a multiple of bptt (fastai's pad_input_chunk).

    Whole chunks of padding go first and the remainder (< bptt) last, so BPT3C can start each
    row's recurrence at its first real chunk and padding never enters the LSTM state.
    """
    L = max(len(d) for d in docs)
    out = np.full((len(docs), L), pad_id, dtype=np.int64)
    for r, d in enumerate(docs):
        front = (L - len(d)) // bptt * bptt
        out[r, front : front + len(d)] = d
    return torch.from_numpy(out)


MIN_ROWS = 2  # rows per process a training batch needs: BatchNorm's batch statistics


class ClassifierBatches:
    """Documents batched by similar length.

    Training order is 'sortish' (as fastai's SortishSampler): shuffle, sort within chunks of
    50 batches, keep the longest batch first (so an OOM shows at once), shuffle the rest.
    Evaluation order is sorted by length; `idx` lets callers restore the input order. An
    evaluation batch also ends early where padding its documents to its longest would more
    than double its real tokens (beyond bs * bptt cells): a million-token document is scored
    alone instead of padding bs - 1 short ones to a million tokens each. In eval mode a
    document's scores do not depend on its batch-mates, so this changes memory, not results.

    A last training batch too small for the head's BatchNorm (fewer than MIN_ROWS documents for
    some process: batch statistics of one row are undefined) is merged into the batch before it,
    which then has up to bs + MIN_ROWS * processes - 1 rows. fastai's training loader drops it
    instead (drop_last); with sortish batching that drops the shortest documents of the last
    chunk, for a small dataset the same ones every epoch. Merged, every document is seen.
    """

    def __init__(self, docs: list[np.ndarray], labels, bs: int, pad_id: int, bptt: int, *, seed: int = 0,
                 shuffle: bool = True, reverse: bool = False, rank: int = 0, world_size: int = 1):
        self.docs = [d[::-1].copy() for d in docs] if reverse else docs
        self.labels = labels
        self.bs, self.pad_id, self.bptt, self.seed, self.shuffle = bs, pad_id, bptt, seed, shuffle
        # Data-parallel training: every rank builds the same global batches and takes its
        # contiguous slice of each one's rows, so the ranks together train on the one-process batch.
        self.rank, self.world_size = rank, world_size
        self.lengths = np.array([len(d) for d in self.docs])
        self._eval: list[np.ndarray] | None = None

    def __len__(self) -> int:
        if not self.shuffle:
            return len(self._eval_batches())
        n, last = (len(self.docs) + self.bs - 1) // self.bs, len(self.docs) % self.bs
        return n - 1 if n > 1 and self._too_small(last) else n

    def _too_small(self, n_docs: int) -> bool:
        """A batch of n_docs (> 0) leaves some process fewer than MIN_ROWS rows."""
        return 0 < n_docs < MIN_ROWS * self.world_size

    def _eval_batches(self) -> list[np.ndarray]:
        if self._eval is None:
            order = np.argsort(-self.lengths, kind="stable")
            floor = self.bs * self.bptt
            batches, cur, real, width = [], [], 0, 0
            for i in order.tolist():
                n = int(self.lengths[i])
                if cur and (len(cur) == self.bs or (len(cur) + 1) * width > max(2 * (real + n), floor)):
                    batches.append(np.array(cur))
                    cur, real = [], 0
                if not cur:
                    width = n  # sorted longest first: the batch is padded to its first document
                cur.append(i)
                real += n
            if cur:
                batches.append(np.array(cur))
            self._eval = batches
        return self._eval

    def _order(self, epoch: int) -> list[np.ndarray]:
        n = len(self.docs)
        if not self.shuffle:
            return self._eval_batches()
        rng = np.random.default_rng([self.seed, epoch])
        idx = rng.permutation(n)
        chunk = self.bs * 50
        chunks = [idx[i : i + chunk] for i in range(0, n, chunk)]
        idx = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks])
        batches = [idx[i : i + self.bs] for i in range(0, n, self.bs)]
        if len(batches) > 1 and self._too_small(len(batches[-1])):
            batches[-2:] = [np.concatenate(batches[-2:])]
        longest = int(np.argmax([self.lengths[b].max() for b in batches]))
        batches[0], batches[longest] = batches[longest], batches[0]
        rest = batches[1:]
        perm = rng.permutation(len(rest))
        return [batches[0]] + [rest[i] for i in perm]

    def epoch(self, epoch: int = 0):
        for b in self._order(epoch):
            share = 1.0
            if self.world_size > 1 and self.shuffle:
                n = len(b)
                b = np.array_split(b, self.world_size)[self.rank]
                share = len(b) * self.world_size / n
            docs = [self.docs[i] for i in b]
            y = None
            if self.labels is not None:
                y = torch.as_tensor(np.asarray(self.labels)[b])
            yield ClfBatch(pad_chunks(docs, self.pad_id, self.bptt), y, b, int(self.lengths[b].sum()), share)
