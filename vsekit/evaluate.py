"""Evaluation of a joint model on a split (:func:`evaluate_split`) and the results table.

``encode_sentences`` / ``encode_images`` live in :mod:`vsekit.model` (importing them from here still works,
with a ``DeprecationWarning``); ``evalrank`` is :func:`vsekit.api.evalrank`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from vsekit import model as model_mod
from vsekit.data.readers import Split
from vsekit.metrics import check_folds, check_ties, input_warnings
from vsekit.model import JointModel

log = logging.getLogger(__name__)

COLUMNS = ("i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "rsum")
HEADERS = ("aR@1", "aR@5", "aR@10", "aMedr", "sR@1", "sR@5", "sR@10", "sMedr", "rsum")


def evaluate_split(model: JointModel, split: Split, metric: Any = None, folds: int | None = None, *,
                   verbose: bool = False, ties: str = "pessimistic", log_warnings: bool = True) -> dict[str, Any]:
    """Encode a split and compute the metric (``recall`` by default), with the protocol and any warnings.

    Args:
        model: the joint model.
        split: the split; its ``(N, dim_image)`` features and captions are encoded.
        metric: a :class:`~vsekit.metrics.Metric` (default: ``recall`` with K = 1, 5, 10).
        folds: ``None`` or the number of equal folds (COCO 5-fold 1K); a fold holds >= 10 images.
        verbose: progress bars while encoding.
        ties: the tie rule (``"pessimistic"``, the default, or ``"reference"``); see
            :mod:`vsekit.metrics`. Model selection always uses the default.
        log_warnings: also log each warning (the result holds them either way).

    Returns:
        The metric's values (R@K in %, 1-based median / mean ranks, ``rsum``), plus ``"protocol"``
        (``ties``, ``folds``, ``n_images``, ``n_captions``, ``caps_per_image`` as min/max) and
        ``"warnings"`` (sentences about inputs that make the table meaningless: a tiny split, all-zero,
        constant or repeated feature rows, image embeddings the model collapsed).

    Raises:
        DataError: the features do not fit the model. ProtocolError: bad ``folds`` or ``ties``,
            before anything is encoded.
    """
    if metric is None:
        from vsekit.metrics import RecallMetric

        metric = RecallMetric(RecallMetric.Config())
    if split.dim_image != model.dim_image:
        from vsekit.errors import DataError

        raise DataError(f"{split.source}: {split.dim_image}-d image features, "
                        f"but the model expects {model.dim_image}-d")
    n_folds = check_folds(folds, split.n_images)
    check_ties(ties)
    ims = model_mod.encode_images(model, split.images, verbose=verbose)
    caps = model_mod.encode_sentences(model, split.captions, verbose=verbose)
    # A metric written before tie rules existed takes no ``ties``; it is passed only when not the default.
    extra = {} if ties == "pessimistic" else {"ties": ties}
    out = dict(metric.compute(ims, caps, split.cap2img, folds=folds, **extra))
    # region features (N, K, dim) are not read whole for these checks: the embeddings' checks stand in
    found = input_warnings(split.images, f"{split.name} image features") if split.images.ndim == 2 else []
    if not found:  # good features, but does the model tell the images apart?
        found = input_warnings(ims, f"{split.name} image embeddings", tiny=False)
    if log_warnings:
        for w in found:
            log.warning(w)
    per_image = np.bincount(split.cap2img, minlength=split.n_images)
    out["protocol"] = {"ties": ties, "folds": n_folds, "n_images": split.n_images, "n_captions": len(split.captions),
                       "caps_per_image": {"min": int(per_image.min()), "max": int(per_image.max())}}
    out["warnings"] = found
    return out


def scalar_metrics(m: dict[str, Any]) -> dict[str, Any]:
    """The plain numbers of a result of :func:`evaluate_split` (no folds, protocol or warnings): a log line."""
    return {k: v for k, v in m.items() if not isinstance(v, (list, dict))}


def reference_lines(m: dict[str, Any]) -> str:
    """The reference's two printed lines (R@1, R@5, R@10, medr)."""
    return (f"Image to text: {m['i2t_r1']:.1f}, {m['i2t_r5']:.1f}, {m['i2t_r10']:.1f}, {m['i2t_medr']:.1f}\n"
            f"Text to image: {m['t2i_r1']:.1f}, {m['t2i_r5']:.1f}, {m['t2i_r10']:.1f}, {m['t2i_medr']:.1f}")


def format_table(rows: dict[str, dict[str, Any]] | dict[str, Any], std: dict[str, Any] | None = None) -> str:
    """A fixed-width table of the paper's columns; ``rows`` maps a label to metrics (or is one metrics dict)."""
    if "rsum" in rows and not isinstance(rows["rsum"], dict):
        rows = {"": rows}  # type: ignore[dict-item]
    width = max([len(k) for k in rows] + [5])
    lines = [" " * width + " | " + " ".join(f"{h:>6}" for h in HEADERS[:4]) + " | " +
             " ".join(f"{h:>6}" for h in HEADERS[4:8]) + " | " + f"{HEADERS[8]:>6}"]
    for label, m in rows.items():
        cells = []
        for c in COLUMNS:
            v = m.get(c, float("nan"))
            cells.append(f"{v:6.1f}")
        lines.append(f"{label:<{width}} | " + " ".join(cells[:4]) + " | " + " ".join(cells[4:8]) + " | " + cells[8])
        if std and label in std:
            s = std[label]
            sc = [f"±{s.get(c, 0.0):5.1f}" for c in COLUMNS]
            lines.append(f"{'':<{width}} | " + " ".join(sc[:4]) + " | " + " ".join(sc[4:8]) + " | " + sc[8])
    return "\n".join(lines)


_MOVED = {"encode_sentences": "vsekit.model.encode_sentences", "encode_images": "vsekit.model.encode_images"}


def __getattr__(name: str) -> Any:
    """``encode_sentences`` / ``encode_images``, deprecated here: they moved to :mod:`vsekit.model`."""
    if name in _MOVED:
        import warnings

        warnings.warn(f"vsekit.evaluate.{name} is deprecated; use {_MOVED[name]}", DeprecationWarning, stacklevel=2)
        return getattr(model_mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
