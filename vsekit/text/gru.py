"""The ``gru`` sentence encoder: word embeddings then a GRU; the sentence is the last state (or a pool).

``pooling`` picks the sentence vector: ``"last"`` (the default, the reference's): the last state;
``"mean"``: the mean of the word states; ``"gpo"``: GPO over the word states
(:class:`vsekit.pooling.GPO`, as VSE-infinity pools its GRU's states). Bidirectional: the two
directions' states are averaged first. ``mean`` and ``gpo`` need every state, so they run
``packed`` or ``padded`` (``auto`` picks ``packed``).

The reference's GRU is PyTorch's GRU with zero recurrent biases (its reset
gate multiplies the recurrent product, as cuDNN's does); native vsekit models
keep the recurrent biases, imported reference models have them at zero.

``impl`` picks how the GRU runs; all give the same outputs and gradients (to
float rounding) and use the same parameters (``rnn.weight_ih_l0`` ...):

* ``"packed"``: ``nn.GRU`` on a ``PackedSequence`` (cuDNN on CUDA);
* ``"padded"``: ``nn.GRU`` on the padded batch, each caption's state read at
  its length (one direction only; for length-bucketed batches, where padding
  is small);
* ``"fused"``: a GRU layer with its backward written out
  (:mod:`vsekit.text._gru_fused`; one direction only), about 1.3x the packed
  ``nn.GRU`` in training on CPU;
* ``"auto"``: ``fused`` for one direction on CPU, ``packed`` otherwise (and
  ``padded`` under autocast, which the fused layer does not follow).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import attrs
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from vsekit.config import in_range, one_of, path_field, positive
from vsekit.pooling import GPO, mean_pool
from vsekit.text._gru_fused import gru_last_states, packing
from vsekit.text.base import SentenceEncoder
from vsekit.text.word_vectors import read_word_vectors

log = logging.getLogger(__name__)

IMPLS = ("auto", "packed", "padded", "fused")
#: how a caption's vector is made from the word states
POOLINGS = ("last", "mean", "gpo")


class GRUEncoder(SentenceEncoder):
    """Word embeddings (``dim_word``) then a GRU of width ``dim``; a caption's embedding is its last state.

    Bidirectional: the mean of the two directions' last states. ``impl``: see the
    module docstring. Raises ``ValueError`` when built bidirectional with ``impl``
    ``"padded"`` or ``"fused"`` (:meth:`check_config` reports it first in a spec).
    """

    @attrs.frozen
    class Config:
        dim_word: int = attrs.field(default=300, validator=positive())
        layers: int = attrs.field(default=1, validator=positive())
        bidirectional: bool = False
        dropout: float = attrs.field(default=0.0, validator=in_range(0.0, 0.9))
        word_dropout: float = attrs.field(default=0.0, validator=in_range(0.0, 0.9))
        #: how the GRU runs (same results): "auto", "packed", "padded" or "fused"; see the module docstring
        impl: str = attrs.field(default="auto", validator=one_of(*IMPLS))
        #: the caption's vector: the last state ("last"), the mean ("mean") or GPO ("gpo") of the word states
        pooling: str = attrs.field(default="last", validator=one_of(*POOLINGS))
        #: pretrained word vectors (text: a word and dim_word numbers a line) for the vocabulary's words when
        #: training starts (:meth:`init_words`); words without one keep the random init. Unused when loading.
        word_vectors: str | None = path_field(None)

    def __init__(self, config: Any, vocab_size: int, dim: int) -> None:
        super().__init__(config, vocab_size, dim)
        if problems := self.check_config(config, dim):
            raise ValueError(f"{problems[0][0]} = {getattr(config, problems[0][0])!r}: {problems[0][1]}")
        self.embed = nn.Embedding(vocab_size, config.dim_word)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        self.rnn = nn.GRU(config.dim_word, dim, num_layers=config.layers, batch_first=True,
                          bidirectional=config.bidirectional,
                          dropout=config.dropout if config.layers > 1 else 0.0)
        # word dropout: zero whole word vectors, (B, T, D) read as (N, C, L) with a channel per word
        self.drop = nn.Dropout1d(config.word_dropout) if config.word_dropout > 0 else nn.Identity()
        if config.pooling == "gpo":  # only then: "last" and "mean" models keep the same parameters
            self.gpo = GPO()

    def init_words(self, words: Sequence[str]) -> int:
        """Set the embedding rows of ``words`` (the vocabulary, row i for word i) that ``word_vectors`` holds;
        returns how many, and logs it (a warning when none). No file configured: 0, nothing changes. Raises
        :class:`~vsekit.errors.DataError` for an unreadable file or a line of the wrong width
        (:func:`~vsekit.text.word_vectors.read_word_vectors`).
        """
        source = self.config.word_vectors
        if not source:
            return 0
        found = read_word_vectors(source, words, self.config.dim_word)
        with torch.no_grad():
            for i, w in enumerate(words):
                if w in found:
                    self.embed.weight[i] = torch.from_numpy(found[w])
        n = sum(w in found for w in words)
        log.info("word vectors: %d of %d vocabulary words from %s", n, len(words), source)
        if n == 0:
            log.warning("word vectors: none of the %d vocabulary words is in %s; the embeddings stay random",
                        len(words), source)
        return n

    @classmethod
    def check_config(cls, config: Any, dim: int) -> list[tuple[str, str]]:
        """A problem when ``bidirectional`` is set with ``impl`` 'padded' or 'fused' (one direction only),
        or ``pooling`` 'mean' or 'gpo' with ``impl`` 'fused' (which keeps the last states only)."""
        if config.bidirectional and config.impl in ("padded", "fused"):
            return [("impl", f"{config.impl!r} runs one direction only; with bidirectional = true use "
                             f"'packed' or 'auto'")]
        if config.pooling != "last" and config.impl == "fused":
            return [("impl", f"'fused' keeps the last states only; with pooling = {config.pooling!r} use "
                             f"'packed', 'padded' or 'auto'")]
        return []

    def impl_for(self, device: torch.device) -> str:
        """The implementation ``forward`` uses for a batch on ``device``."""
        impl = self.config.impl
        if impl == "auto":
            if self.config.bidirectional or self.config.pooling != "last":
                return "packed"
            impl = "fused" if device.type == "cpu" else "packed"
        if impl == "fused" and torch.is_autocast_enabled(device.type):
            return "padded"
        return impl

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The caption vectors (B, dim) float of (B, T) int64 tokens: the GRU's last state at each caption's
        length, or the ``pooling`` of its states.

        ``lengths`` below 1 count as 1; the implementation is :meth:`impl_for`'s.
        """
        impl = self.impl_for(tokens.device)
        lengths = lengths.clamp(min=1)
        if self.config.pooling != "last":
            return self.pooled(tokens, lengths, impl)
        if impl == "fused":
            pk = packing(lengths, tokens.shape[1], tokens.device)
            if self.training and self.config.word_dropout > 0:  # the same dropout draws as the other paths
                x = self.drop(self.embed(tokens)).flatten(0, 1).index_select(0, pk.token_index)
            else:
                x = self.embed(tokens.flatten().index_select(0, pk.token_index))
            return gru_last_states(self.rnn, x, pk, self.rnn.dropout, self.training)
        x = self.drop(self.embed(tokens))
        if impl == "padded":
            out, _ = self.rnn(x)
            return out[torch.arange(len(lengths), device=out.device), lengths.to(out.device) - 1]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)  # (layers * directions, B, dim), in the original batch order
        if self.config.bidirectional:
            return (h[-2] + h[-1]) / 2
        return h[-1]

    def pooled(self, tokens: torch.Tensor, lengths: torch.Tensor, impl: str) -> torch.Tensor:
        """``mean`` or ``gpo`` (config ``pooling``) of the word states (B, T, dim) of each caption's first
        ``lengths`` (B,) >= 1 tokens, run ``packed`` or ``padded`` (``impl``)."""
        x = self.drop(self.embed(tokens))
        t = tokens.shape[1]
        if impl == "padded":
            out, _ = self.rnn(x)
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=t)
        if self.config.bidirectional:
            out = (out[..., : self.dim] + out[..., self.dim :]) / 2
        mask = torch.arange(t, device=out.device)[None, :] < lengths.to(out.device)[:, None]
        return self.gpo(out, mask) if self.config.pooling == "gpo" else mean_pool(out, mask)
