"""Per-view training features: several feature rows per training image (crops, mirrors), one drawn per epoch.

A view file is a feature file ``vsekit extract`` wrote (``X_ims.npy`` with its ids file ``X_ids.txt``), e.g.
EfficientNet-Lite0's mirrored centre crop (``--set ten_crop=true --set view=9``). Its rows are matched to
the split's images by image id (file name), so it may hold the images in any order and others besides.
The split's own rows are view 0. Training draws one view per image each epoch (:func:`draw_views`),
the same draws for the same seed and epoch (so a resumed run draws what an uninterrupted one did);
evaluation always uses the split's own rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vsekit.errors import DataError
from vsekit.image.precomputed import PrecomputedFeatures
from vsekit.image.records import check_recorded_rows, ids_path

__all__ = ["draw_views", "read_views"]

#: mixed into the epoch's seed so that the view draws do not repeat the batch order's random stream
_VIEW_STREAM = 0x76696577


def read_views(images: np.ndarray, image_ids: Sequence[str], files: Sequence[str | Path],
               where: str) -> np.ndarray:
    """The views (N, 1 + len(files), dim) float32 of the N images: ``images`` (N, dim), then each view file's
    row of the same image id.

    Args:
        images: the split's own rows (N, dim), view 0.
        image_ids: the N images' ids (file names), as the view files' ids files name them.
        files: view feature files (``.npy`` with ``vsekit extract``'s ids file beside each).
        where: the split's ids file, for messages.

    Raises:
        DataError: a view file without its ids file, with another width or an id twice, with rows that no
            longer match the checksum recorded for them, or without a row for one of the images (the message
            names the first missing id and how many are missing).
    """
    if images.ndim != 2:
        raise DataError(f"{where}: train_views needs one feature row per image, not {images.ndim}-D features")
    out = np.empty((len(images), 1 + len(files), images.shape[1]), dtype=np.float32)
    out[:, 0] = images
    for v, name in enumerate(files, start=1):
        path = Path(name)
        ids_file = ids_path(path)
        if not ids_file.is_file():
            raise DataError(f"{path}: no ids file {ids_file.name} beside it: a view file is matched to the images "
                            f"by id (vsekit extract writes one)")
        check_recorded_rows(path)
        # rows looked up by file name as [data.features] precomputed does (ids and rows counted, ids unique)
        pair = PrecomputedFeatures.Config(features=str(path), ids=str(ids_file))
        got = PrecomputedFeatures(pair).extract(list(image_ids))
        if not got.ok.all():
            missing = [i for i, ok in zip(image_ids, got.ok, strict=True) if not ok]
            raise DataError(f"{path}: no row for {len(missing)} of the {len(image_ids)} images of {where}, the first "
                            f"{missing[0]!r}: extract this view for every training image")
        if got.features.shape[1] != images.shape[1]:
            raise DataError(f"{path}: {got.features.shape[1]}-d rows, but the split's features ({where}) are "
                            f"{images.shape[1]}-d")
        out[:, v] = got.features
    return out


def draw_views(n_images: int, n_views: int, seed: int, epoch: int) -> np.ndarray:
    """The view (0..n_views-1) of each of ``n_images`` images for ``epoch`` (0-based): (n_images,) int64,
    uniform, a function of (``seed``, ``epoch``) only."""
    rng = np.random.default_rng([seed, epoch, _VIEW_STREAM])
    return rng.integers(0, n_views, size=n_images)
