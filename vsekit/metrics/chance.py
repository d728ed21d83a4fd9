"""The rsum of a model that scores at random: the floor a trained model must clear."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from vsekit.metrics.summary import DEFAULT_KS, check_ks


def chance_rsum(
    n_img: int, caps_per_image: int = 5, ks: Sequence[int] = DEFAULT_KS
) -> float:
    """Expected rsum (in percent) when all scores are i.i.d. random.

    Image annotation: with ``c`` ground-truth captions among ``n * c``, the best
    one is in the top K with probability ``1 - C(n*c - c, K) / C(n*c, K)``.
    Image search: the own image is in the top K with probability ``min(K, n) / n``.

    Args:
        n_img: number of images ``n`` (>= 1).
        caps_per_image: captions per image ``c`` (>= 1).
        ks: the K values of Recall@K.

    Returns:
        ``100 * sum_K (P_i2t(K) + P_t2i(K))``, computed exactly (no simulation).

    Raises:
        ValueError: ``n_img`` or ``caps_per_image`` is not a positive int, or ``ks`` is invalid.
    """
    ks = check_ks(ks)
    for name, v in (("n_img", n_img), ("caps_per_image", caps_per_image)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    n, c = int(n_img), int(caps_per_image)
    total = n * c
    prob_sum = 0.0
    for k in ks:
        # Exact big-int binomials; int / int true division rounds correctly.
        p_i2t = 1.0 - math.comb(total - c, k) / math.comb(total, k) if k <= total else 1.0
        p_t2i = min(k, n) / n
        prob_sum += p_i2t + p_t2i
    return 100.0 * prob_sum
