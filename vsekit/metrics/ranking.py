"""Retrieval ranks: the one home of ranking in vsekit.

Pure functions (numpy + torch only) that turn image / caption embeddings into
retrieval ranks, in the usual image-caption retrieval protocol (Flickr8K /
Flickr30K / MS-COCO):

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
0-based ranks; the summaries (:mod:`vsekit.metrics.summary`) report 1-based
median and mean ranks and R@K in %.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vsekit.errors import ProtocolError
from vsekit.metrics.inputs import ArrayLike, check_chunk_size, prepare_inputs

# Counts are accumulated as float32 sums of 0/1 values (a fast GEMV); such sums
# are exact while every partial sum stays below 2**24.
_FLOAT32_EXACT_INT = 2**24

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


def _check_every_image_has_captions(c2i: torch.Tensor, n_img: int) -> None:
    counts = torch.bincount(c2i, minlength=n_img)
    missing = torch.nonzero(counts == 0).flatten().tolist()
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


class _ScoreBlocks:
    """The score matrix ``S = img @ cap.T`` in blocks of image rows, with the scratch buffers the counts reuse."""

    def __init__(self, img_t: torch.Tensor, cap_t: torch.Tensor, c2i: torch.Tensor, chunk_size: int,
                 reference: bool) -> None:
        n_img, n_cap = img_t.shape[0], cap_t.shape[0]
        dev = self.device = img_t.device
        self.img_t, self.cap_T, self.c2i, self.reference = img_t, cap_t.T, c2i, reference
        self.index = _CaptionIndex(c2i, n_img)
        rows_max = min(chunk_size, n_img)
        self.buf = torch.empty((rows_max, n_cap), dtype=torch.float32, device=dev)
        self.mask_buf = torch.empty_like(self.buf)
        self.ones_cols = torch.ones(n_cap, dtype=torch.float32, device=dev)
        self.ones_rows = torch.ones(rows_max, dtype=torch.float32, device=dev)
        self.col_idx = torch.arange(n_cap, device=dev)
        self.own_all = torch.empty(n_cap, dtype=torch.float32, device=dev)  # S[c2i[j], j] for every caption j
        self.chunks = [(s, min(s + chunk_size, n_img)) for s in range(0, n_img, chunk_size)]

    def block(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows ``[start, stop)`` of ``S`` with own entries set to ``-inf``; (scores, rows, cols, own scores)."""
        scores = torch.mm(self.img_t[start:stop], self.cap_T, out=self.buf[: stop - start])
        rows, cols = self.index.captions_of(start, stop)
        own = scores[rows, cols]
        scores[rows, cols] = -math.inf  # own candidates are not competitors
        self.own_all[cols] = own
        return scores, rows, cols, own

    def count_t2i(self, scores: torch.Tensor, start: int, stop: int, r_t2i: torch.Tensor) -> None:
        """Add to ``r_t2i`` the images of rows ``[start, stop)`` that rank ahead of each caption's own image."""
        mask = self.mask_buf[: stop - start]
        own_all = self.own_all[None, :]
        if self.reference:
            torch.gt(scores, own_all, out=mask)
            r_t2i.add_(_count_cols(mask, self.ones_rows))
            later = torch.arange(start, stop, device=self.device)[:, None] > self.c2i[None, :]
            torch.eq(scores, own_all, out=mask).mul_(later)
        else:
            torch.ge(scores, own_all, out=mask)
        r_t2i.add_(_count_cols(mask, self.ones_rows))

    def rank_i2t(self, block: tuple[torch.Tensor, ...], start: int, stop: int) -> torch.Tensor:
        """The ``(stop - start,)`` image-annotation ranks of one block returned by :meth:`block`."""
        scores, rows, cols, own = block
        dev = self.device
        best = torch.full((stop - start,), -math.inf, dtype=torch.float32, device=dev)
        best.scatter_reduce_(0, rows, own, reduce="amax", include_self=True)
        mask = self.mask_buf[: stop - start]
        if not self.reference:
            return _count_rows(torch.ge(scores, best[:, None], out=mask), self.ones_cols)
        at_best = torch.where(own == best[rows], cols, torch.full_like(cols, -1))
        c_star = torch.full((stop - start,), -1, dtype=torch.int64, device=dev)
        c_star.scatter_reduce_(0, rows, at_best, reduce="amax", include_self=True)
        torch.gt(scores, best[:, None], out=mask)
        n_ahead = _count_rows(mask, self.ones_cols)
        torch.eq(scores, best[:, None], out=mask).mul_(self.col_idx[None, :] > c_star[:, None])
        return n_ahead + _count_rows(mask, self.ones_cols)


def rank_tensors(img_t: torch.Tensor, cap_t: torch.Tensor, c2i: torch.Tensor, chunk_size: int, ties: str, *,
                 i2t: bool = True, t2i: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
    """0-based ranks of both directions, every score read from one score matrix ``S = img @ cap.T``.

    Takes the tensors :func:`~vsekit.metrics.inputs.prepare_inputs` returns. The matrix is built in blocks
    of ``chunk_size`` image rows. Within a block the own (image, caption) entries are read out first (the
    ground-truth scores), then set to ``-inf`` so that a query's own candidates never compete with it; the
    comparisons below are then against the same entries:

    * image annotation, row ``i`` with best own score ``b`` (caption ``c*``, the highest index among the
      own captions scoring ``b``): pessimistic rank = #(other captions with ``S >= b``); reference rank =
      #(``S > b``) + #(``S == b`` and index ``> c*``), the position of ``c*`` in
      ``argsort(S[i], kind="stable")[::-1]``, which is the best position of any own caption;
    * image search, column ``j`` with own score ``s = S[c2i[j], j]``: pessimistic rank = #(other images
      with ``S >= s``); reference rank = #(``S > s``) + #(``S == s`` and image index ``> c2i[j]``).

    Image search needs every own score before it can count, so with more than one block the blocks are
    computed twice (the same product of the same operands, so the same entries).

    Returns:
        ``(ranks_i2t, ranks_t2i)``: ``(N,)`` and ``(M,)`` int64 arrays, ``None`` for a direction not asked for.

    Raises:
        ValueError: (with ``i2t``) an image without captions; ProtocolError: an unknown tie rule.
    """
    n_img, n_cap = img_t.shape[0], cap_t.shape[0]
    if i2t:  # image search alone is defined for an image without captions
        _check_every_image_has_captions(c2i, n_img)
    blocks = _ScoreBlocks(img_t, cap_t, c2i, chunk_size, check_ties(ties) == "reference")
    r_i2t = torch.empty(n_img, dtype=torch.int64, device=blocks.device)
    r_t2i = torch.zeros(n_cap, dtype=torch.int64, device=blocks.device)
    one_pass = len(blocks.chunks) == 1
    if i2t or one_pass:
        for start, stop in blocks.chunks:
            block = blocks.block(start, stop)
            if i2t:
                r_i2t[start:stop] = blocks.rank_i2t(block, start, stop)
            if t2i and one_pass:
                blocks.count_t2i(block[0], start, stop, r_t2i)
    else:  # own scores of image search, read from the blocks
        for start, stop in blocks.chunks:
            blocks.block(start, stop)
    if t2i and not one_pass:
        for start, stop in blocks.chunks:
            blocks.count_t2i(blocks.block(start, stop)[0], start, stop, r_t2i)
    return (r_i2t.cpu().numpy() if i2t else None), (r_t2i.cpu().numpy() if t2i else None)


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
    chunk_size = check_chunk_size(chunk_size)
    return rank_tensors(*prepare_inputs(img, cap, cap2img), chunk_size, ties, t2i=False)[0]


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
    chunk_size = check_chunk_size(chunk_size)
    return rank_tensors(*prepare_inputs(img, cap, cap2img), chunk_size, ties, i2t=False)[1]


def ranks_both(img: ArrayLike, cap: ArrayLike, cap2img: ArrayLike, chunk_size: int = 1024,
               ties: str = "pessimistic") -> tuple[np.ndarray, np.ndarray]:
    """Both rank vectors, ``(ranks_i2t, ranks_t2i)`` of shapes ``(N,)`` and ``(M,)``, from one score matrix.

    Equal to the two separate functions, entry for entry.

    Args:
        img, cap, cap2img, chunk_size, ties: as in :func:`ranks_i2t`.

    Raises:
        ValueError: as :func:`ranks_i2t`.
    """
    chunk_size = check_chunk_size(chunk_size)
    return rank_tensors(*prepare_inputs(img, cap, cap2img), chunk_size, ties)  # type: ignore[return-value]
