"""The batch of captions a sentence encoder receives (built by :mod:`vsekit.data.batching`)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch


@attrs.frozen
class TextBatch:
    """A batch of captions: ``tokens`` (B, T) int64 padded with 0, ``lengths`` (B,), optional raw ``texts``."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    texts: Sequence[Sequence[str]] | None = None

    def to(self, device: torch.device | str) -> TextBatch:
        """On ``device``; the copy of ``tokens`` does not block (pin the batch first for a truly async CUDA copy)."""
        return TextBatch(self.tokens.to(device, non_blocking=True), self.lengths.to(device), self.texts)

    def pin_memory(self) -> TextBatch:
        """A copy in page-locked memory, for asynchronous host-to-GPU copies."""
        return TextBatch(self.tokens.pin_memory(), self.lengths, self.texts)
