"""A working vsekit plugin: one sentence encoder, one loss and one CLI command."""

from __future__ import annotations

from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from vsekit import Loss, SentenceEncoder, hookimpl
from vsekit.config import positive


class MeanPoolEncoder(SentenceEncoder):
    """The mean of the caption's word vectors, then a linear map to the joint space."""

    @attrs.frozen
    class Config:
        dim_word: int = attrs.field(default=64, validator=positive())

    def __init__(self, config: Any, vocab_size: int, dim: int) -> None:
        super().__init__(config, vocab_size, dim)
        self.embed = nn.Embedding(vocab_size, config.dim_word, padding_idx=0)
        self.proj = nn.Linear(config.dim_word, dim)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(tokens.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1).float()
        mean = (self.embed(tokens) * mask).sum(1) / lengths.clamp(min=1)[:, None].float()
        return self.proj(mean)


class CosineHingeLoss(Loss):
    """Hinge on cosine similarity summed over the negatives (a stand-in with its own name)."""

    @attrs.frozen
    class Config:
        margin: float = attrs.field(default=0.2, validator=positive())

    def forward(self, im: torch.Tensor, s: torch.Tensor, ids: torch.Tensor, **_: Any) -> torch.Tensor:
        scores = F.normalize(im, dim=-1) @ F.normalize(s, dim=-1).t()
        pos = scores.diag()
        same = ids[:, None] == ids[None, :]
        neg = scores.masked_fill(same, -1e4)
        cost_s = (self.config.margin + neg - pos[:, None]).clamp(min=0).sum(1)
        cost_im = (self.config.margin + neg - pos[None, :]).clamp(min=0).sum(0)
        return (cost_s + cost_im).mean()


@hookimpl
def register_sentence_encoders(register):
    register("meanpool", MeanPoolEncoder)


@hookimpl
def register_losses(register):
    register("cosine_hinge", CosineHingeLoss)


@hookimpl
def register_commands(cli):
    import click

    @cli.command("testplugin-hello")
    def hello() -> None:
        """Say hello (proves plugin commands reach the vsekit CLI)."""
        click.echo("hello from vsekit-testplugin")
