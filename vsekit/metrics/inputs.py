"""Conversion and validation of the inputs every ranking function takes: embeddings, the caption -> image map."""

from __future__ import annotations

import numbers
import warnings
from typing import Any, TypeAlias

import numpy as np
import torch

ArrayLike: TypeAlias = np.ndarray | torch.Tensor
"""Anything accepted as embeddings or indices: a numpy array or a torch tensor."""


def as_float32_tensor(x: Any, name: str) -> torch.Tensor:
    """Return ``x`` as a 2-D ``(n, dim)`` float32 torch tensor, sharing memory when possible.

    Raises:
        ValueError: ``x`` is not a float array, not 2-D, or holds NaN or infinite values.
    """
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


def as_index_tensor(x: Any, n_cap: int, n_img: int, device: torch.device) -> torch.Tensor:
    """Validate ``cap2img`` (``(n_cap,)`` ints in ``[0, n_img)``) and return it as an int64 tensor on ``device``.

    Raises:
        ValueError: a non-integer dtype, a wrong shape or length, or a value out of range.
    """
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


def check_chunk_size(chunk_size: int) -> int:
    """Return ``chunk_size`` as an int. Raises ``ValueError`` unless it is a positive int."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral):
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size}")
    return int(chunk_size)


def prepare_inputs(
    img: ArrayLike, cap: ArrayLike, cap2img: ArrayLike
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Convert and cross-validate the three inputs of every ranking function.

    Returns:
        ``(img, cap, cap2img)``: ``(N, D)`` and ``(M, D)`` float32 tensors and an ``(M,)`` int64 tensor, all on
        the images' device.

    Raises:
        ValueError: as :func:`as_float32_tensor` and :func:`as_index_tensor`, or when the dims or devices differ.
    """
    img_t = as_float32_tensor(img, "img")
    cap_t = as_float32_tensor(cap, "cap")
    if img_t.shape[1] != cap_t.shape[1]:
        raise ValueError(
            f"embedding dims differ: img has dim {img_t.shape[1]}, cap has dim {cap_t.shape[1]}"
        )
    if img_t.device != cap_t.device:
        raise ValueError(f"img is on {img_t.device} but cap is on {cap_t.device}")
    c2i = as_index_tensor(cap2img, cap_t.shape[0], img_t.shape[0], img_t.device)
    return img_t, cap_t, c2i
