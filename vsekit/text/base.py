"""The :class:`SentenceEncoder` interface, the class users subclass."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
from torch import nn

from vsekit.text.batch import TextBatch


class SentenceEncoder(nn.Module):
    """Encodes a batch of captions into (B, dim) vectors; the joint model L2-normalizes them.

    Subclass it with a frozen attrs ``Config`` and a ``forward(tokens,
    lengths)``: ``tokens`` is (B, T) int64 padded with 0, ``lengths`` (B,) the
    true lengths. Encoders that need the raw tokens (e.g. a pretrained
    transformer with its own tokenizer) set ``needs_texts = True`` and
    override :meth:`encode`, which receives the whole :class:`TextBatch`.
    Register it with ``@vsekit.register("sentence_encoder", "name")`` or name
    it in a spec as ``"package.module:Class"``.
    """

    @attrs.frozen
    class Config:
        pass

    needs_texts: ClassVar[bool] = False

    def __init__(self, config: Any, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.dim = dim

    @classmethod
    def check_config(cls, config: Any, dim: int) -> list[tuple[str, str]]:
        """(field, message) for options that disagree with the joint dimension ``dim``."""
        return []

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Sentence embeddings (B, dim) float, unnormalized.

        ``tokens`` is (B, T) int64 word ids padded with 0, ``lengths`` (B,) int64 the true lengths.
        """
        raise NotImplementedError

    def encode(self, batch: TextBatch) -> torch.Tensor:
        """The embeddings (B, dim) of a :class:`TextBatch`; encoders with ``needs_texts`` override it."""
        return self(batch.tokens, batch.lengths)
