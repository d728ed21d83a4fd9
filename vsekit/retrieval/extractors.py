"""Image feature extractors for image queries: which one a model needs, building it, and its feature rows.

The concept lives in :mod:`vsekit.image_features` (layer 5, so that
:meth:`vsekit.model.JointModel.encode_images` uses the same code as
``vsekit retrieve --image``); this module keeps the retrieval names.
"""

from __future__ import annotations

from vsekit.image_features import (
    EXTRACTOR_PACKAGES,
    build_extractor,
    extract_features,
    extractor_table,
    image_rows,
)

__all__ = ["EXTRACTOR_PACKAGES", "build_extractor", "extract_features", "extractor_table", "image_rows"]
