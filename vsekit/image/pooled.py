"""The ``mean`` and ``gpo`` image encoders: sets of region features pooled into one embedding.

Each region (a row of ``dim_image`` features, e.g. a bottom-up-attention box) is projected by one
affine layer into the joint space, then the set is pooled (:mod:`vsekit.pooling`). They take
``(B, K, dim_image)`` features; ``(B, dim_image)`` rows count as sets of one region (``mean`` is
then the ``linear`` encoder). A region whose features are all zero is padding (files that hold
fewer than K boxes for an image pad with zero rows) and is left out of the pool; an image with
no nonzero region keeps all of its regions.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from vsekit.config import check, positive
from vsekit.image.base import ImageEncoder
from vsekit.image.linear import xavier_linear
from vsekit.pooling import GPO, mean_pool


def region_mask(features: torch.Tensor) -> torch.Tensor:
    """The valid regions (B, K) bool of ``features`` (B, K, D): not all zero; all True for a row with none."""
    mask = features.ne(0).any(-1)
    return mask | ~mask.any(1, keepdim=True)


class RegionEncoder(ImageEncoder):
    """The shared part: a per-region affine projection (Xavier-uniform init, zero bias) and :meth:`pool`."""

    takes_regions = True

    def __init__(self, config: Any, dim_image: int, dim: int) -> None:
        super().__init__(config, dim_image, dim)
        self.normalize_train = config.normalize_train
        self.fc = xavier_linear(dim_image, dim)

    def pool(self, regions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        """The pooled (B, dim) of projected regions (B, K, dim) with valid regions ``mask`` (B, K) bool."""
        raise NotImplementedError

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Joint-space embeddings (B, dim), unnormalized, of regions (B, K, dim_image) or rows (B, dim_image).

        Raises:
            ValueError: features neither 2-D nor 3-D, or not ``dim_image`` wide.
        """
        if features.ndim == 2:
            features = features.unsqueeze(1)
        if features.ndim != 3 or features.shape[-1] != self.dim_image:
            raise ValueError(f"{type(self).__name__}: expected image features (B, K, {self.dim_image}) or "
                             f"(B, {self.dim_image}), got {tuple(features.shape)}")
        return self.pool(self.fc(features), region_mask(features))


class MeanImageEncoder(RegionEncoder):
    """Each region projected (``W x + b``), then the mean over the valid regions."""

    @attrs.frozen
    class Config:
        #: L2-normalize the image embedding in the training graph too.
        normalize_train: bool = True

    def pool(self, regions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The mean (B, dim) of the valid projected regions (B, K, dim)."""
        return mean_pool(regions, mask)


class GPOImageEncoder(RegionEncoder):
    """Each region projected (``W x + b``), then GPO (:class:`vsekit.pooling.GPO`) over the valid regions.

    ``d_pe`` and ``d_hidden`` (32 and 32 in the paper) size GPO's position encodings and GRU.
    """

    @attrs.frozen
    class Config:
        #: L2-normalize the image embedding in the training graph too.
        normalize_train: bool = True
        d_pe: int = attrs.field(default=32, validator=check(lambda v: v > 0 and v % 2 == 0, "an even number > 0"))
        d_hidden: int = attrs.field(default=32, validator=positive())

    def __init__(self, config: Any, dim_image: int, dim: int) -> None:
        super().__init__(config, dim_image, dim)
        self.gpo = GPO(config.d_pe, config.d_hidden)

    def pool(self, regions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """GPO (B, dim) of the valid projected regions (B, K, dim)."""
        return self.gpo(regions, mask)
