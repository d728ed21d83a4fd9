"""Dataset readers: the :class:`Split`, the :class:`DatasetReader` base and ``precomp`` (the reference's folder layout).

The readers of captions + image files (``csv``, ``flickr8k``, ``karpathy``, ``coco``) live in
:mod:`vsekit.data.captioned` and the modules beside it.

A reader turns a split name into a :class:`Split`: caption texts (strings,
never token lists: the model's tokenizer splits them), one feature row per
image, and the caption -> image map. Line files are read by
:func:`vsekit.io.read_lines` (one rule for every line file). Readers refuse
inconsistent data with a :class:`~vsekit.errors.DataError` naming the file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np

from vsekit.config import EMBEDDED_ROOT, embedded_path, path_field, positive
from vsekit.data.views import read_views
from vsekit.errors import DataError
from vsekit.image.records import check_recorded_rows, ids_path
from vsekit.io import collapse_repeated_rows, load_feature_rows, nonfinite_rows, npy_problem, read_lines

log = logging.getLogger(__name__)

__all__ = ["EMBEDDED_ROOT", "DatasetReader", "PrecompReader", "Split", "embedded_path"]


@attrs.define
class Split:
    """One split: caption texts (strings, never token lists), image features (one row per image),
    caption -> image map.

    ``images`` is (N, dim_image) float32 in memory, or (N, K, dim_image) region features (K per image),
    kept as given (a read-only ``np.memmap`` from the readers, dtype as stored; converted to float32 a
    batch at a time by whoever reads rows)."""

    name: str
    captions: list[str]
    images: np.ndarray
    cap2img: np.ndarray
    image_ids: list[str] | None = None
    files: list[Path] = attrs.Factory(list)
    report: dict[str, Any] = attrs.Factory(dict)
    source: str = ""
    #: (N, V, dim_image) float32 views of each image for training (view 0: ``images``), or None
    #: (:mod:`vsekit.data.views`); training draws one per image each epoch, evaluation uses ``images``
    views: np.ndarray | None = None
    #: the files ``views`` 1.. were read from (hashed into provenance; they do not set the model's extractor)
    view_files: list[Path] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        if np.ndim(self.images) != 3:
            self.images = np.ascontiguousarray(self.images, dtype=np.float32)
        elif not np.issubdtype(self.images.dtype, np.floating):
            self.images = np.asarray(self.images, dtype=np.float32)
        self.cap2img = np.asarray(self.cap2img, dtype=np.int64)
        where = self.source or self.name
        if self.images.ndim not in (2, 3) or len(self.images) == 0:
            raise DataError(f"{where}: expected a non-empty 2-D (images, dim) or 3-D (images, regions, dim) "
                            f"feature array, got shape {self.images.shape}")
        if len(self.captions) == 0:
            raise DataError(f"{where}: no captions")
        bad_text = next((i for i, c in enumerate(self.captions) if not isinstance(c, str)), None)
        if bad_text is not None:
            raise DataError(f"{where}: caption {bad_text} is a {type(self.captions[bad_text]).__name__}, expected text "
                            f"(a reader returns caption strings; the model's tokenizer splits them)")
        if len(self.cap2img) != len(self.captions):
            raise DataError(f"{where}: {len(self.captions)} captions but {len(self.cap2img)} caption->image entries")
        if self.cap2img.min() < 0 or self.cap2img.max() >= len(self.images):
            raise DataError(f"{where}: a caption points at an image outside 0..{len(self.images) - 1}")
        if self.views is not None and (self.views.ndim != 3 or self.views.shape[0] != len(self.images)
                                       or self.views.shape[2:] != self.images.shape[1:]):
            raise DataError(f"{where}: views of shape {self.views.shape} do not fit the features "
                            f"{self.images.shape}: expected ({len(self.images)}, V, {self.images.shape[-1]})")
        rows = nonfinite_rows(self.images)
        if len(rows):
            raise DataError(f"{where}: image features have NaN or inf in {len(rows)} row(s), first row {int(rows[0])}")

    @property
    def n_images(self) -> int:
        """The number of images N (rows of ``images``)."""
        return len(self.images)

    @property
    def dim_image(self) -> int:
        """The width of the image features (the last axis of ``images``)."""
        return int(self.images.shape[-1])

    def subset(self, n_images: int) -> Split:
        """The first ``n_images`` images and their captions."""
        keep = self.cap2img < n_images
        return Split(self.name, [c for c, k in zip(self.captions, keep, strict=True) if k], self.images[:n_images],
                     self.cap2img[keep], self.image_ids[:n_images] if self.image_ids else None,
                     list(self.files), dict(self.report), self.source,
                     None if self.views is None else self.views[:n_images], list(self.view_files))


class DatasetReader:
    """Base class of dataset readers. Subclasses define a frozen attrs ``Config`` and :meth:`read`."""

    @attrs.frozen
    class Config:
        pass

    splits: ClassVar[tuple[str, ...]] = ("train", "dev", "test")

    def __init__(self, config: Any) -> None:
        self.config = config

    def read(self, split: str) -> Split:  # pragma: no cover - interface
        """The split named ``split`` (one of :attr:`splits`).

        Returns a :class:`Split`: captions (M,) text, images (N, dim_image) float32,
        ``cap2img`` (M,) int64 0-based image row of each caption.

        Raises:
            DataError: an unknown split, or files that are missing, unreadable or inconsistent.
        """
        raise NotImplementedError

    def check(self) -> list[str]:
        """Problems visible without reading everything (missing files); used by ``vsekit validate``."""
        return []

    def _unknown_split(self, split: str) -> DataError:
        return DataError(f"unknown split {split!r} — known: {', '.join(self.splits)}")


# --------------------------------------------------------------------------
# precomp


class PrecompReader(DatasetReader):
    """The reference layout: ``[NAME_]SPLIT_caps.txt`` + ``[NAME_]SPLIT_ims.npy`` in one folder.

    The feature file holds one row per image (captions 5i..5i+4 belong to
    image i) or one row per caption (each image row repeated 5 times, as the
    reference's files are); which one is detected from the counts.
    """

    @attrs.frozen
    class Config:
        dir: str = path_field(validator=attrs.validators.instance_of(str))
        name: str | None = None
        caps_per_image: int = attrs.field(default=5, validator=positive())
        #: feature files of other views of the train images (``vsekit extract`` output, with ids), matched by
        #: the ids in ``train_ids.txt``; training draws one view per image each epoch (:mod:`vsekit.data.views`)
        train_views: tuple[str, ...] = path_field(())

    def _root(self) -> Path:
        return embedded_path(self.config.dir)

    def paths(self, split: str) -> tuple[Path, Path]:
        """The (captions ``.txt``, features ``.npy``) paths of ``split``.

        Without ``name``, when ``SPLIT_caps.txt`` is absent and the folder holds exactly
        one ``*_SPLIT_caps.txt``, that prefix is used.
        """
        root = self._root()
        prefix = f"{self.config.name}_" if self.config.name else ""
        caps, ims = root / f"{prefix}{split}_caps.txt", root / f"{prefix}{split}_ims.npy"
        if not self.config.name and not caps.exists():
            found = sorted(root.glob(f"*_{split}_caps.txt"))
            if len(found) == 1:
                stem = found[0].name[: -len("_caps.txt")]
                caps, ims = root / f"{stem}_caps.txt", root / f"{stem}_ims.npy"
        return caps, ims

    def check(self) -> list[str]:
        """``'PATH: no such file'`` for each missing train/dev/test file, or the missing folder, and what is wrong
        with each feature file's ``.npy`` header (:func:`vsekit.io.npy_problem`) or its recorded sha256; [] if
        nothing."""
        root = self._root()
        if not root.is_dir():
            return [f"{root}: no such folder"]
        problems = [f"{p}: no such file" for s in ("train", "dev", "test") for p in self.paths(s) if not p.exists()]
        for ims in (self.paths(s)[1] for s in ("train", "dev", "test")):
            if ims.exists() and (bad := npy_problem(ims)):
                problems.append(bad)
            elif ims.exists():
                try:
                    check_recorded_rows(ims)
                except DataError as exc:
                    problems.append(str(exc))
        for view in map(Path, self.config.train_views):
            if not view.is_file():
                problems.append(f"{view}: no such file (train_views)")
            elif bad := npy_problem(view):
                problems.append(bad)
            elif not ids_path(view).is_file():
                problems.append(f"{view}: no ids file {ids_path(view).name} beside it (train_views are matched by id)")
        return problems

    def read(self, split: str) -> Split:
        """The split from ``SPLIT_caps.txt`` (a caption a line) and ``SPLIT_ims.npy``.

        Images are (N, dim_image) float32, one row per image (a row-per-caption file
        is collapsed); caption i belongs to image ``i // caps_per_image`` (the option ``caps_per_image``,
        default 5; ``caps_per_image = 1`` for a folder with one caption per image). A 3-D file of region
        features (N, K, dim_image) is memory-mapped, dtype as stored (see :class:`Split`).

        Raises:
            DataError: an unknown split, a missing folder or file, features that are not the file their
                ``_extractor.json`` records, or caption and row counts that fit neither layout with this
                ``caps_per_image`` (the message names the value that fits, if one does).
        """
        if split not in self.splits:
            raise self._unknown_split(split)
        root = self._root()
        if not root.is_dir():
            raise DataError(f"{root}: no such dataset folder")
        caps_path, ims_path = self.paths(split)
        captions = read_lines(caps_path, "caption")
        check_recorded_rows(ims_path)  # rows vsekit extract recorded a checksum for are still those rows
        feats = load_feature_rows(ims_path, regions=True)
        k = self.config.caps_per_image
        n_caps, n_rows = len(captions), len(feats)
        one_each = "; with one caption per image set caps_per_image = 1 in [data]"
        if n_rows == n_caps and k > 1:
            images, layout = collapse_repeated_rows(feats, k, ims_path, suffix=one_each), "row-per-caption"
        elif n_caps == k * n_rows:
            images, layout = feats, "row-per-image"
        else:
            fits = (f"caps_per_image = {n_caps // n_rows} in [data] fits these counts" if n_rows and not
                    n_caps % n_rows else "no caps_per_image fits these counts (captions must be a multiple of rows)")
            raise DataError(
                f"{caps_path} has {n_caps} captions but {ims_path} has {n_rows} feature rows: expected "
                f"caps_per_image = {k} captions per row (one row per image) or 1 (one row per caption); {fits}"
            )
        cap2img = np.arange(n_caps, dtype=np.int64) // k
        views, files = None, [caps_path, ims_path]
        if split == "train" and self.config.train_views:
            ids_file = ids_path(ims_path)  # SPLIT_ims.npy -> SPLIT_ids.txt
            if not ids_file.is_file():
                raise DataError(f"{ids_file}: no such file: train_views are matched to the train images by the "
                                f"ids in it (one image file name a line, in {ims_path.name}'s row order)")
            ids = read_lines(ids_file, "image id")
            if len(ids) != len(images):
                raise DataError(f"{ids_file}: {len(ids)} ids for the {len(images)} images of {ims_path}")
            views = read_views(np.asarray(images, dtype=np.float32), ids, self.config.train_views, str(ids_file))
            files.append(ids_file)
        return Split(split, captions, images, cap2img, files=files, views=views,
                     view_files=[Path(v) for v in self.config.train_views] if views is not None else [],
                     report={"layout": layout, **({"views": views.shape[1]} if views is not None else {})},
                     source=str(ims_path))
