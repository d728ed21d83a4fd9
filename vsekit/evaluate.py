"""Evaluation of a joint model on a split (:func:`evaluate_split`) and the results table.

``encode_sentences`` / ``encode_images`` live in :mod:`vsekit.model` (importing them from here still works,
with a ``DeprecationWarning``); ``evalrank`` is :func:`vsekit.api.evalrank`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from vsekit import model as model_mod
from vsekit.data.readers import Split
from vsekit.errors import DataError, ProtocolError
from vsekit.metrics import EVAL_CAPS_PER_IMAGE, EvalCaptions, check_folds, check_ties, eval_captions, input_warnings
from vsekit.model import JointModel

log = logging.getLogger(__name__)

COLUMNS = ("i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "rsum")
HEADERS = ("aR@1", "aR@5", "aR@10", "aMedr", "sR@1", "sR@5", "sR@10", "sMedr", "rsum")


COCO_5K_IMAGES = 5000
"""The size of COCO's Karpathy test split: evaluated as "5K" (the whole split) and "1K" (5 folds of 1,000)."""

COCO_1K_FOLDS = 5
"""The folds of COCO "1K": the mean over 5 consecutive folds of 1,000 images."""


def is_coco_data(data: Any) -> bool:
    """Whether ``data`` names MS COCO: the preset name ``"coco"``, a ``[data]`` table (or spec component, or
    reader) of ``type = "coco"``, with ``name = "coco"`` (the ``coco`` preset's precomp folder), or reading a
    Karpathy ``dataset_coco.json``."""
    if isinstance(data, str):
        return data == "coco"
    if hasattr(data, "to_dict") and hasattr(data, "type"):  # a spec component
        data = data.to_dict()
    if isinstance(data, dict):
        table = data
    elif getattr(data, "config", None) is not None and attrs.has(type(data.config)):  # a reader
        from vsekit import registry

        readers = registry.registry("dataset_reader")
        if "coco" in readers and type(data) is readers.get("coco"):
            return True
        table = attrs.asdict(data.config, recurse=False)
    else:
        return False
    json_file = str(table.get("json") or "").replace("\\", "/").rsplit("/", 1)[-1]
    return table.get("type") == "coco" or table.get("name") == "coco" or json_file == "dataset_coco.json"


def wants_coco_rows(setting: bool | None, data: Any, n_images: int) -> bool:
    """The rule for reporting COCO 1K and 5K together: ``setting`` (``[eval] coco_1k_and_5k``) when it is
    True or False; unset (None), when ``data`` is COCO (:func:`is_coco_data`) and the split holds exactly
    :data:`COCO_5K_IMAGES` images."""
    if setting is not None:
        return bool(setting)
    return n_images == COCO_5K_IMAGES and is_coco_data(data)


def protocol_captions(split: Split, *, strict: bool = False) -> EvalCaptions:
    """The captions an evaluation of ``split`` ranks: each image's first ``min(n, EVAL_CAPS_PER_IMAGE)``.

    Raises:
        ProtocolError: ``strict`` and some image has fewer than :data:`EVAL_CAPS_PER_IMAGE` captions.
    """
    ec = eval_captions(split.cap2img, split.n_images, EVAL_CAPS_PER_IMAGE)
    if strict and ec.images_with_fewer:
        raise ProtocolError(
            f"{split.source or split.name}: {ec.images_with_fewer} of {split.n_images} images of split "
            f"{split.name!r} have fewer than {EVAL_CAPS_PER_IMAGE} captions (fewest: {int(ec.per_image.min())}); "
            f"the strict protocol (--strict-protocol, [eval] strict_protocol) evaluates {EVAL_CAPS_PER_IMAGE} "
            f"captions per image")
    return ec


def protocol_warnings(split: Split, ec: EvalCaptions) -> list[str]:
    """One sentence when some images of ``split`` have fewer than :data:`EVAL_CAPS_PER_IMAGE` captions."""
    if not ec.images_with_fewer:
        return []
    return [f"{split.name}: {ec.images_with_fewer} of {split.n_images} images have fewer than {ec.caps} captions "
            f"(fewest: {int(ec.per_image.min())}); they are evaluated with the captions they have, while the "
            f"field's protocol ranks {ec.caps} per image (--strict-protocol refuses such a split)"]


def _metric_values(metric: Any, embedded: tuple[Any, Any, Any], folds: int | None, ties: str,
                   coco: bool) -> dict[str, Any]:
    """The metric on ``(images, captions, cap2img)``, plus ``"1k"`` (5-fold mean) and ``"5k"`` (the whole
    split) with ``coco``, reusing the first result where it is one of them."""
    # A metric written before tie rules existed takes no ``ties``; it is passed only when not the default.
    extra = {} if ties == "pessimistic" else {"ties": ties}

    def compute(f: int | None) -> dict[str, Any]:
        return dict(metric.compute(*embedded, folds=f, **extra))

    out = compute(folds)
    if coco:
        n_folds = folds or 1
        out["1k"], out["5k"] = (dict(out) if n_folds == COCO_1K_FOLDS else compute(COCO_1K_FOLDS),
                                dict(out) if n_folds == 1 else compute(None))
    return out


def _all_warnings(split: Split, ec: EvalCaptions, ims: Any) -> list[str]:
    """The protocol's warning, then those about the features (or, when they are good, the embeddings)."""
    # region features (N, K, dim) are not read whole for these checks: the embeddings' checks stand in
    found = input_warnings(split.images, f"{split.name} image features") if split.images.ndim == 2 else []
    if not found:  # good features, but does the model tell the images apart?
        found = input_warnings(ims, f"{split.name} image embeddings", tiny=False)
    return protocol_warnings(split, ec) + found


def _models_for(model: JointModel | Sequence[JointModel], split: Split) -> list[JointModel]:
    """The model(s) as a list, each checked against the split's features before anything is encoded."""
    models = list(model) if isinstance(model, Sequence) else [model]
    if not models:
        raise ProtocolError("an ensemble needs at least one model")
    for m in models:
        if split.dim_image != m.dim_image:
            raise DataError(f"{split.source}: {split.dim_image}-d image features, but the model expects "
                            f"{m.dim_image}-d")
    return models


def ensemble_embeddings(models: Sequence[JointModel], split: Split, captions: Sequence[str], *,
                        verbose: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The image (N, D) and caption (M, D) float32 unit rows whose dot products are the mean of the models'
    cosine similarity matrices: each model's unit embeddings, concatenated and scaled by ``1 / sqrt(len(models))``
    (``D`` is the sum of the models' ``dim``). One model: its own embeddings.

    Ensembling thus goes through the one ranking code, with its tie rule and folds. Raises
    :class:`~vsekit.errors.DataError` when a model does not take the split's features.
    """
    ims, caps = [], []
    for m in _models_for(models, split):
        ims.append(model_mod.encode_images(m, split.images, verbose=verbose))
        caps.append(model_mod.encode_sentences(m, list(captions), verbose=verbose))
    if len(models) == 1:
        return ims[0], caps[0]
    scale = np.float32(1.0 / math.sqrt(len(models)))
    return np.concatenate(ims, axis=1) * scale, np.concatenate(caps, axis=1) * scale


def evaluate_split(model: JointModel | Sequence[JointModel], split: Split, metric: Any = None,
                   folds: int | None = None, *,
                   verbose: bool = False, ties: str = "pessimistic", log_warnings: bool = True,
                   strict_protocol: bool = False, coco_1k_and_5k: bool | None = None,
                   data: Any = None) -> dict[str, Any]:
    """Encode a split and compute the metric (``recall`` by default), with the protocol and any warnings.

    Every evaluation (dev validation, the final table, ``vsekit eval``, ``evalrank``) goes through here. It
    ranks each image's first ``min(n, EVAL_CAPS_PER_IMAGE)`` captions in the split's order
    (:func:`protocol_captions`); an image with fewer is evaluated with what it has and warned about.

    Args:
        model: the joint model, or a list of models: their ensemble, whose similarity of an image and a caption
            is the mean of the models' cosine similarities (:func:`ensemble_embeddings`).
        split: the split; its ``(N, dim_image)`` features and the captions used are encoded.
        metric: a :class:`~vsekit.metrics.Metric` (default: ``recall`` with K = 1, 5, 10).
        folds: ``None`` or the number of equal folds (COCO 5-fold 1K); a fold holds >= 10 images.
        verbose: progress bars while encoding.
        ties: the tie rule (``"pessimistic"``, the default, or ``"reference"``); see
            :mod:`vsekit.metrics`. Model selection always uses the default.
        log_warnings: also log each warning (the result holds them either way).
        strict_protocol: refuse a split with an image of fewer than 5 captions.
        coco_1k_and_5k: also report COCO 1K (mean of 5 folds) and 5K (the whole split) as ``"1k"`` and
            ``"5k"``; None: when :func:`wants_coco_rows` says so for ``data``.
        data: what the split was read from (a ``[data]`` table, a reader, a preset name), for that rule.

    Returns:
        The metric's values (R@K in %, 1-based median / mean ranks, ``rsum``; with ``folds`` the fold mean),
        plus ``"protocol"`` (``ties``, ``folds``, ``n_images``, ``n_captions``, ``caps_per_image`` as min/max
        in the split, ``caps_per_image_eval``, ``n_captions_eval``, ``images_with_fewer``,
        ``captions_dropped``, ``coco_1k_and_5k``), ``"warnings"`` (sentences about inputs that make the table
        meaningless or depart from the protocol) and, with the COCO rows, ``"1k"`` and ``"5k"`` (metric dicts;
        ``"1k"`` holds its per-fold dicts under ``"folds"``).

    Raises:
        DataError: the features do not fit the model. ProtocolError: bad ``folds`` or ``ties``, or (strict)
            an image with fewer than 5 captions, before anything is encoded.
    """
    if metric is None:
        from vsekit.metrics import RecallMetric

        metric = RecallMetric(RecallMetric.Config())
    models = _models_for(model, split)
    n_folds = check_folds(folds, split.n_images)
    coco = wants_coco_rows(coco_1k_and_5k, data, split.n_images)
    check_folds(COCO_1K_FOLDS if coco else None, split.n_images)
    check_ties(ties)
    ec = protocol_captions(split, strict=strict_protocol)
    ims, caps = ensemble_embeddings(models, split, [split.captions[i] for i in ec.keep], verbose=verbose)
    out = _metric_values(metric, (ims, caps, split.cap2img[ec.keep]), folds, ties, coco)
    found = _all_warnings(split, ec, ims)
    if log_warnings:
        for w in found:
            log.warning(w)
    out["protocol"] = {"ties": ties, "folds": n_folds, "n_images": split.n_images, "n_captions": len(split.captions),
                       "caps_per_image": {"min": int(ec.per_image.min()), "max": int(ec.per_image.max())},
                       **ec.record(), "coco_1k_and_5k": coco,
                       **({"ensemble": len(models)} if len(models) > 1 else {})}
    out["warnings"] = found
    return out


def table_rows(label: str, m: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The rows :func:`format_table` shows for one result: ``{label: m}``, or with the COCO rows
    ``{"LABEL 1K (5-fold mean)": m["1k"], "LABEL 5K": m["5k"]}`` (sizes written as the split's)."""
    if "1k" not in m or "5k" not in m:
        return {label: m}
    n = m.get("protocol", {}).get("n_images", COCO_5K_IMAGES)

    def size(k: int) -> str:
        return f"{k // 1000}K" if k % 1000 == 0 else str(k)

    return {f"{label} {size(n // COCO_1K_FOLDS)} ({COCO_1K_FOLDS}-fold mean)".strip(): m["1k"],
            f"{label} {size(n)}".strip(): m["5k"]}


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
