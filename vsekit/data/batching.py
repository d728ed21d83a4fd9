"""Padded caption batches and length-bucketed batch orders.

Captions are held as one flat int64 array plus lengths; a batch is gathered
with numpy fancy indexing (no per-caption Python work on the hot path).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from vsekit.text.batch import TextBatch

__all__ = ["CaptionStore", "TextBatch", "bucketed_batches", "collate"]


class CaptionStore:
    """Captions as a flat index array with offsets; gathers padded batches."""

    def __init__(self, flat: np.ndarray, lengths: np.ndarray, texts: Sequence[Sequence[str]] | None = None) -> None:
        self.flat = np.ascontiguousarray(flat, dtype=np.int64)
        self.lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.texts = texts

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, idx: np.ndarray, with_texts: bool = False) -> TextBatch:
        """The padded :class:`TextBatch` of the captions at positions ``idx``, in that order.

        ``tokens`` is (B, max_len) int64 padded with 0 and ``lengths`` (B,) int64;
        ``texts`` holds the captions' tokens when ``with_texts`` and the store has them, else None.
        """
        idx = np.asarray(idx, dtype=np.int64)
        return collate(self.flat, self.offsets[idx], self.lengths[idx],
                       [self.texts[i] for i in idx] if (with_texts and self.texts is not None) else None)


def collate(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
            texts: Sequence[Sequence[str]] | None = None) -> TextBatch:
    """Pad the captions ``flat[starts[i] : starts[i] + lengths[i]]`` into a (B, max_len) batch."""
    b = len(lengths)
    t = int(lengths.max()) if b else 0
    out = np.zeros((b, max(t, 1)), dtype=np.int64)
    mask = np.arange(max(t, 1))[None, :] < lengths[:, None]
    # gather positions: start + column, only where inside the caption
    pos = (starts[:, None] + np.arange(max(t, 1))[None, :])[mask]
    out[mask] = flat[pos]
    return TextBatch(torch.from_numpy(out), torch.from_numpy(lengths.copy()), texts)


def bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                     bucket: bool = True, pool: int = 50, drop_last: bool = False) -> list[np.ndarray]:
    """A shuffled epoch of batch index arrays; with ``bucket``, batches hold captions of similar length.

    Captions are shuffled, cut into pools of ``pool`` batches, each pool sorted
    by length (stable, so ties stay shuffled) and cut into batches; the batches
    are then shuffled. Padding waste is near zero and batches stay random.
    """
    order = rng.permutation(len(lengths))
    if bucket:
        chunks = []
        span = batch_size * pool
        for start in range(0, len(order), span):
            part = order[start : start + span]
            chunks.append(part[np.argsort(lengths[part], kind="stable")])
        order = np.concatenate(chunks) if chunks else order
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if batches and len(batches[-1]) < 2:  # a batch of one has no negatives
        batches.pop()
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


def sequential_batches(n: int, batch_size: int) -> Iterator[np.ndarray]:
    """Index arrays (int) covering ``range(n)`` in order, ``batch_size`` at a time (the last may be shorter)."""
    for start in range(0, n, batch_size):
        yield np.arange(start, min(n, start + batch_size))
