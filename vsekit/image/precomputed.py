"""The ``precomputed`` image feature extractor: looks image rows up by file name in ``.npy`` files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from vsekit.config import embedded_path, path_field
from vsekit.errors import DataError
from vsekit.image.base import Extracted, ImageFeatureExtractor
from vsekit.image.cache import feature_keys
from vsekit.image.records import ids_path
from vsekit.io import load_feature_rows, read_lines


class PrecomputedFeatures(ImageFeatureExtractor):
    """Features computed elsewhere: pairs of ``X_ims.npy`` (one row per image) and ``X_ids.txt``.

    Give ``dir`` (every ``*_ims.npy`` with a matching ``*_ids.txt`` in it is
    used, as in ``flickr8k-effnet-lite0``), or ``features`` and ``ids``
    naming one pair. Images are matched by file name.
    """

    @attrs.frozen
    class Config:
        dir: str | None = path_field(None)
        features: str | None = path_field(None)
        ids: str | None = path_field(None)

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._table: dict[str, tuple[np.ndarray, int]] | None = None
        self._files: list[Path] = []
        self._dim: int | None = None

    def pairs(self) -> list[tuple[Path, Path]]:
        """The (features ``.npy``, ids ``.txt``) file pairs the config names.

        Raises:
            DataError: only one of ``features`` and ``ids`` given, neither those nor ``dir``, ``dir``
                missing, or no ``*_ims.npy`` in it with a matching ``*_ids.txt``.
        """
        c = self.config
        if c.features or c.ids:
            if not (c.features and c.ids):
                raise DataError("[data.features] precomputed: give both 'features' and 'ids', or 'dir'")
            return [(Path(c.features), Path(c.ids))]
        if not c.dir:
            raise DataError("[data.features] precomputed: give 'dir', or 'features' and 'ids'")
        root = embedded_path(c.dir)
        if not root.is_dir():
            raise DataError(f"{root}: no such features folder")
        pairs = [(p, ids_path(p)) for p in sorted(root.glob("*_ims.npy"))]
        pairs = [(f, i) for f, i in pairs if i.exists()]
        if not pairs:
            raise DataError(f"{root}: no '*_ims.npy' file with a matching '*_ids.txt'")
        return pairs

    def check(self) -> list[str]:
        """Messages for missing files, or the config problem :meth:`pairs` raises; [] when all is there."""
        try:
            return [f"{p}: no such file" for pair in self.pairs() for p in pair if not p.exists()]
        except DataError as exc:
            return [str(exc)]

    def _load(self) -> dict[str, tuple[np.ndarray, int]]:
        if self._table is None:
            table: dict[str, tuple[np.ndarray, int]] = {}
            for feats_path, ids_file in self.pairs():
                feats = load_feature_rows(feats_path)
                ids = [line.strip() for line in read_lines(ids_file, "image id")]
                if len(ids) != len(feats):
                    raise DataError(f"{ids_file} has {len(ids)} ids but {feats_path} has {len(feats)} rows")
                if self._dim is not None and feats.shape[1] != self._dim:
                    raise DataError(f"{feats_path}: {feats.shape[1]}-d features, but other files are {self._dim}-d")
                self._dim = int(feats.shape[1])
                for row, name in enumerate(ids):
                    if name in table:
                        raise DataError(f"{ids_file}: image id {name!r} appears twice")
                    table[name] = (feats, row)
                self._files += [feats_path, ids_file]
            self._table = table
        return self._table

    @property
    def dim(self) -> int | None:
        """The feature width, from the files (read on first use; raises as :meth:`extract`)."""
        self._load()
        return self._dim

    def extract(self, paths: Sequence[str | Path]) -> Extracted:
        """The rows for ``paths``, matched by file name (the files are read on first use).

        ``features`` is (n_found, dim) float32 in the order of ``paths``; an image not
        in the files is not ``ok``, with the error ``"no precomputed features"``.

        Raises:
            DataError: the config or files are wrong (see :meth:`pairs`), ids and rows disagree in number,
                the files differ in width, an image id appears twice, or two of ``paths`` have one file name
                (:func:`vsekit.image.cache.feature_keys`).
        """
        table = self._load()
        names = feature_keys(paths, "[data.features] precomputed")
        ok = np.array([n in table for n in names], dtype=bool)
        rows = [table[n] for n in names if n in table]
        if rows:
            feats = np.stack([f[r] for f, r in rows]).astype(np.float32)
        else:
            feats = np.zeros((0, self._dim or 0), np.float32)
        errors = {n: "no precomputed features" for n, good in zip(names, ok, strict=True) if not good}
        return Extracted(feats, ok, errors, list(self._files))
