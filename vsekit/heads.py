"""Projection heads shared by encoders: the residual two-layer MLP beside a linear map.

A head with ``head = "mlp"`` (the ``mlp`` image encoder, the MiniLM plugin's sentence head) computes
``linear(x) + side_mlp(x)``: the linear map of the reference plus a learned non-linear correction
(as VSE-infinity's image MLP does). One builder here keeps both the same.
"""

from __future__ import annotations

from torch import nn

__all__ = ["side_mlp"]


def side_mlp(dim_in: int, hidden: int, dim_out: int, dropout: float = 0.0) -> nn.Sequential:
    """The residual branch: ``Linear(dim_in, hidden)``, GELU, ``Dropout(dropout)``, ``Linear(hidden, dim_out)``.

    Maps (B, dim_in) float to (B, dim_out); PyTorch's default initialisation. Its parameter names
    (``0.weight``, ``0.bias``, ``3.weight``, ``3.bias``) are part of saved models: keep the layout.
    """
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim_out))
