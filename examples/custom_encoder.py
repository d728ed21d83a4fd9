"""A user-defined sentence encoder, used from a spec without packaging anything.

A 1-D convolution over word embeddings with max-pooling over time (in the
spirit of Kim 2014's sentence CNN): each filter looks at ``width`` words at a
time, and a caption's vector is the largest response of every filter
anywhere in the caption. Run it with::

    vsekit run examples/custom_encoder.toml

The spec names the class as ``custom_encoder.py:CNNEncoder`` (a path
relative to the spec file). The ``@vsekit.register`` line below also makes
the short name ``cnn`` available to specs that list this file under
``imports = ["custom_encoder.py"]``. The trained model names this file, so
loading it (``vsekit eval runs/custom_encoder``, ``vsekit.load_model``) asks
for ``--trust-code`` / ``trust_code=True``: vsekit imports code a model names
only when you say so.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

import vsekit
from vsekit.config import FieldError, in_range, positive


def _widths(_inst: Any, attribute: Any, value: tuple[int, ...]) -> None:
    if not value or any(w < 1 for w in value):
        raise FieldError(attribute.name, f"expected a non-empty list of widths >= 1, got {list(value)!r}")


@vsekit.register("sentence_encoder", "cnn")
class CNNEncoder(vsekit.SentenceEncoder):
    """Word embeddings -> parallel 1-D convolutions (one per width) -> ReLU -> max over time -> linear."""

    @attrs.frozen
    class Config:
        dim_word: int = attrs.field(default=300, validator=positive())
        #: filter widths in words; one convolution of ``channels`` filters per width
        widths: tuple[int, ...] = attrs.field(default=(2, 3, 4), validator=_widths)
        channels: int = attrs.field(default=256, validator=positive())
        dropout: float = attrs.field(default=0.1, validator=in_range(0.0, 0.9))

    def __init__(self, config: Any, vocab_size: int, dim: int) -> None:
        super().__init__(config, vocab_size, dim)
        self.embed = nn.Embedding(vocab_size, config.dim_word, padding_idx=0)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        # padding w // 2 keeps every caption position (a one-word caption still gets a response)
        self.convs = nn.ModuleList(
            nn.Conv1d(config.dim_word, config.channels, w, padding=w // 2) for w in config.widths
        )
        self.dropout = nn.Dropout(config.dropout)
        self.proj = nn.Linear(config.channels * len(config.widths), dim)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.embed(tokens)).transpose(1, 2)  # (B, dim_word, T)
        t = tokens.shape[1]
        valid = torch.arange(t, device=tokens.device)[None, :] < lengths[:, None]  # (B, T)
        pooled = []
        for conv in self.convs:
            h = torch.relu(conv(x))[:, :, :t]  # even widths give one extra step: drop it
            h = h.masked_fill(~valid[:, None, :], float("-inf"))  # padding never wins the max
            pooled.append(h.max(dim=2).values)
        return self.proj(self.dropout(torch.cat(pooled, dim=1)))
