"""Interfaces for the image side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from torch import nn


@attrs.define
class Extracted:
    """Features for a list of images: ``features`` has one row per image with ``ok`` True, in order."""

    features: np.ndarray
    ok: np.ndarray
    errors: dict[str, str] = attrs.Factory(dict)
    files: list[Path] = attrs.Factory(list)


class ImageFeatureExtractor:
    """Turns image files into feature rows (e.g. a CNN's pooled activations).

    Subclasses define a frozen attrs ``Config`` and :meth:`extract`. An image
    that cannot be processed is reported in ``Extracted.errors`` (by file
    name) and marked not ``ok``; it never stops the batch.
    """

    @attrs.frozen
    class Config:
        pass

    def __init__(self, config: Any) -> None:
        self.config = config

    @property
    def dim(self) -> int | None:
        """Feature dimension, if known before extracting."""
        return None

    def extract(self, paths: Sequence[str | Path]) -> Extracted:  # pragma: no cover - interface
        """Feature rows for the image files ``paths``.

        Returns an :class:`Extracted`: ``ok`` (len(paths),) bool; ``features``
        (n_ok, dim) float32, one row per ``ok`` image in order; ``errors`` the reason
        for each image not ``ok``, by file name. An unreadable image is never raised.
        """
        raise NotImplementedError

    def check(self) -> list[str]:
        """Problems visible without extracting anything (missing files)."""
        return []


class ImageEncoder(nn.Module):
    """Maps image features (B, dim_image) into the joint space (B, dim), unnormalized.

    The joint model L2-normalizes the output at encode time (and during
    training unless ``normalize_train`` is false on the encoder).
    """

    @attrs.frozen
    class Config:
        pass

    normalize_train: bool = True
    #: True for encoders that take sets of region features (B, K, dim_image) (``mean``, ``gpo``)
    takes_regions: ClassVar[bool] = False

    def __init__(self, config: Any, dim_image: int, dim: int) -> None:
        super().__init__()
        self.config = config
        self.dim_image = dim_image
        self.dim = dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        """Joint-space embeddings (B, dim), unnormalized, of image features (B, dim_image) float."""
        raise NotImplementedError

    def check_extractor(self, extractor: dict[str, Any]) -> list[str]:
        """Problems with the image feature extractor that made the training features, one sentence each
        (none by default). ``extractor`` is its recorded table ``{"type": NAME, option: value, ...}``; the
        training setup calls this when the data record one, and refuses to train on a problem."""
        return []
