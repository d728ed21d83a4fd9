"""Recall@K summaries of rank vectors, evaluation in folds, and the :func:`recall` entry point."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vsekit.errors import ProtocolError
from vsekit.metrics.inputs import ArrayLike, check_chunk_size, prepare_inputs
from vsekit.metrics.ranking import check_ties, rank_tensors

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
"""The K values of Recall@K reported by default."""

MIN_FOLD_IMAGES = 10
"""Folds of fewer images are refused: with 5 images every R@5 of image search is 100 %."""


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """``ks`` as a tuple of ints. Raises ``ValueError`` unless it is a non-empty list of distinct ints >= 1."""
    out = tuple(ks)
    if not out:
        raise ValueError("ks must contain at least one K")
    for k in out:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"every K in ks must be a positive int, got {k!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"ks must not contain duplicates, got {out}")
    return tuple(int(k) for k in out)


def _direction_summary(ranks: np.ndarray, prefix: str, ks: tuple[int, ...]) -> dict[str, float]:
    r = np.asarray(ranks)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"{prefix} ranks must be a non-empty 1-D array, got shape {r.shape}")
    out = {f"{prefix}_r{k}": float(100.0 * np.count_nonzero(r < k) / r.size) for k in ks}
    out[f"{prefix}_medr"] = float(math.floor(np.median(r)) + 1)
    out[f"{prefix}_meanr"] = float(r.mean() + 1)
    return out


def recall_summary(
    ranks_i2t: np.ndarray, ranks_t2i: np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """Recall@K, median and mean rank for both directions.

    Args:
        ranks_i2t: 0-based image-annotation ranks.
        ranks_t2i: 0-based image-search ranks.
        ks: the K values of Recall@K.

    Returns:
        ``{i2t_r{k}..., i2t_medr, i2t_meanr, t2i_r{k}..., t2i_medr, t2i_meanr, rsum}``
        where R@K is the percentage of ranks ``< K``, ``medr = floor(median) + 1``,
        ``meanr = mean + 1`` and ``rsum`` is the sum of all R@K values.
    """
    ks = check_ks(ks)
    out = _direction_summary(ranks_i2t, "i2t", ks)
    out.update(_direction_summary(ranks_t2i, "t2i", ks))
    out["rsum"] = float(sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks))
    return out


def check_folds(folds: int | None, n_img: int) -> int:
    """The number of folds (``None`` -> 1) after checking that ``n_img`` images split into equal folds.

    Raises:
        ProtocolError: ``folds`` is not a positive int, does not divide ``n_img``, or leaves a fold
            with fewer than :data:`MIN_FOLD_IMAGES` images; the message lists the fold counts that work.
    """
    if folds is None:
        return 1
    if isinstance(folds, bool) or not isinstance(folds, numbers.Integral) or folds < 1:
        raise ProtocolError(f"folds: expected a positive int, got {folds!r}")
    folds = int(folds)
    if folds == 1:
        return 1
    if n_img % folds == 0 and n_img // folds >= MIN_FOLD_IMAGES:
        return folds
    good = [f for f in range(1, n_img // MIN_FOLD_IMAGES + 1) if n_img % f == 0]
    why = (f"{n_img} images do not split into {folds} equal folds" if n_img % folds
           else f"{folds} folds of {n_img} images hold {n_img // folds} images each, "
                f"fewer than the {MIN_FOLD_IMAGES} a fold needs")
    shown = ", ".join(map(str, good[:12])) + (", ..." if len(good) > 12 else "")
    raise ProtocolError(f"folds = {folds}: {why}; fold counts that work: {shown}")


def _fold_summary(tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor], start: int, stop: int, *,
                  ks: tuple[int, ...], chunk_size: int, ties: str) -> dict[str, float]:
    """Summary for images ``[start, stop)`` and their captions (indices remapped)."""
    img_t, cap_t, c2i = tensors
    keep = (c2i >= start) & (c2i < stop)
    r_i2t, r_t2i = rank_tensors(img_t[start:stop], cap_t[keep], c2i[keep] - start, chunk_size, ties)
    return recall_summary(r_i2t, r_t2i, ks)


def recall(
    img: ArrayLike,
    cap: ArrayLike,
    cap2img: ArrayLike,
    ks: Sequence[int] = DEFAULT_KS,
    folds: int | None = None,
    *,
    chunk_size: int = 1024,
    ties: str = "pessimistic",
) -> dict[str, Any]:
    """Cross-modal retrieval summary (see :func:`recall_summary`).

    Args:
        img: ``(N, D)`` image embeddings.
        cap: ``(M, D)`` caption embeddings.
        cap2img: ``(M,)`` integer array mapping captions to images.
        ks: the K values of Recall@K.
        folds: ``None``/``1`` for one evaluation over everything; an int
            ``F > 1`` splits the images into ``F`` consecutive equal folds (e.g.
            the COCO "1K" protocol with ``F = 5``), each evaluated against its
            own captions only. A fold holds at least :data:`MIN_FOLD_IMAGES` images.
        chunk_size: image rows of the score matrix built at once (bounds memory, see
            :func:`~vsekit.metrics.ranking.ranks_i2t`).
        ties: the tie rule, ``"pessimistic"`` (default) or ``"reference"`` (see
            :func:`~vsekit.metrics.ranking.ranks_i2t`).

    Returns:
        The summary dict (R@K in %, 1-based ``medr`` / ``meanr``, ``rsum``); with ``F > 1`` folds each
        value is the mean over folds and the extra key ``"folds"`` holds the list of per-fold dicts.

    Raises:
        ValueError: on inconsistent shapes, out-of-range ``cap2img``, an image
            without captions or an unknown tie rule; :class:`~vsekit.errors.ProtocolError` (also a
            ``ValueError``) when the images do not split into ``folds`` folds of >= 10 images.
    """
    ks = check_ks(ks)
    chunk_size = check_chunk_size(chunk_size)
    tensors = prepare_inputs(img, cap, cap2img)
    n_img = tensors[0].shape[0]
    if n_img == 0:
        raise ValueError("img is empty: nothing to evaluate")
    n_folds = check_folds(folds, n_img)
    check_ties(ties)
    if n_folds == 1:
        r_i2t, r_t2i = rank_tensors(*tensors, chunk_size, ties)
        return recall_summary(r_i2t, r_t2i, ks)

    size = n_img // n_folds
    per_fold = [_fold_summary(tensors, f * size, (f + 1) * size, ks=ks, chunk_size=chunk_size, ties=ties)
                for f in range(n_folds)]
    out: dict[str, Any] = {key: float(np.mean([d[key] for d in per_fold])) for key in per_fold[0]}
    out["folds"] = per_fold
    return out
