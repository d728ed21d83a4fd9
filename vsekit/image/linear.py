"""The ``linear`` image encoder: one affine projection of CNN features (the reference's ``ff_image``);
the ``mlp`` image encoder: that projection plus a residual two-layer MLP (:func:`vsekit.heads.side_mlp`)."""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
from torch import nn

from vsekit.config import in_range, positive
from vsekit.heads import side_mlp
from vsekit.image.base import ImageEncoder


class LinearImageEncoder(ImageEncoder):
    """``features @ W + b``; Xavier-uniform init, zero bias."""

    @attrs.frozen
    class Config:
        #: L2-normalize the image embedding in the training graph too (the reference did not).
        normalize_train: bool = True

    def __init__(self, config: Any, dim_image: int, dim: int) -> None:
        super().__init__(config, dim_image, dim)
        self.normalize_train = config.normalize_train
        self.fc = xavier_linear(dim_image, dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features @ W.T + b``: (B, dim_image) float to (B, dim), unnormalized."""
        return self.fc(features)


class MLPImageEncoder(ImageEncoder):
    """``fc(features) + mlp(features)``: the ``linear`` encoder's projection (same init) plus a residual
    MLP ``Linear(dim_image, hidden)``, GELU, dropout, ``Linear(hidden, dim)`` (:func:`vsekit.heads.side_mlp`).

    Takes (B, dim_image) float, returns (B, dim) unnormalized. Dropout acts in training only.
    """

    @attrs.frozen
    class Config:
        #: L2-normalize the image embedding in the training graph too (the reference did not).
        normalize_train: bool = True
        #: width of the MLP's hidden layer
        hidden: int = attrs.field(default=1024, validator=positive())
        #: dropout between the MLP's two layers
        dropout: float = attrs.field(default=0.1, validator=in_range(0.0, 0.9))

    def __init__(self, config: Any, dim_image: int, dim: int) -> None:
        super().__init__(config, dim_image, dim)
        self.normalize_train = config.normalize_train
        self.fc = xavier_linear(dim_image, dim)
        self.mlp = side_mlp(dim_image, config.hidden, dim, config.dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``fc(features) + mlp(features)``: (B, dim_image) float to (B, dim), unnormalized."""
        return self.fc(features) + self.mlp(features)


def xavier_linear(dim_in: int, dim_out: int) -> nn.Linear:
    """The reference's image projection: ``nn.Linear(dim_in, dim_out)`` with Xavier-uniform weights
    (bound sqrt(6 / (dim_in + dim_out))) and a zero bias."""
    fc = nn.Linear(dim_in, dim_out)
    bound = math.sqrt(6.0) / math.sqrt(dim_in + dim_out)
    nn.init.uniform_(fc.weight, -bound, bound)
    nn.init.zeros_(fc.bias)
    return fc
