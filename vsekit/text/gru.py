"""The ``gru`` sentence encoder: word embeddings then a GRU; the sentence is the last state.

The reference's GRU is PyTorch's GRU with zero recurrent biases (its reset
gate multiplies the recurrent product, as cuDNN's does); native vsekit models
keep the recurrent biases, imported reference models have them at zero.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from vsekit.spec import in_range, positive
from vsekit.text.base import SentenceEncoder


class GRUEncoder(SentenceEncoder):
    @attrs.frozen
    class Config:
        dim_word: int = attrs.field(default=300, validator=positive())
        layers: int = attrs.field(default=1, validator=positive())
        bidirectional: bool = False
        dropout: float = attrs.field(default=0.0, validator=in_range(0.0, 0.9))
        word_dropout: float = attrs.field(default=0.0, validator=in_range(0.0, 0.9))

    def __init__(self, config: Any, vocab_size: int, dim: int) -> None:
        super().__init__(config, vocab_size, dim)
        self.embed = nn.Embedding(vocab_size, config.dim_word)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        self.rnn = nn.GRU(config.dim_word, dim, num_layers=config.layers, batch_first=True,
                          bidirectional=config.bidirectional,
                          dropout=config.dropout if config.layers > 1 else 0.0)
        # word dropout: zero whole word vectors, (B, T, D) read as (N, C, L) with a channel per word
        self.drop = nn.Dropout1d(config.word_dropout) if config.word_dropout > 0 else nn.Identity()

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.embed(tokens))
        packed = pack_padded_sequence(x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)  # (layers * directions, B, dim), in the original batch order
        if self.config.bidirectional:
            return (h[-2] + h[-1]) / 2
        return h[-1]

