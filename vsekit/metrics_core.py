"""Retrieval ranks, Recall@K summaries, chance level and input checks: the one home of ranking in vsekit.

Pure functions (numpy + torch only) that turn image / caption embeddings into
retrieval ranks and Recall@K summaries, in the usual image-caption retrieval
protocol (Flickr8K / Flickr30K / MS-COCO):

* **image annotation** (``i2t``): an image queries all captions; its rank is
  1 + the number of *other* captions scoring at least as high as the best-scored
  of its own captions (its other own captions are not competitors);
* **image search** (``t2i``): a caption queries all images; its rank is 1 + the
  number of other images scoring at least as high as its own image.

Ties count against the query (``ties="pessimistic"``, the default), so a model
whose every score is equal ranks last, never first; ``ties="reference"`` breaks
them as the reference's ``numpy.argsort(d, kind="stable")[::-1]`` does. Every
score is read from one float32 score matrix ``img @ cap.T``, built in blocks of
``chunk_size`` image rows, and a rank is a count (one comparison and one
matrix-vector product per block), never a sort. The rank functions return
0-based ranks; the summaries report 1-based median and mean ranks and R@K in %.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import torch

from vsekit.errors import ProtocolError

__all__ = [
    "ranks_i2t",
    "ranks_t2i",
    "ranks_both",
    "recall_summary",
    "recall",
    "chance_rsum",
    "check_folds",
    "check_ties",
    "input_warnings",
    "MIN_FOLD_IMAGES",
    "TIE_RULES",
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
# Ranks: the one implementation
# --------------------------------------------------------------------------- #
TIE_RULES: tuple[str, ...] = ("pessimistic", "reference")
"""``pessimistic`` (the default): a tie counts against the query. ``reference``: ties broken as the
reference's ``numpy.argsort(d, kind="stable")[::-1]`` orders them (the higher index first)."""


def check_ties(ties: str) -> str:
    """Return ``ties`` if it names a tie rule, else raise :class:`~vsekit.errors.ProtocolError`."""
    if ties not in TIE_RULES:
        raise ProtocolError(f"ties: unknown tie rule {ties!r}; expected one of {', '.join(TIE_RULES)}")
    return ties


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


def _to_numpy_int64(t: torch.Tensor) -> np.ndarray:
    return t.to(torch.int64).cpu().numpy()


def _ranks(img_t: torch.Tensor, cap_t: torch.Tensor, c2i: torch.Tensor, chunk_size: int, ties: str,
           i2t: bool = True, t2i: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
    """0-based ranks of both directions, every score read from one score matrix ``S = img @ cap.T``.

    The matrix is built in blocks of ``chunk_size`` image rows. Within a block the own (image, caption)
    entries are read out first (the ground-truth scores), then set to ``-inf`` so that a query's own
    candidates never compete with it; the comparisons below are then against the same entries:

    * image annotation, row ``i`` with best own score ``b`` (caption ``c*``, the highest index among the
      own captions scoring ``b``): pessimistic rank = #(other captions with ``S >= b``); reference rank =
      #(``S > b``) + #(``S == b`` and index ``> c*``), the position of ``c*`` in
      ``argsort(S[i], kind="stable")[::-1]``, which is the best position of any own caption;
    * image search, column ``j`` with own score ``s = S[c2i[j], j]``: pessimistic rank = #(other images
      with ``S >= s``); reference rank = #(``S > s``) + #(``S == s`` and image index ``> c2i[j]``).

    Image search needs every own score before it can count, so with more than one block the blocks are
    computed twice (the same product of the same operands, so the same entries).
    """
    n_img, n_cap = img_t.shape[0], cap_t.shape[0]
    if i2t:  # image search alone is defined for an image without captions
        _check_every_image_has_captions(c2i, n_img)
    reference = check_ties(ties) == "reference"
    dev = img_t.device
    index = _CaptionIndex(c2i, n_img)
    cap_T = cap_t.T
    rows_max = min(chunk_size, n_img)
    buf = torch.empty((rows_max, n_cap), dtype=torch.float32, device=dev)
    mask_buf = torch.empty_like(buf)
    ones_cols = torch.ones(n_cap, dtype=torch.float32, device=dev)
    ones_rows = torch.ones(rows_max, dtype=torch.float32, device=dev)
    col_idx = torch.arange(n_cap, device=dev)
    own_all = torch.empty(n_cap, dtype=torch.float32, device=dev)
    r_i2t = torch.empty(n_img, dtype=torch.int64, device=dev)
    r_t2i = torch.zeros(n_cap, dtype=torch.int64, device=dev)
    chunks = [(s, min(s + chunk_size, n_img)) for s in range(0, n_img, chunk_size)]
    one_pass = len(chunks) == 1

    def block(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        scores = torch.mm(img_t[start:stop], cap_T, out=buf[: stop - start])
        rows, cols = index.captions_of(start, stop)
        own = scores[rows, cols]
        scores[rows, cols] = -math.inf  # own candidates are not competitors
        return scores, rows, cols, own

    def count_t2i(scores: torch.Tensor, start: int, stop: int) -> None:
        mask = mask_buf[: stop - start]
        if reference:
            torch.gt(scores, own_all[None, :], out=mask)
            r_t2i.add_(_count_cols(mask, ones_rows))
            later = torch.arange(start, stop, device=dev)[:, None] > c2i[None, :]
            torch.eq(scores, own_all[None, :], out=mask).mul_(later)
        else:
            torch.ge(scores, own_all[None, :], out=mask)
        r_t2i.add_(_count_cols(mask, ones_rows))

    if i2t or one_pass:
        for start, stop in chunks:
            scores, rows, cols, own = block(start, stop)
            own_all[cols] = own
            best = torch.full((stop - start,), -math.inf, dtype=torch.float32, device=dev)
            best.scatter_reduce_(0, rows, own, reduce="amax", include_self=True)
            mask = mask_buf[: stop - start]
            if reference:
                at_best = torch.where(own == best[rows], cols, torch.full_like(cols, -1))
                c_star = torch.full((stop - start,), -1, dtype=torch.int64, device=dev)
                c_star.scatter_reduce_(0, rows, at_best, reduce="amax", include_self=True)
                torch.gt(scores, best[:, None], out=mask)
                n_ahead = _count_rows(mask, ones_cols)
                torch.eq(scores, best[:, None], out=mask).mul_(col_idx[None, :] > c_star[:, None])
                r_i2t[start:stop] = n_ahead + _count_rows(mask, ones_cols)
            else:
                r_i2t[start:stop] = _count_rows(torch.ge(scores, best[:, None], out=mask), ones_cols)
            if t2i and one_pass:
                count_t2i(scores, start, stop)
    else:  # own scores of image search, read from the blocks
        for start, stop in chunks:
            _, _, cols, own = block(start, stop)
            own_all[cols] = own
    if t2i and not one_pass:
        for start, stop in chunks:
            scores, _, _, _ = block(start, stop)
            count_t2i(scores, start, stop)
    return (_to_numpy_int64(r_i2t) if i2t else None), (_to_numpy_int64(r_t2i) if t2i else None)


def ranks_i2t(img: ArrayLike, cap: ArrayLike, cap2img: ArrayLike, chunk_size: int = 1024,
              ties: str = "pessimistic") -> np.ndarray:
    """Image-annotation (image -> text) ranks, 0-based.

    Args:
        img: ``(N, D)`` image embeddings (numpy or torch, any float dtype).
        cap: ``(M, D)`` caption embeddings.
        cap2img: ``(M,)`` integer array; caption ``j`` describes image ``cap2img[j]``.
        chunk_size: image rows of the score matrix built at once; peak extra memory is about
            ``2 * chunk_size * M`` float32 values.
        ties: ``"pessimistic"`` (default: every other candidate scoring ``>=`` the ground truth ranks
            ahead of it) or ``"reference"`` (ties ordered as ``numpy.argsort(d, kind="stable")[::-1]``:
            the higher index first).

    Returns:
        ``(N,)`` int64; entry ``i`` is the number of other captions ranked ahead of the best-scored of
        image ``i``'s own captions (0 = a ground-truth caption first). Its other captions are not
        competitors.

    Raises:
        ValueError: on inconsistent shapes, out-of-range ``cap2img``, non-finite embeddings, an image
            without any caption, or an unknown tie rule.
    """
    chunk_size = _check_chunk_size(chunk_size)
    return _ranks(*_prepare(img, cap, cap2img), chunk_size, ties, t2i=False)[0]


def ranks_t2i(img: ArrayLike, cap: ArrayLike, cap2img: ArrayLike, chunk_size: int = 1024,
              ties: str = "pessimistic") -> np.ndarray:
    """Image-search (text -> image) ranks, 0-based.

    Args:
        img, cap, cap2img, chunk_size, ties: as in :func:`ranks_i2t`.

    Returns:
        ``(M,)`` int64; entry ``j`` is the number of other images ranked ahead of caption ``j``'s own
        image.

    Raises:
        ValueError: as :func:`ranks_i2t`.
    """
    chunk_size = _check_chunk_size(chunk_size)
    return _ranks(*_prepare(img, cap, cap2img), chunk_size, ties, i2t=False)[1]


def ranks_both(img: ArrayLike, cap: ArrayLike, cap2img: ArrayLike, chunk_size: int = 1024,
               ties: str = "pessimistic") -> tuple[np.ndarray, np.ndarray]:
    """Both rank vectors, ``(ranks_i2t, ranks_t2i)`` of shapes ``(N,)`` and ``(M,)``, from one score matrix.

    Equal to the two separate functions, entry for entry.

    Args:
        img, cap, cap2img, chunk_size, ties: as in :func:`ranks_i2t`.

    Raises:
        ValueError: as :func:`ranks_i2t`.
    """
    chunk_size = _check_chunk_size(chunk_size)
    return _ranks(*_prepare(img, cap, cap2img), chunk_size, ties)  # type: ignore[return-value]


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


MIN_FOLD_IMAGES = 10
"""Folds of fewer images are refused: with 5 images every R@5 of image search is 100 %."""


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


def _fold_summary(img_t: torch.Tensor, cap_t: torch.Tensor, c2i: torch.Tensor, start: int, stop: int,
                  ks: tuple[int, ...], chunk_size: int, ties: str) -> dict[str, float]:
    """Summary for images ``[start, stop)`` and their captions (indices remapped)."""
    keep = (c2i >= start) & (c2i < stop)
    r_i2t, r_t2i = _ranks(img_t[start:stop], cap_t[keep], c2i[keep] - start, chunk_size, ties)
    return recall_summary(r_i2t, r_t2i, ks)


def recall(
    img: ArrayLike,
    cap: ArrayLike,
    cap2img: ArrayLike,
    ks: Sequence[int] = DEFAULT_KS,
    folds: int | None = None,
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
        chunk_size: image rows of the score matrix built at once (bounds memory, see :func:`ranks_i2t`).
        ties: the tie rule, ``"pessimistic"`` (default) or ``"reference"`` (see :func:`ranks_i2t`).

    Returns:
        The summary dict (R@K in %, 1-based ``medr`` / ``meanr``, ``rsum``); with ``F > 1`` folds each
        value is the mean over folds and the extra key ``"folds"`` holds the list of per-fold dicts.

    Raises:
        ValueError: on inconsistent shapes, out-of-range ``cap2img``, an image
            without captions or an unknown tie rule; :class:`~vsekit.errors.ProtocolError` (also a
            ``ValueError``) when the images do not split into ``folds`` folds of >= 10 images.
    """
    ks = _check_ks(ks)
    chunk_size = _check_chunk_size(chunk_size)
    img_t, cap_t, c2i = _prepare(img, cap, cap2img)
    n_img = img_t.shape[0]
    if n_img == 0:
        raise ValueError("img is empty: nothing to evaluate")
    n_folds = check_folds(folds, n_img)
    check_ties(ties)
    if n_folds == 1:
        r_i2t, r_t2i = _ranks(img_t, cap_t, c2i, chunk_size, ties)
        return recall_summary(r_i2t, r_t2i, ks)

    size = n_img // n_folds
    per_fold = [
        _fold_summary(img_t, cap_t, c2i, f * size, (f + 1) * size, ks, chunk_size, ties)
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


# --------------------------------------------------------------------------- #
# Inputs that make a table meaningless
# --------------------------------------------------------------------------- #
TINY_SPLIT_IMAGES = 10
"""A split of at most this many images gets a warning: its recalls move in steps of 10 % or more."""


def input_warnings(features: ArrayLike, what: str = "image features", tiny: bool = True) -> list[str]:
    """Warnings about evaluation inputs that make a retrieval table meaningless.

    Args:
        features: ``(N, D)`` image feature (or embedding) rows of one split.
        what: how the messages name the rows, e.g. ``"dev image features"``.
        tiny: also warn about a split of at most :data:`TINY_SPLIT_IMAGES` rows.

    Returns:
        One sentence per problem found, in this order: a split of at most
        :data:`TINY_SPLIT_IMAGES` images; all-zero rows; other constant rows (every entry
        equal); rows identical to an earlier row. Empty when nothing is wrong.
    """
    a = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if a.ndim != 2:
        raise ValueError(f"{what} must be 2-D (n, dim), got shape {a.shape}")
    n = a.shape[0]
    out = []
    if tiny and n <= TINY_SPLIT_IMAGES:
        out.append(f"{what}: only {n} images; recalls of so small a split move in steps of "
                   f"{100 / max(n, 1):.0f} % and say little")
    if n == 0:
        return out
    zero = ~a.any(axis=1)
    constant = (a == a[:, :1]).all(axis=1) & ~zero
    for mask, kind in ((zero, "all-zero"), (constant, "constant (every entry equal)")):
        k = int(mask.sum())
        if k:
            rows = ", ".join(map(str, np.flatnonzero(mask)[:5].tolist())) + (", ..." if k > 5 else "")
            out.append(f"{what}: {k} of {n} rows are {kind} (rows {rows}); a failed extraction leaves such rows, "
                       f"and they tie with each other")
    _, first, counts = np.unique(np.ascontiguousarray(a), axis=0, return_index=True, return_counts=True)
    dup = n - len(first)
    if dup:
        out.append(f"{what}: {dup} of {n} rows repeat an earlier row ({int((counts > 1).sum())} distinct rows "
                   f"occur more than once); repeated images tie with each other")
    return out
