"""Image feature extractors for image queries: which one a model needs, building it, and its feature rows.

The extractor turns a photo into the features (N, dim_image) the model's image
encoder takes; a model records which one made its training features.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from vsekit.errors import DataError, VsekitError
from vsekit.retrieval.banks import Bank

#: the package to install for an extractor a model records but this environment lacks
EXTRACTOR_PACKAGES = {"efficientnet_lite0": "vsekit-efficientnet"}


def extractor_table(meta: dict[str, Any] | None, dim_image: int, name: str | None = None,
                    bank: Bank | None = None) -> dict[str, Any]:
    """Which image feature extractor turns a photo into this model's features.

    In order: ``name``; what the checkpoint records (``image_feature_extractor``,
    carried from the features' ``_extractor.json`` by the trainer); what the
    bank records; the spec's ``[data.features]`` unless it is ``precomputed``.
    Nothing is guessed from ``dim_image``.

    Raises:
        VsekitError: none of these names an extractor (the message asks for ``--extractor``).
    """
    if name:
        return {"type": name}
    meta = meta or {}
    candidates = [meta.get("image_feature_extractor"), bank.meta.get("image_feature_extractor") if bank else None,
                  ((meta.get("spec") or {}).get("data") or {}).get("features")]
    for table in candidates:
        if isinstance(table, dict) and table.get("type") and table.get("type") != "precomputed":
            return dict(table)
    raise VsekitError(f"this model takes {dim_image}-d image features and records no image feature extractor: "
                      f"pass --extractor NAME, the one that made its training features (`vsekit plugins` lists "
                      f"them), or query with --features FILE.npy")


def build_extractor(table: dict[str, Any]) -> Any:
    """Build an image feature extractor from a table ``{"type": NAME, ...}``."""
    from vsekit import spec as spec_mod
    from vsekit.errors import RegistryError

    name = table.get("type")
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
    """Feature rows of image files; any image that fails is a :class:`DataError` naming it."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: no such image file")
    result = extractor.extract(paths)
    ok = np.asarray(result.ok, dtype=bool)
    if not ok.all():
        bad = paths[int(np.flatnonzero(~ok)[0])]
        why = result.errors.get(bad.name) or result.errors.get(str(bad)) or "the extractor could not read it"
        more = f" (and {int((~ok).sum()) - 1} more)" if (~ok).sum() > 1 else ""
        raise DataError(f"{bad}: cannot use this image: {why}{more}")
    feats = np.asarray(result.features, dtype=np.float32)
    if dim_image is not None and (feats.ndim != 2 or feats.shape[1] != dim_image):
        raise DataError(f"the image feature extractor gives {feats.shape[-1]}-d features, but the model takes "
                        f"{dim_image}-d: pass --extractor with the extractor the model was trained on")
    return feats


def extract_images(extractor: Any, images: Sequence[Any], dim_image: int | None = None) -> np.ndarray:
    """Feature rows (N, dim_image) float32 of images held in memory: encoded file bytes (as uploaded) or PIL
    images. Each is written to a temporary folder of its own (bytes as they are, a PIL image as PNG) for the
    extractor, which reads files, and removed after.

    Raises:
        DataError: an image the extractor cannot use, named ``image-N`` (1-based) with the extractor's reason.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vsekit-images-") as tmp:
        paths = []
        for i, im in enumerate(images, 1):
            p = Path(tmp) / f"image-{i}"
            if isinstance(im, (bytes, bytearray, memoryview)):
                p.write_bytes(bytes(im))
            else:
                p = p.with_suffix(".png")
                im.save(p, format="PNG", compress_level=1)
            paths.append(p)
        try:
            return extract_features(extractor, paths, dim_image)
        except DataError as exc:
            raise DataError(str(exc).replace(tmp + "/", "")) from None
