"""Core retrieval metrics for visual-semantic embeddings.

Pure functions (numpy + torch only) that turn image / caption embeddings into
retrieval ranks and Recall@K summaries, in the style of the usual
image-caption retrieval protocol (Flickr30K / MS-COCO):

* **image annotation** (``i2t``): an image queries all captions; its rank is
  the number of captions scored *strictly* higher than the best-scored of its
  own ground-truth captions;
* **image search** (``t2i``): a caption queries all images; its rank is the
  number of images scored *strictly* higher than its own image.

Ranks are 0-based and ties count in the query's favour.  Scores are dot
products computed in float32 with torch.  Work is chunked over queries so that
at most ``chunk_size`` rows of the score matrix exist at any time, and a rank
is obtained as a count (one comparison + one matrix-vector product per chunk),
never with a sort.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import torch

__all__ = [
    "ranks_i2t",
    "ranks_t2i",
    "ranks_both",
    "recall_summary",
    "recall",
    "chance_rsum",
]

ArrayLike: TypeAlias = np.ndarray | torch.Tensor
"""Anything accepted as embeddings or indices: a numpy array or a torch tensor."""

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)

# Counts are accumulated as float32 sums of 0/1 values (a fast GEMV); such sums
# are exact while every partial sum stays below 2**24.
_FLOAT32_EXACT_INT = 2**24


# --------------------------------------------------------------------------- #
# Input conversion and validation
# --------------------------------------------------------------------------- #
def _as_float32_tensor(x: Any, name: str) -> torch.Tensor:
    """Return ``x`` as a 2-D float32 torch tensor, sharing memory when possible."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.dtype != torch.float32:
            t = t.to(torch.float32)
    else:
        try:
            a = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a float array, got {type(x).__name__}") from exc
        if any(s < 0 for s in a.strides):  # torch.from_numpy rejects negative strides
            a = np.ascontiguousarray(a)
        with warnings.catch_warnings():
            # Read-only arrays are fine: these tensors are never written to.
            warnings.filterwarnings("ignore", message=".*not writable.*")
            t = torch.from_numpy(a)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, dim), got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _as_index_tensor(x: Any, n_cap: int, n_img: int, device: torch.device) -> torch.Tensor:
    """Validate ``cap2img`` and return it as an int64 tensor on ``device``."""
    if isinstance(x, torch.Tensor):
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise ValueError(f"cap2img must have an integer dtype, got {x.dtype}")
        t = x.detach().to(device=device, dtype=torch.int64)
    else:
        a = np.asarray(x)
        if a.size > 0 and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"cap2img must have an integer dtype, got {a.dtype}")
        t = torch.as_tensor(a.astype(np.int64, copy=False), device=device)
    if t.ndim != 1:
        raise ValueError(f"cap2img must be 1-D, got shape {tuple(t.shape)}")
    if t.shape[0] != n_cap:
        raise ValueError(
            f"cap2img has length {t.shape[0]} but there are {n_cap} captions"
        )
    if n_cap > 0:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= n_img:
            raise ValueError(
                f"cap2img values must lie in [0, {n_img}) (number of images), "
                f"got range [{lo}, {hi}]"
            )
    return t


def _check_chunk_size(chunk_size: int) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral):
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size}")
    return int(chunk_size)


def _prepare(
    img: ArrayLike, cap: ArrayLike, cap2img: ArrayLike
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Convert and cross-validate the three inputs of every ranking function."""
    img_t = _as_float32_tensor(img, "img")
    cap_t = _as_float32_tensor(cap, "cap")
    if img_t.shape[1] != cap_t.shape[1]:
        raise ValueError(
            f"embedding dims differ: img has dim {img_t.shape[1]}, cap has dim {cap_t.shape[1]}"
        )
    if img_t.device != cap_t.device:
        raise ValueError(f"img is on {img_t.device} but cap is on {cap_t.device}")
    c2i = _as_index_tensor(cap2img, cap_t.shape[0], img_t.shape[0], img_t.device)
    return img_t, cap_t, c2i


# --------------------------------------------------------------------------- #
# Chunk helpers
# --------------------------------------------------------------------------- #
class _CaptionIndex:
    """Captions grouped by image, so a chunk of images finds its captions by slicing."""

    def __init__(self, c2i: torch.Tensor, n_img: int) -> None:
        self.order = torch.argsort(c2i, stable=True)  # caption ids grouped by image
        self.sorted_img = c2i[self.order]
        bounds = torch.arange(n_img + 1, device=c2i.device)
        # starts[i] = position in `order` of the first caption of image i
        self.starts = torch.searchsorted(self.sorted_img, bounds).tolist()

    def captions_of(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (row within chunk, caption id) for every caption of images [start, stop)."""
        lo, hi = self.starts[start], self.starts[stop]
        return self.sorted_img[lo:hi] - start, self.order[lo:hi]


def _images_without_captions(c2i: torch.Tensor, n_img: int) -> list[int]:
    counts = torch.bincount(c2i, minlength=n_img)
    return torch.nonzero(counts == 0).flatten().tolist()


def _check_every_image_has_captions(c2i: torch.Tensor, n_img: int) -> None:
    missing = _images_without_captions(c2i, n_img)
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise ValueError(
            f"{len(missing)} image(s) have no caption in cap2img (e.g. {shown}); "
            "their image-annotation rank is undefined"
        )


def _scores_into(buf: torch.Tensor, queries: torch.Tensor, keys_t: torch.Tensor) -> torch.Tensor:
    """``queries @ keys_t`` written into the leading rows of a reusable buffer."""
    out = buf[: queries.shape[0]]
    return torch.mm(queries, keys_t, out=out)


def _count_rows(mask: torch.Tensor, ones_cols: torch.Tensor) -> torch.Tensor:
    """Row sums of a float 0/1 matrix as int64 (exact)."""
    if mask.shape[1] < _FLOAT32_EXACT_INT:
        return torch.mv(mask, ones_cols).to(torch.int64)
    return mask.sum(dim=1, dtype=torch.float64).to(torch.int64)


def _count_cols(mask: torch.Tensor, ones_rows: torch.Tensor) -> torch.Tensor:
    """Column sums of a float 0/1 matrix as int64 (exact)."""
    if mask.shape[0] < _FLOAT32_EXACT_INT:
        return torch.mv(mask.T, ones_rows[: mask.shape[0]]).to(torch.int64)
    return mask.sum(dim=0, dtype=torch.float64).to(torch.int64)


def _best_own_score(
    scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row max of ``scores`` over each row's own captions.

    Returns ``(best, own)``: ``best[r]`` is the maximum of ``scores[r, c]`` over
    the (row, caption) pairs ``(rows, cols)``; ``own`` are those gathered scores.
    """
    own = scores[rows, cols]
    best = torch.full((scores.shape[0],), -math.inf, dtype=scores.dtype, device=scores.device)
    best.scatter_reduce_(0, rows, own, reduce="amax", include_self=True)
    return best, own


def _to_numpy_int64(t: torch.Tensor) -> np.ndarray:
    return t.to(torch.int64).cpu().numpy()


# --------------------------------------------------------------------------- #
# Ranks
# --------------------------------------------------------------------------- #
def ranks_i2t(
    img: ArrayLike, cap: ArrayLike, cap2img: ArrayLike, chunk_size: int = 1024
) -> np.ndarray:
    """Image-annotation (image -> text) ranks.

    Args:
        img: ``(N, D)`` image embeddings (numpy or torch, any float dtype).
        cap: ``(M, D)`` caption embeddings.
        cap2img: ``(M,)`` integer array; caption ``j`` describes image ``cap2img[j]``.
        chunk_size: number of images scored at once; peak extra memory is
            about ``chunk_size * M`` float32 values.

    Returns:
        ``(N,)`` int64 array; entry ``i`` is the number of captions whose score
        with image ``i`` is strictly greater than the best score among image
        ``i``'s own captions (0 = a ground-truth caption is ranked first).

    Raises:
        ValueError: on inconsistent shapes, out-of-range ``cap2img``, non-finite
            embeddings, or an image without any caption.
    """
    chunk_size = _check_chunk_size(chunk_size)
    img_t, cap_t, c2i = _prepare(img, cap, cap2img)
    n_img, n_cap = img_t.shape[0], cap_t.shape[0]
    _check_every_image_has_captions(c2i, n_img)

    index = _CaptionIndex(c2i, n_img)
    cap_T = cap_t.T
    buf = torch.empty((min(chunk_size, n_img), n_cap), dtype=torch.float32, device=img_t.device)
    ones_cols = torch.ones(n_cap, dtype=torch.float32, device=img_t.device)
    ranks = torch.empty(n_img, dtype=torch.int64, device=img_t.device)
    for start in range(0, n_img, chunk_size):
        stop = min(start + chunk_size, n_img)
        scores = _scores_into(buf, img_t[start:stop], cap_T)
        rows, cols = index.captions_of(start, stop)
        best, _ = _best_own_score(scores, rows, cols)
        ranks[start:stop] = _count_rows(scores.gt_(best[:, None]), ones_cols)
    return _to_numpy_int64(ranks)


def ranks_t2i(
    img: ArrayLike, cap: ArrayLike, cap2img: ArrayLike, chunk_size: int = 1024
) -> np.ndarray:
    """Image-search (text -> image) ranks.

    Args:
        img: ``(N, D)`` image embeddings.
        cap: ``(M, D)`` caption embeddings.
        cap2img: ``(M,)`` integer array; caption ``j`` describes image ``cap2img[j]``.
        chunk_size: number of captions scored at once; peak extra memory is
            about ``chunk_size * N`` float32 values.

    Returns:
        ``(M,)`` int64 array; entry ``j`` is the number of images whose score
        with caption ``j`` is strictly greater than that of its own image.

    Raises:
        ValueError: on inconsistent shapes, out-of-range ``cap2img`` or
            non-finite embeddings.
    """
    chunk_size = _check_chunk_size(chunk_size)
    img_t, cap_t, c2i = _prepare(img, cap, cap2img)
    n_img, n_cap = img_t.shape[0], cap_t.shape[0]

    img_T = img_t.T
    buf = torch.empty((min(chunk_size, n_cap), n_img), dtype=torch.float32, device=img_t.device)
    ones_cols = torch.ones(n_img, dtype=torch.float32, device=img_t.device)
    ranks = torch.empty(n_cap, dtype=torch.int64, device=img_t.device)
    for start in range(0, n_cap, chunk_size):
        stop = min(start + chunk_size, n_cap)
        scores = _scores_into(buf, cap_t[start:stop], img_T)
        rows = torch.arange(stop - start, device=img_t.device)
        own = scores[rows, c2i[start:stop]]
        ranks[start:stop] = _count_rows(scores.gt_(own[:, None]), ones_cols)
    return _to_numpy_int64(ranks)


def _own_scores(
    img_t: torch.Tensor, cap_t: torch.Tensor, c2i: torch.Tensor, chunk_size: int
) -> torch.Tensor:
    """Score of every caption with its own image, ``(M,)``, computed in chunks."""
    out = torch.empty(cap_t.shape[0], dtype=torch.float32, device=cap_t.device)
    for start in range(0, cap_t.shape[0], chunk_size):
        stop = min(start + chunk_size, cap_t.shape[0])
        out[start:stop] = (cap_t[start:stop] * img_t[c2i[start:stop]]).sum(dim=1)
    return out


def ranks_both(
    img: ArrayLike, cap: ArrayLike, cap2img: ArrayLike, chunk_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Both rank vectors from a single pass over the score matrix.

    Equivalent to ``(ranks_i2t(...), ranks_t2i(...))`` but each image-chunk
    score block is used for both directions, which halves the matrix-multiply
    work.  For image search, each caption's own-image score is taken from a
    row-wise dot product computed up front and the caption's own image is
    excluded from its count explicitly, so a caption can never be out-ranked by
    its own image.  Results match the separate functions exactly whenever the
    float32 dot products are exact (e.g. small-integer embeddings); otherwise
    they can differ only for images whose scores tie the ground truth to within
    float32 rounding.

    Args:
        img, cap, cap2img, chunk_size: as in :func:`ranks_i2t`
            (chunks are over images; peak extra memory is about
            ``2 * chunk_size * M`` float32 values).

    Returns:
        ``(ranks_i2t, ranks_t2i)``, int64 arrays of shapes ``(N,)`` and ``(M,)``.
    """
    chunk_size = _check_chunk_size(chunk_size)
    return _ranks_both_prepared(*_prepare(img, cap, cap2img), chunk_size)


def _ranks_both_prepared(
    img_t: torch.Tensor, cap_t: torch.Tensor, c2i: torch.Tensor, chunk_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ranks_both` on already converted and validated inputs."""
    n_img, n_cap = img_t.shape[0], cap_t.shape[0]
    _check_every_image_has_captions(c2i, n_img)
    dev = img_t.device

    index = _CaptionIndex(c2i, n_img)
    own_all = _own_scores(img_t, cap_t, c2i, chunk_size)
    cap_T = cap_t.T
    rows_max = min(chunk_size, n_img)
    buf = torch.empty((rows_max, n_cap), dtype=torch.float32, device=dev)
    mask_buf = torch.empty_like(buf)
    ones_cols = torch.ones(n_cap, dtype=torch.float32, device=dev)
    ones_rows = torch.ones(rows_max, dtype=torch.float32, device=dev)
    r_i2t = torch.empty(n_img, dtype=torch.int64, device=dev)
    r_t2i = torch.zeros(n_cap, dtype=torch.int64, device=dev)
    for start in range(0, n_img, chunk_size):
        stop = min(start + chunk_size, n_img)
        scores = _scores_into(buf, img_t[start:stop], cap_T)
        rows, cols = index.captions_of(start, stop)
        best, own = _best_own_score(scores, rows, cols)
        # t2i: every image of the chunk that beats the caption's own score ...
        mask = torch.gt(scores, own_all[None, :], out=mask_buf[: stop - start])
        r_t2i += _count_cols(mask, ones_rows)
        # ... except the caption's own image, whatever rounding says.
        r_t2i[cols] -= (own > own_all[cols]).to(torch.int64)
        # i2t (overwrites the score block in place, so it comes last).
        r_i2t[start:stop] = _count_rows(scores.gt_(best[:, None]), ones_cols)
    return _to_numpy_int64(r_i2t), _to_numpy_int64(r_t2i)


# --------------------------------------------------------------------------- #
# Summaries
# --------------------------------------------------------------------------- #
def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
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
    ks = _check_ks(ks)
    out = _direction_summary(ranks_i2t, "i2t", ks)
    out.update(_direction_summary(ranks_t2i, "t2i", ks))
    out["rsum"] = float(sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks))
    return out


def _check_folds(folds: int | None, n_img: int) -> int:
    if folds is None:
        return 1
    if isinstance(folds, bool) or not isinstance(folds, numbers.Integral) or folds < 1:
        raise ValueError(f"folds must be None or a positive int, got {folds!r}")
    if n_img % folds != 0:
        raise ValueError(
            f"cannot split {n_img} images into {folds} equal folds "
            f"({n_img} is not divisible by {folds})"
        )
    return int(folds)


def _fold_summary(
    img_t: torch.Tensor,
    cap_t: torch.Tensor,
    c2i: torch.Tensor,
    start: int,
    stop: int,
    ks: tuple[int, ...],
    chunk_size: int,
) -> dict[str, float]:
    """Summary for images ``[start, stop)`` and their captions (indices remapped)."""
    keep = (c2i >= start) & (c2i < stop)
    r_i2t, r_t2i = _ranks_both_prepared(
        img_t[start:stop], cap_t[keep], c2i[keep] - start, chunk_size
    )
    return recall_summary(r_i2t, r_t2i, ks)


def recall(
    img: ArrayLike,
    cap: ArrayLike,
    cap2img: ArrayLike,
    ks: Sequence[int] = DEFAULT_KS,
    folds: int | None = None,
    chunk_size: int = 1024,
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
            own captions only.
        chunk_size: queries scored at once (bounds memory, see :func:`ranks_both`).

    Returns:
        The summary dict; with ``F > 1`` folds each value is the mean over
        folds and the extra key ``"folds"`` holds the list of per-fold dicts.

    Raises:
        ValueError: on inconsistent shapes, out-of-range ``cap2img``, an image
            without captions, or ``N`` not divisible by ``folds``.
    """
    ks = _check_ks(ks)
    chunk_size = _check_chunk_size(chunk_size)
    img_t, cap_t, c2i = _prepare(img, cap, cap2img)
    n_img = img_t.shape[0]
    if n_img == 0:
        raise ValueError("img is empty: nothing to evaluate")
    n_folds = _check_folds(folds, n_img)
    if n_folds == 1:
        r_i2t, r_t2i = _ranks_both_prepared(img_t, cap_t, c2i, chunk_size)
        return recall_summary(r_i2t, r_t2i, ks)

    size = n_img // n_folds
    per_fold = [
        _fold_summary(img_t, cap_t, c2i, f * size, (f + 1) * size, ks, chunk_size)
        for f in range(n_folds)
    ]
    out: dict[str, Any] = {key: float(np.mean([d[key] for d in per_fold])) for key in per_fold[0]}
    out["folds"] = per_fold
    return out


# --------------------------------------------------------------------------- #
# Chance level
# --------------------------------------------------------------------------- #
def chance_rsum(
    n_img: int, caps_per_image: int = 5, ks: Sequence[int] = DEFAULT_KS
) -> float:
    """Expected rsum (in percent) when all scores are i.i.d. random.

    Image annotation: with ``c`` ground-truth captions among ``n * c``, the best
    one is in the top K with probability ``1 - C(n*c - c, K) / C(n*c, K)``.
    Image search: the own image is in the top K with probability ``min(K, n) / n``.

    Args:
        n_img: number of images ``n`` (>= 1).
        caps_per_image: captions per image ``c`` (>= 1).
        ks: the K values of Recall@K.

    Returns:
        ``100 * sum_K (P_i2t(K) + P_t2i(K))``, computed exactly (no simulation).
    """
    ks = _check_ks(ks)
    for name, v in (("n_img", n_img), ("caps_per_image", caps_per_image)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    n, c = int(n_img), int(caps_per_image)
    total = n * c
    prob_sum = 0.0
    for k in ks:
        # Exact big-int binomials; int / int true division rounds correctly.
        p_i2t = 1.0 - math.comb(total - c, k) / math.comb(total, k) if k <= total else 1.0
        p_t2i = min(k, n) / n
        prob_sum += p_i2t + p_t2i
    return 100.0 * prob_sum
