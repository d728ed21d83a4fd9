"""The joint model: a sentence encoder and an image encoder meeting in one unit-norm space."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vsekit.text.batch import TextBatch
from vsekit.data.tokenize import DEFAULT, get_tokenizer, tokenize_all
from vsekit.data.vocab import Vocab, encode_all
from vsekit.spec import Component


def _normalize(x: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
    """``F.normalize(x, dim=-1)``; without autograd, in place when ``x`` is a tensor of its own (it shares memory
    with none of ``inputs``), which saves a pass and an allocation at encode time. Same values either way."""
    if torch.is_grad_enabled() or x.requires_grad or x.dtype not in (torch.float32, torch.float64):
        return F.normalize(x, dim=-1)
    ptr = x.untyped_storage().data_ptr()
    if any(t.untyped_storage().data_ptr() == ptr for t in inputs):
        return F.normalize(x, dim=-1)
    return x.div_(torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min_(1e-12))


class JointModel(nn.Module):
    """Encodes captions and image features into the same ``dim``-d space.

    ``append_eos`` feeds one ``<eos>`` step after each caption (the
    reference's encoder did; native vsekit models do not). ``n_words`` maps
    word indices >= n_words to ``<unk>`` (the reference's vocabulary cutoff).
    ``tokenizer`` names the entry of :data:`vsekit.data.tokenize.TOKENIZERS`
    that turns text into tokens on every path (:meth:`tokens`); an unknown
    name raises :class:`~vsekit.errors.SpecError`.
    """

    def __init__(self, sentence_encoder: nn.Module, image_encoder: nn.Module, vocab: Vocab,
                 *, append_eos: bool = False, n_words: int | None = None, tokenizer: str = DEFAULT) -> None:
        super().__init__()
        self.sentence_encoder = sentence_encoder
        self.image_encoder = image_encoder
        self.vocab = vocab
        self.append_eos = append_eos
        self.n_words = n_words
        get_tokenizer(tokenizer)  # refuse an unknown name now, not at the first caption
        self.tokenizer = tokenizer

    @classmethod
    def build(cls, sentence: Component, image: Component, vocab: Vocab, dim: int, dim_image: int,
              **kwargs: Any) -> "JointModel":
        return cls(sentence.build(len(vocab), dim), image.build(dim_image, dim), vocab, **kwargs)

    @property
    def dim(self) -> int:
        return self.sentence_encoder.dim

    @property
    def dim_image(self) -> int:
        return self.image_encoder.dim_image

    def tokens(self, texts: Sequence[str | Sequence[str]]) -> list[list[str]]:
        """The model's tokens of each text (token lists are joined with spaces and tokenized again)."""
        return tokenize_all(texts, self.tokenizer)

    def token_ids(self, texts: Sequence[str | Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """The word ids of ``texts`` as the model reads them: one flat int64 array and (N,) int64 lengths
        (``<eos>`` appended when ``append_eos``; ids >= ``n_words`` mapped to ``<unk>``)."""
        return encode_all(self.vocab, self.tokens(texts), append_eos=self.append_eos, n_words=self.n_words)

    def encode_text(self, batch: TextBatch) -> torch.Tensor:
        return F.normalize(self.sentence_encoder.encode(batch), dim=-1)

    def encode_image(self, features: torch.Tensor, training: bool = False) -> torch.Tensor:
        out = self.image_encoder(features)
        if training and not getattr(self.image_encoder, "normalize_train", True):
            return out
        return _normalize(out, features, *self.image_encoder.parameters(), *self.image_encoder.buffers())

    def forward(self, batch: TextBatch, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training-graph embeddings: (images, captions)."""
        return self.encode_image(features, training=True), self.encode_text(batch)
