"""Image features for a trained model: which image feature extractor it needs, building it, and the feature rows
of image files or PIL images.

The extractor turns a photo into the features (N, dim_image) the model's image
encoder takes; a model records which one made its training features. This is
the one place that goes from photos to feature rows for a model:
:meth:`vsekit.model.JointModel.encode_images`, ``vsekit retrieve --image`` and
``vsekit bank --images`` all come here (:mod:`vsekit.retrieval.extractors`
re-exports it).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vsekit.errors import DataError, VsekitError

#: the package to install for an extractor a model records but this environment lacks
EXTRACTOR_PACKAGES = {"efficientnet_lite0": "vsekit-efficientnet"}


def extractor_table(meta: dict[str, Any] | None, dim_image: int, name: str | None = None,
                    bank: Any = None) -> dict[str, Any]:
    """Which image feature extractor turns a photo into this model's features.

    In order: what the checkpoint records (``meta["image_feature_extractor"]``,
    carried from the features' ``_extractor.json`` by the trainer); what the
    ``bank`` records (anything with a ``meta`` dict: an image bank); the spec's
    (``meta["spec"]``) ``[data.features]`` unless it is ``precomputed``. A
    ``name`` picks that extractor: with the options one of these records for it
    (e.g. ``output = "trunk"``), else with its defaults. Nothing is guessed from
    ``dim_image``.

    Raises:
        VsekitError: none of these names an extractor (the message asks for ``--extractor``).
    """
    meta = meta or {}
    candidates = [meta.get("image_feature_extractor"), bank.meta.get("image_feature_extractor") if bank else None,
                  ((meta.get("spec") or {}).get("data") or {}).get("features")]
    recorded = [dict(t) for t in candidates if isinstance(t, dict) and t.get("type") not in (None, "", "precomputed")]
    if name:
        return next((t for t in recorded if t["type"] == name), {"type": name})
    if recorded:
        return recorded[0]
    raise VsekitError(f"this model takes {dim_image}-d image features and records no image feature extractor: "
                      f"pass --extractor NAME (Python: extractor=NAME), the one that made its training features "
                      f"(`vsekit plugins` lists them), or query with --features FILE.npy")


def build_extractor(table: dict[str, Any], *, trust_code: bool = True) -> Any:
    """Build an image feature extractor from a table ``{"type": NAME, ...}`` (progress bar off unless the table
    asks for it: a query is a few images); a table read from a model or bank file passes the caller's
    ``trust_code`` (see :func:`vsekit.spec.require_trust`).

    Raises:
        RegistryError: the extractor is unknown (naming the package to install when it is a known one) or its
            options are wrong.
        UntrustedCodeError: the table names code to import and ``trust_code`` is False.
    """
    import attrs

    from vsekit import spec as spec_mod
    from vsekit.errors import RegistryError

    name = table.get("type")
    spec_mod.require_trust(table, "the model's image feature extractor", trust_code=trust_code)
    try:
        component = spec_mod.build_component("image_feature_extractor", table, "extractor", Path.cwd())
        if "progress" not in table and "progress" in attrs.fields_dict(type(component.config)):
            component = attrs.evolve(component, config=attrs.evolve(component.config, progress=False))  # one query
        return component.build()
    except spec_mod.SpecProblems as exc:
        msg = "; ".join(m for _, m in exc.problems)
        if name in EXTRACTOR_PACKAGES and name not in _registered_extractors():
            msg = (f"image queries need the image feature extractor {name!r}, which is not installed: "
                   f"pip install {EXTRACTOR_PACKAGES[name]} (or pass --extractor NAME, or --features FILE.npy)")
        raise RegistryError(msg) from None


def _registered_extractors() -> list[str]:
    from vsekit import registry

    return registry.registry("image_feature_extractor").names()


def extract_features(extractor: Any, paths: Sequence[str | Path], dim_image: int | None = None) -> np.ndarray:
    """Feature rows (N, D) float32 of N image files, row i for file i.

    Raises:
        DataError: a file is missing or the extractor cannot use it (naming the first such file), or the rows
            are not ``dim_image`` wide.
    """
    paths = [Path(p) for p in paths]
    feats, ok, why = readable_features(extractor, paths, dim_image)
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        more = f" (and {int((~ok).sum()) - 1} more)" if (~ok).sum() > 1 else ""
        raise DataError(f"{paths[bad]}: cannot use this image: {why[paths[bad]]}{more}")
    return feats


def readable_features(extractor: Any, paths: Sequence[str | Path], dim_image: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray, dict[Path, str]]:
    """Feature rows of the image files the extractor can use: ``(rows (K, D) float32, ok (N,) bool, reasons)``,
    row j for the j-th file with ``ok`` True; ``reasons`` maps each other file to why (missing, unreadable).
    For a folder of photos, where one bad file should not stop the others (``vsekit bank --images``).

    Raises:
        DataError: the rows are not ``dim_image`` wide.
    """
    paths = [Path(p) for p in paths]
    why = {p: "no such image file" for p in paths if not p.is_file()}
    present = [p for p in paths if p not in why]
    result = extractor.extract(present) if present else None
    ok_present = np.asarray(result.ok, dtype=bool) if result is not None else np.zeros(0, dtype=bool)
    for p, good in zip(present, ok_present, strict=True):
        if not good:
            why[p] = result.errors.get(p.name) or result.errors.get(str(p)) or "the extractor could not read it"
    feats = np.asarray(result.features, dtype=np.float32) if result is not None and ok_present.any() \
        else np.zeros((0, dim_image or 0), dtype=np.float32)
    if dim_image is not None and len(feats) and (feats.ndim != 2 or feats.shape[1] != dim_image):
        raise DataError(f"the image feature extractor gives {feats.shape[-1]}-d features, but the model takes "
                        f"{dim_image}-d: the extractor and options its training features were made with are needed "
                        f"(a model records them when they came from vsekit extract; --extractor NAME without them "
                        f"means that extractor's defaults), or query with --features FILE.npy")
    return feats, np.array([p not in why for p in paths], dtype=bool), why


def is_pil_image(obj: Any) -> bool:
    """Whether ``obj`` is a ``PIL.Image.Image`` (without importing Pillow when it is not loaded yet)."""
    import sys

    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(obj, pil.Image)


#: what an image may be in a list of images: a file path, the file's bytes (as uploaded), or a PIL image
IMAGE_BYTES = (bytes, bytearray, memoryview)


def check_images(images: Sequence[Any]) -> None:
    """Refuse a list holding anything but image file paths (``str`` / ``Path``), file bytes and PIL images.

    Raises:
        DataError: naming the first other item's index and type.
    """
    for i, item in enumerate(images):
        if not isinstance(item, (str, Path, *IMAGE_BYTES)) and not is_pil_image(item):
            raise DataError(f"images[{i}]: expected an image file path, its bytes or a PIL image, got "
                            f"{type(item).__name__}")


def image_rows(extractor: Any, images: Sequence[Any], dim_image: int | None = None) -> np.ndarray:
    """Feature rows (N, D) float32 of N images, each an image file (``str`` / ``Path``), the bytes of one (as
    uploaded) or a ``PIL.Image.Image``.

    Bytes are written as they are, and a PIL image with its EXIF orientation applied (``PIL.ImageOps.
    exif_transpose``, as the extractor does when it opens a file) as a lossless file (PNG; TIFF for modes PNG
    cannot hold), to a temporary folder for the extractor, deleted afterwards: the same photo gives the same
    row as a file, as bytes or as an opened image. Messages name such an image ``image-N`` (1-based).

    Raises:
        DataError: an item is none of these (naming its index), or as :func:`extract_features`.
    """
    check_images(images)
    if all(isinstance(item, (str, Path)) for item in images):
        return extract_features(extractor, images, dim_image)
    with tempfile.TemporaryDirectory(prefix="vsekit-images-") as tmp:
        paths = [Path(item) if isinstance(item, (str, Path)) else _temporary_file(item, Path(tmp) / f"image-{i}")
                 for i, item in enumerate(images, 1)]
        try:
            return extract_features(extractor, paths, dim_image)
        except DataError as exc:
            raise DataError(str(exc).replace(tmp + os.sep, "")) from None


def _temporary_file(item: Any, stem: Path) -> Path:
    """Write the image ``item`` (file bytes, or a PIL image made upright) at ``stem`` (+ suffix); return it."""
    if isinstance(item, IMAGE_BYTES):
        stem.write_bytes(bytes(item))
        return stem
    from PIL import ImageOps

    im = ImageOps.exif_transpose(item)
    path = stem.with_suffix(".png")
    try:
        im.save(path, format="PNG")
    except (OSError, KeyError, ValueError):  # a mode PNG cannot hold (CMYK, ...)
        path = stem.with_suffix(".tiff")
        im.save(path, format="TIFF")
    return path
