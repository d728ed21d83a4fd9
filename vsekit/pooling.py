"""Pooling operators over sets of K item vectors (image regions, word states), with a mask for variable K.

* :func:`mean_pool`: the average of the valid items;
* :class:`GPO`: the generalized pooling operator of Chen et al., CVPR 2021 ("Learning the Best
  Pooling Strategy for Visual Semantic Embedding"): each dimension's values over the valid items are
  sorted in descending order, and the sorted positions are weighted by ``softmax(score / temperature)``,
  the scores made by a bidirectional GRU over sine position encodings and a linear layer; the weights
  depend only on the number of valid items, so one set of weights serves every dimension.

Every operator takes ``features`` (B, K, D) float and ``mask`` (B, K) bool (True: a valid item; any
pattern, not only a prefix; None: all valid) and returns (B, D). A row with no valid item pools to zeros.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["GPO", "POOLINGS", "mean_pool", "sine_positions"]

#: the names of the pooling operators (``mean``, ``gpo``)
POOLINGS = ("mean", "gpo")


def _full_mask(features: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
    if mask.shape != features.shape[:2]:
        raise ValueError(f"mask: expected shape {tuple(features.shape[:2])}, got {tuple(mask.shape)}")
    return mask.to(device=features.device, dtype=torch.bool)


def mean_pool(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of the valid items: (B, K, D) float and (B, K) bool (None: all valid) to (B, D).

    Raises:
        ValueError: ``mask`` does not have the shape (B, K).
    """
    m = _full_mask(features, mask).to(features.dtype).unsqueeze(-1)
    return (features * m).sum(1) / m.sum(1).clamp(min=1)


def sine_positions(length: int, d_pe: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The sine position encodings (length, d_pe) ``dtype`` of positions 0..length-1 (Vaswani et al. 2017).

    ``pe[k, 2i] = sin(k / 10000^(2i / d_pe))``, ``pe[k, 2i + 1] = cos(k / 10000^(2i / d_pe))``; ``d_pe`` even.
    """
    position = torch.arange(length, dtype=dtype).unsqueeze(1)
    freq = torch.exp(torch.arange(0, d_pe, 2, dtype=dtype) * (-math.log(10000.0) / d_pe))
    pe = torch.zeros(length, d_pe, dtype=dtype)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq)
    return pe


class GPO(nn.Module):
    """The generalized pooling operator (Chen et al., CVPR 2021), as in the authors' code (VSE-infinity).

    For n valid items: the position encodings ``pe[0..n-1]`` (``d_pe`` wide) run through a one-layer
    bidirectional GRU (``d_hidden`` per direction); the two directions' states are averaged, a
    linear layer without bias gives a score per position, ``theta = softmax(score / temperature)``
    over the n positions; the pooled vector is ``sum_k theta_k * sorted_k``, where ``sorted_k`` holds
    each dimension's k-th largest value over the valid items.
    """

    def __init__(self, d_pe: int = 32, d_hidden: int = 32, temperature: float = 0.1) -> None:
        super().__init__()
        if d_pe % 2:
            raise ValueError(f"GPO: d_pe must be even, got {d_pe}")
        self.d_pe, self.d_hidden, self.temperature = d_pe, d_hidden, temperature
        self.gru = nn.GRU(d_pe, d_hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.linear = nn.Linear(d_hidden, 1, bias=False)

    def position_weights(self, n: int) -> torch.Tensor:
        """The weights (n,) float of the n sorted positions of a set of ``n`` >= 1 valid items (they sum to 1)."""
        weight = self.linear.weight
        out, _ = self.gru(sine_positions(n, self.d_pe, weight.dtype).to(weight.device)[None])
        states = (out[0, :, : self.d_hidden] + out[0, :, self.d_hidden :]) / 2  # (n, d_hidden)
        return torch.softmax(self.linear(states)[:, 0] / self.temperature, dim=0)

    def weights(self, lengths: torch.Tensor, k: int) -> torch.Tensor:
        """The weights (B, k) float of the sorted positions for sets of ``lengths`` (B,) valid items;
        0 at positions >= the length (a set of 0 items has all-zero weights)."""
        w = torch.zeros(len(lengths), k, device=self.linear.weight.device, dtype=self.linear.weight.dtype)
        for n in torch.unique(lengths).tolist():
            if n > 0:
                rows = (lengths == n).nonzero()[:, 0].to(w.device)
                w[rows, :n] = self.position_weights(int(n))
        return w

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled vectors (B, D) of ``features`` (B, K, D) float; ``mask`` (B, K) bool (None: all valid).

        Raises:
            ValueError: ``mask`` does not have the shape (B, K).
        """
        m = _full_mask(features, mask)
        lengths, k = m.sum(1), features.shape[1]
        ordered = features.masked_fill(~m.unsqueeze(-1), -math.inf).sort(dim=1, descending=True).values
        padding = torch.arange(k, device=features.device)[None, :] >= lengths[:, None]  # sorted last
        ordered = ordered.masked_fill(padding.unsqueeze(-1), 0.0)
        w = self.weights(lengths, k).to(features.dtype)
        return (ordered * w.unsqueeze(-1)).sum(1)
