"""The metric component kind: :class:`Metric`, and the built-in ``recall`` metric :class:`RecallMetric`."""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from vsekit.config import FieldError, positive
from vsekit.metrics.summary import recall


def _valid_ks(_inst: Any, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
    if not value or len(set(value)) != len(value) or any(k < 1 for k in value):
        raise FieldError(attribute.name, f"expected a non-empty list of distinct integers >= 1, got {list(value)!r}")


class Metric:
    """Base class: ``compute(images, captions, cap2img) -> dict of floats`` on unit-norm embeddings."""

    @attrs.frozen
    class Config:
        pass

    #: the key used for model selection (higher is better)
    selection_key: str = "rsum"

    def __init__(self, config: Any) -> None:
        self.config = config

    def compute(self, images: np.ndarray, captions: np.ndarray, cap2img: np.ndarray,
                folds: int | None = None) -> dict[str, Any]:  # pragma: no cover - interface
        """Values of this metric for ``(N, dim)`` image and ``(M, dim)`` caption embeddings (float32, unit rows)
        and the ``(M,)`` int caption -> image map. A metric that supports tie rules also takes ``ties``
        (``"pessimistic"`` or ``"reference"``); it is passed only when it is not the default."""
        raise NotImplementedError


class RecallMetric(Metric):
    """R@K and median/mean rank for image annotation (i2t) and image search (t2i), and rsum.

    ``folds = 5`` on a 5K-image test set gives the COCO 5-fold 1K protocol
    (the mean over folds); leave it unset for the full set.
    """

    @attrs.frozen
    class Config:
        ks: tuple[int, ...] = attrs.field(default=(1, 5, 10), validator=_valid_ks)
        chunk_size: int = attrs.field(default=1024, validator=positive())

    def compute(self, images, captions, cap2img, folds=None, ties="pessimistic"):
        """The recall summary of :func:`~vsekit.metrics.recall` with this config's ``ks`` and ``chunk_size``.

        ``images`` (N, dim) and ``captions`` (M, dim) float32 unit rows, ``cap2img``
        (M,) int 0-based image of each caption. Returns R@K in %, 1-based ``medr`` /
        ``meanr`` per direction and ``rsum``. Raises ``ValueError`` (or
        :class:`~vsekit.errors.ProtocolError`) for inconsistent inputs or folds.
        """
        return recall(images, captions, cap2img, ks=self.config.ks, folds=folds, chunk_size=self.config.chunk_size,
                      ties=ties)
