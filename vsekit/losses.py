"""Ranking losses over a batch of matching (image, caption) pairs.

Every loss sees ``im`` (B, d) and ``s`` (B, d) with row i of each forming a
positive pair, plus ``ids`` (B,), the image index of each pair. Pairs whose
image is the same as the positive's (another caption of the same image in
the batch) are not negatives unless ``same_image_negatives = true`` (the
reference counted them).

No-information values (what the stall check of :mod:`vsekit.training.stall` compares
an epoch's mean loss with): every loss has :meth:`Loss.no_information_value`,
its value on a batch when all scores are equal (for example when every
embedding is the same vector), the state of a model that has learned nothing.
For a batch of B captions of B different images:

=================  =====================  ==========================================
loss               no-information value   why
=================  =====================  ==========================================
``contrastive``    2·B·(B−1)·margin       each of the B(B−1) negatives costs margin,
                                          in both directions, summed (not averaged)
``max_violation``  2·B·margin             the hardest negative of each of the B
                                          positives costs margin, both directions
``infonce``        ln B                   uniform softmax over B: ln B per direction;
                                          the two directions are averaged
=================  =====================  ==========================================

With captions of the same image in the batch (not negatives by default) a
row has fewer negatives; the methods count them exactly from ``ids``.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from vsekit.config import non_negative, one_of, positive


class Loss(nn.Module):
    """Base class: ``forward(im, s, ids, step=0, epoch=0.0) -> scalar``. May own parameters (e.g. a temperature)."""

    @attrs.frozen
    class Config:
        pass

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def forward(self, im: torch.Tensor, s: torch.Tensor, ids: torch.Tensor,
                step: int = 0, epoch: float = 0.0) -> torch.Tensor:  # pragma: no cover - interface
        """The loss on a batch of B pairs, as a 0-d float tensor (lower is better).

        ``im`` and ``s`` are the (B, dim) float image and caption embeddings (row i a
        positive pair), ``ids`` the (B,) int64 image index of each pair (equal ids: the
        same image); ``step`` and ``epoch`` (fractional) as the training loop passes them.
        """
        raise NotImplementedError

    def no_information_value(self, ids: torch.Tensor | int, step: int = 0, epoch: float = 0.0) -> float | None:
        """The loss on this batch when every score is equal (a model that has learned nothing).

        Args:
            ids: (B,) int64 image index of each pair, or B (B pairs of B different images).
            step, epoch: as passed to :meth:`forward` (a loss may change with them, e.g. a warm-up).

        Returns:
            The value as a float, or None when this loss does not know it (the
            stall check then only looks at the validation rsum).
        """
        return None

    def stall_advice(self) -> str:
        """What usually helps when training with this loss goes nowhere (one clause for the stall warning)."""
        return ("another [train] lr: lower when the loss jumped or diverged, higher when it barely moved "
                "(a small model often needs a higher one)")


def negatives_mask(ids: torch.Tensor, same_image_negatives: bool) -> torch.Tensor:
    """(B, B) bool: True where column j is a negative for row i."""
    if same_image_negatives:
        return ~torch.eye(len(ids), dtype=torch.bool, device=ids.device)
    return ids[:, None] != ids[None, :]


def hinge_costs(scores: torch.Tensor, margin: float, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hinge costs of every negative: (contrastive captions per image, contrastive images per caption)."""
    diag = scores.diagonal()
    cost_s = (margin + scores - diag[:, None]).clamp(min=0) * neg  # row i: image i against caption j
    cost_im = (margin + scores - diag[None, :]).clamp(min=0) * neg  # column j: caption j against image i
    return cost_s, cost_im


def _as_ids(ids: torch.Tensor | int) -> torch.Tensor:
    return torch.arange(ids) if isinstance(ids, int) else torch.as_tensor(ids).cpu()


def negative_counts(ids: torch.Tensor | int, same_image_negatives: bool) -> torch.Tensor:
    """(B,) int64: each positive's in-batch negatives (the same count both ways: the mask is symmetric)."""
    return negatives_mask(_as_ids(ids), same_image_negatives).sum(dim=1)


def sample_negatives(neg: torch.Tensor, ncon: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep ``ncon`` of each row's negatives (all of them where a row has fewer), uniformly without replacement."""
    keys = torch.rand(neg.shape, generator=generator, device=neg.device).masked_fill(~neg, 2.0)
    idx = keys.topk(min(ncon, neg.shape[1]), dim=1, largest=False).indices
    return torch.zeros_like(neg).scatter_(1, idx, True) & neg


class ContrastiveLoss(Loss):
    """The reference's pairwise hinge: sum over all in-batch negatives, both directions.

    ``ncon`` (the reference README's "number of contrastive examples", which
    its code ignored) keeps only that many sampled negatives per positive in
    each direction; the default ``None`` uses every in-batch negative.
    """

    @attrs.frozen
    class Config:
        margin: float = attrs.field(default=0.2, validator=non_negative())
        same_image_negatives: bool = False
        ncon: int | None = attrs.field(default=None, validator=positive())

    def forward(self, im, s, ids, step=0, epoch=0.0):
        """The summed hinge over in-batch (or ``ncon`` sampled) negatives, both directions; see :meth:`Loss.forward`."""
        scores = im @ s.t()
        neg = negatives_mask(ids, self.config.same_image_negatives)
        if self.config.ncon is None:
            cost_s, cost_im = hinge_costs(scores, self.config.margin, neg)
        else:  # captions sampled per image (rows), images sampled per caption (columns)
            cost_s = hinge_costs(scores, self.config.margin, sample_negatives(neg, self.config.ncon))[0]
            cost_im = hinge_costs(scores, self.config.margin, sample_negatives(neg.t(), self.config.ncon).t())[1]
        return cost_s.sum() + cost_im.sum()

    def no_information_value(self, ids, step=0, epoch=0.0):
        """2·margin·(number of negatives, each kept at most ``ncon``): 2·B·(B−1)·margin for B distinct images.

        With equal scores every hinge term is ``margin + c − c = margin``; the
        loss sums them over every negative of every positive, in both directions.
        """
        n = negative_counts(ids, self.config.same_image_negatives)
        if self.config.ncon is not None:
            n = n.clamp(max=self.config.ncon)
        return 2.0 * self.config.margin * float(n.sum())


class MaxViolationLoss(Loss):
    """VSE++: only the hardest negative per positive, both directions.

    Hardest negatives from scratch can stall near chance, so the first
    ``warmup_epochs`` epochs (or ``warmup_steps`` steps, whichever is given)
    use another loss: the summed hinge of :class:`ContrastiveLoss`
    (``warmup_loss = "sum"``) or :class:`InfoNCELoss` (``"infonce"``, with
    its learned temperature starting at ``temperature``).
    """

    @attrs.frozen
    class Config:
        margin: float = attrs.field(default=0.2, validator=non_negative())
        warmup_epochs: float = attrs.field(default=0.0, validator=non_negative())
        warmup_steps: int = attrs.field(default=0, validator=non_negative())
        warmup_loss: str = attrs.field(default="sum", validator=one_of("sum", "infonce"))
        temperature: float = attrs.field(default=0.07, validator=positive())
        same_image_negatives: bool = False

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.warmup = None
        if config.warmup_loss == "infonce":
            self.warmup = InfoNCELoss(InfoNCELoss.Config(temperature=config.temperature,
                                                         same_image_negatives=config.same_image_negatives))

    def in_warmup(self, step: int, epoch: float) -> bool:
        """True while ``step < warmup_steps`` or ``epoch < warmup_epochs``."""
        return step < self.config.warmup_steps or epoch < self.config.warmup_epochs

    def forward(self, im, s, ids, step=0, epoch=0.0):
        """The hinge of the hardest negative per positive, both directions; see :meth:`Loss.forward`.

        During the warm-up: the InfoNCE warm-up loss, or the summed hinge over all negatives.
        """
        if self.warmup is not None and self.in_warmup(step, epoch):
            return self.warmup(im, s, ids, step=step, epoch=epoch)
        scores = im @ s.t()
        cost_s, cost_im = hinge_costs(scores, self.config.margin, negatives_mask(ids, self.config.same_image_negatives))
        if self.in_warmup(step, epoch):
            return cost_s.sum() + cost_im.sum()
        return cost_s.max(dim=1).values.sum() + cost_im.max(dim=0).values.sum()

    def no_information_value(self, ids, step=0, epoch=0.0):
        """2·margin·(positives with a negative): 2·B·margin for B distinct images; in warm-up, the warm-up loss's.

        With equal scores the hardest negative of each positive costs ``margin``
        (a positive without negatives costs 0), once per direction, summed.
        """
        if self.warmup is not None and self.in_warmup(step, epoch):
            return self.warmup.no_information_value(ids, step, epoch)
        n = negative_counts(ids, self.config.same_image_negatives)
        if self.in_warmup(step, epoch):  # the summed hinge, as ContrastiveLoss
            return 2.0 * self.config.margin * float(n.sum())
        return 2.0 * self.config.margin * float((n > 0).sum())

    def stall_advice(self) -> str:
        """A warm-up when there is none, else a longer one; or a lower learning rate."""
        if not (self.config.warmup_epochs or self.config.warmup_steps):
            return ("a warm-up before max-violation ([loss] warmup_epochs = 1: the summed hinge first, or "
                    "warmup_loss = \"infonce\"), or another [train] lr")
        return "a longer warm-up ([loss] warmup_epochs) or another [train] lr"


class InfoNCELoss(Loss):
    """Symmetric cross-entropy over in-batch scores with a learned temperature (CLIP-style)."""

    @attrs.frozen
    class Config:
        temperature: float = attrs.field(default=0.07, validator=positive())
        learn_temperature: bool = True
        max_scale: float = attrs.field(default=100.0, validator=positive())
        same_image_negatives: bool = False

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        init = torch.tensor(math.log(1.0 / config.temperature))
        if config.learn_temperature:
            self.log_scale = nn.Parameter(init)
        else:
            self.register_buffer("log_scale", init)

    def forward(self, im, s, ids, step=0, epoch=0.0):
        """The mean of the image->caption and caption->image cross-entropies; see :meth:`Loss.forward`.

        Logits are the cosine scores times ``exp(log_scale)`` (at most ``max_scale``);
        unless ``same_image_negatives``, the other pairs of the same image are left out.
        """
        scale = self.log_scale.exp().clamp(max=self.config.max_scale)
        logits = scale * (im @ s.t())
        if not self.config.same_image_negatives:
            other_pos = (ids[:, None] == ids[None, :]) & ~torch.eye(len(ids), dtype=torch.bool, device=ids.device)
            logits = logits.masked_fill(other_pos, float("-inf"))
        target = torch.arange(len(ids), device=ids.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2

    def no_information_value(self, ids, step=0, epoch=0.0):
        """The mean over positives of ln(candidates): ln B for B distinct images (whatever the temperature).

        With equal logits the softmax is uniform over a row's candidates (itself
        and its negatives; other captions of its image are masked out), so its
        cross-entropy is ln(1 + negatives). ``F.cross_entropy`` averages over
        rows, and the two directions (the same counts: the mask is symmetric)
        are averaged, not summed.
        """
        n = negative_counts(ids, self.config.same_image_negatives)
        return float(torch.log1p(n.double()).mean())

