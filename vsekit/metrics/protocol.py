"""Which captions an evaluation ranks: each image's first :data:`EVAL_CAPS_PER_IMAGE`, in the split's order."""

from __future__ import annotations

import attrs
import numpy as np

from vsekit.metrics.inputs import ArrayLike

EVAL_CAPS_PER_IMAGE = 5
"""Captions per image in the field's evaluation protocol (Flickr8K, Flickr30K, MS COCO: 5 per image; COCO images
with 6 or 7 use their first 5). Evaluation ranks each image's first ``min(n, 5)`` captions in the split's order;
training uses every caption."""


@attrs.frozen
class EvalCaptions:
    """The captions an evaluation uses and how the split departs from :data:`EVAL_CAPS_PER_IMAGE` per image.

    Attributes:
        keep: ``(M',)`` int64 ascending indices of the captions used (the split's order is kept).
        per_image: ``(N,)`` int64 captions of each image in the split.
        used: ``(N,)`` int64 captions of each image used, ``min(per_image, caps)``.
        caps: the captions per image of the protocol (:data:`EVAL_CAPS_PER_IMAGE`).
    """

    keep: np.ndarray
    per_image: np.ndarray
    used: np.ndarray
    caps: int

    @property
    def images_with_fewer(self) -> int:
        """Images with fewer than ``caps`` captions (evaluated with the captions they have)."""
        return int((self.per_image < self.caps).sum())

    @property
    def captions_dropped(self) -> int:
        """Captions beyond each image's ``caps``-th, not used by the evaluation."""
        return int((self.per_image - self.used).sum())

    def record(self) -> dict[str, int]:
        """The protocol entries of a result: ``caps_per_image_eval``, ``n_captions_eval``, ``images_with_fewer``,
        ``captions_dropped``."""
        return {"caps_per_image_eval": self.caps, "n_captions_eval": len(self.keep),
                "images_with_fewer": self.images_with_fewer, "captions_dropped": self.captions_dropped}


def eval_captions(cap2img: ArrayLike, n_images: int, caps: int = EVAL_CAPS_PER_IMAGE) -> EvalCaptions:
    """Each image's first ``min(n, caps)`` captions, "first" in the order of ``cap2img`` (the split's order).

    Args:
        cap2img: ``(M,)`` ints in ``[0, n_images)``, the image of each caption.
        n_images: the number of images ``N``.
        caps: captions per image of the protocol (>= 1).

    Returns:
        An :class:`EvalCaptions` (indices kept, per-image counts).

    Raises:
        ValueError: ``caps < 1`` or a ``cap2img`` value outside ``[0, n_images)``.
    """
    if caps < 1:
        raise ValueError(f"caps must be >= 1, got {caps}")
    c2i = np.asarray(cap2img, dtype=np.int64).reshape(-1)
    if c2i.size and (c2i.min() < 0 or c2i.max() >= n_images):
        raise ValueError(f"cap2img values must lie in [0, {n_images})")
    order = np.argsort(c2i, kind="stable")  # captions grouped by image, each group in the split's order
    per_image = np.bincount(c2i, minlength=n_images).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(per_image)[:-1]])
    position = np.arange(len(order)) - starts[c2i[order]]  # 0 for an image's first caption, 1 for its second, ...
    keep = np.sort(order[position < caps])
    return EvalCaptions(keep=keep, per_image=per_image, used=np.minimum(per_image, caps), caps=caps)
