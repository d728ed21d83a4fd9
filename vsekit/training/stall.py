"""Training that goes nowhere: when an epoch's dev rsum or mean loss says the model learns nothing."""

from __future__ import annotations

from typing import Any

from vsekit.data.readers import Split
from vsekit.metrics import DEFAULT_KS, chance_rsum, eval_captions

#: an epoch stalls when dev rsum <= STALL_CHANCE_FACTOR x chance ...
STALL_CHANCE_FACTOR = 2.0
#: ... or its mean loss is within this fraction of the loss's no-information value
STALL_LOSS_TOLERANCE = 0.02


def split_chance_rsum(split: Split, ks: Any = DEFAULT_KS) -> float:
    """The expected rsum of i.i.d. random scores on ``split`` as it is evaluated: its images, each with the
    captions the evaluation ranks (its first ``min(n, 5)``, :func:`~vsekit.metrics.eval_captions`)."""
    used = eval_captions(split.cap2img, split.n_images).used
    return chance_rsum(split.n_images, [max(1, int(c)) for c in used], tuple(ks))


def stall_reasons(rsum: float | None, chance: float | None, mean_loss: float | None,
                  no_information: float | None) -> list[str]:
    """Why an epoch looks like training that goes nowhere ([] when it does not).

    Args:
        rsum: the epoch's validation rsum (percent), or None when not measured.
        chance: the expected rsum of random scores on that split (:func:`split_chance_rsum`).
        mean_loss: the epoch's mean training loss (per batch).
        no_information: the mean over the same batches of the loss's no-information value
            (:meth:`vsekit.losses.Loss.no_information_value`), None when the loss does not state one.

    Returns:
        One clause per condition met: rsum <= 2 x chance; mean loss within 2 % of the no-information value.
    """
    reasons = []
    if rsum is not None and chance is not None and rsum <= STALL_CHANCE_FACTOR * chance:
        reasons.append(f"dev rsum {rsum:.1f} is at most {STALL_CHANCE_FACTOR:g} x chance = "
                       f"{STALL_CHANCE_FACTOR * chance:.1f} (chance: {chance:.1f})")
    if mean_loss is not None and no_information is not None and no_information > 0 \
            and abs(mean_loss - no_information) <= STALL_LOSS_TOLERANCE * no_information:
        reasons.append(f"the mean loss {mean_loss:.4g} is within {STALL_LOSS_TOLERANCE:.0%} of {no_information:.4g}, "
                       f"its value when every score is equal")
    return reasons
