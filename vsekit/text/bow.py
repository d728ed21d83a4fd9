"""The ``bow`` sentence encoder: the sum of the word vectors (the joint dim is the word dim)."""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from vsekit.config import positive
from vsekit.text.base import SentenceEncoder


class BoWEncoder(SentenceEncoder):
    """Bag of words: a caption's embedding is the sum of its word vectors (width ``dim``), as in the reference."""

    @attrs.frozen
    class Config:
        #: must equal ``model.dim`` when given (the reference's rule for bow)
        dim_word: int | None = attrs.field(default=None, validator=positive())

    @classmethod
    def check_config(cls, config: Any, dim: int) -> list[tuple[str, str]]:
        """A problem when ``dim_word`` is given and is not the joint ``dim``."""
        if config.dim_word is not None and config.dim_word != dim:
            return [("dim_word", f"bow needs dim_word == model.dim ({dim}), got {config.dim_word}")]
        return []

    def __init__(self, config: Any, vocab_size: int, dim: int) -> None:
        super().__init__(config, vocab_size, dim)
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=None)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The sum of each caption's first ``lengths[i]`` word vectors: (B, T) int64 tokens to (B, dim) float."""
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]
        return (self.embed(tokens) * mask.unsqueeze(-1).to(self.embed.weight.dtype)).sum(1)
