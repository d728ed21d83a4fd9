"""Evaluation inputs that make a retrieval table meaningless: tiny splits, blank, constant or repeated rows."""

from __future__ import annotations

import numpy as np
import torch

from vsekit.metrics.inputs import ArrayLike

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

    Raises:
        ValueError: ``features`` is not 2-D.
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
