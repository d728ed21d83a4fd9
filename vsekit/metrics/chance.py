"""The rsum of a model that scores at random: the floor a trained model must clear."""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Sequence

from vsekit.metrics.summary import DEFAULT_KS, check_ks


def _positive_int(name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)


def chance_rsum(
    n_img: int, caps_per_image: int | Sequence[int] = 5, ks: Sequence[int] = DEFAULT_KS
) -> float:
    """Expected rsum (in percent) when all scores are i.i.d. random.

    Image annotation: image ``i`` with ``c_i`` ground-truth captions among ``M = sum c_i`` has its best one
    in the top K with probability ``1 - C(M - c_i, K) / C(M, K)``; the recall is the mean over images.
    Image search: the own image is in the top K with probability ``min(K, n) / n``.

    Args:
        n_img: number of images ``n`` (>= 1).
        caps_per_image: captions per image: one count ``c`` for every image (>= 1), or a sequence of ``n``
            per-image counts (each >= 1) when they vary, e.g. the counts an evaluation uses
            (:func:`~vsekit.metrics.protocol.eval_captions`).
        ks: the K values of Recall@K.

    Returns:
        ``100 * sum_K (P_i2t(K) + P_t2i(K))``, computed exactly (no simulation).

    Raises:
        ValueError: ``n_img`` or a caption count is not a positive int, the sequence does not hold ``n_img``
            counts, or ``ks`` is invalid.
    """
    ks = check_ks(ks)
    n = _positive_int("n_img", n_img)
    if isinstance(caps_per_image, Sequence) or hasattr(caps_per_image, "__len__"):
        counts = [_positive_int("caps_per_image", c) for c in list(caps_per_image)]  # type: ignore[arg-type]
        if len(counts) != n:
            raise ValueError(f"caps_per_image holds {len(counts)} counts for {n} images")
    else:
        counts = [_positive_int("caps_per_image", caps_per_image)] * n
    groups = Counter(counts)  # count -> images with that count
    total = sum(counts)
    prob_sum = 0.0
    for k in ks:
        # Exact big-int binomials; int / int true division rounds correctly.
        miss = sum(m * math.comb(total - c, k) for c, m in groups.items())
        p_i2t = 1.0 - miss / (n * math.comb(total, k)) if k <= total else 1.0
        p_t2i = min(k, n) / n
        prob_sum += p_i2t + p_t2i
    return 100.0 * prob_sum
