"""The shared half of the readers of captions + image files (``csv``, ``flickr8k``, ``karpathy``, ``coco``).

A format reader lists, for a split, its images (name and file) and each image's
captions in file order (:class:`ImageCaptions`); :class:`CaptionedImagesReader`
does the rest once for every format: the ``caps_per_image`` rule, features from
the image feature extractor of ``features`` (through the ``cache`` feature file
when one is set), the report of what was left out, and the :class:`Split`.

``caps_per_image``: None (the default of the new readers) keeps every caption
of every image, in file order, and leaves out images without any caption; an
integer ``k`` keeps the first ``k`` captions of each image and leaves out images
with fewer (the ``flickr8k`` reader's rule, default 5).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from vsekit import limits
from vsekit.data.readers import DatasetReader, Split
from vsekit.errors import DataError
from vsekit.image.cache import extract_cached, feature_keys

log = logging.getLogger(__name__)

__all__ = ["CaptionedImagesReader", "ImageCaptions", "read_json", "select_captions", "split_path"]

#: The token of a path option that stands for the split name (``splits/{split}.txt``).
SPLIT_TOKEN = "{split}"


def split_path(pattern: str, split: str) -> Path:
    """``pattern`` with ``{split}`` replaced by ``split`` (``"splits/{split}.txt"`` -> ``splits/dev.txt``)."""
    return Path(pattern.replace(SPLIT_TOKEN, split))


def read_json(path: Path) -> Any:
    """The JSON document in the annotation file ``path`` (UTF-8), read through :func:`vsekit.limits.read_json`
    (at most :data:`~vsekit.limits.MAX_DATA_FILE_BYTES`, nesting bounded).

    Raises:
        DataError: naming ``path``: no such file, a folder, not UTF-8, not JSON (with line and column), too
            large or nested too deeply.
    """
    try:
        return limits.read_json(path, what="JSON file", max_bytes=limits.MAX_DATA_FILE_BYTES)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a JSON file") from None


@attrs.frozen
class ImageCaptions:
    """What a format reader lists for one split, before features.

    ``names`` (n,) image ids (file names, matched by a precomputed extractor), split order; ``paths`` (n,) the
    image files; ``captions`` (n,) each image's captions in file order (may be empty); ``files`` the files
    read; ``source`` the file that names the split (in errors and the report).
    """

    names: list[str]
    paths: list[Path]
    captions: list[list[str]]
    files: list[Path]
    source: Path


def select_captions(listing: ImageCaptions, k: int | None) -> tuple[list[int], dict[str, Any]]:
    """The images of ``listing`` that stay under the ``caps_per_image`` rule ``k``, and what the rule did.

    Returns ``(indices into listing.names, report)``. ``k`` None: every image with at least one caption;
    ``k``: images with at least ``k`` (the first ``k`` are used; the report lists images with more).
    """
    counts = [len(c) for c in listing.captions]
    need = 1 if k is None else k
    few = [n for n, c in zip(listing.names, counts, strict=True) if c < need]
    report: dict[str, Any] = {}
    if few:
        key = "without_captions" if k is None else f"fewer_than_{k}_captions"
        report[key] = few
        what = "without captions" if k is None else f"with fewer than {k} captions"
        log.warning("%s: %d image(s) %s left out, e.g. %s", listing.source, len(few), what, few[0])
    if k is not None:
        many = [n for n, c in zip(listing.names, counts, strict=True) if c > k]
        if many:
            report[f"more_than_{k}_captions_truncated"] = many
            log.warning("%s: %d image(s) with more than %d captions: the first %d used", listing.source, len(many),
                        k, k)
    return [i for i, c in enumerate(counts) if c >= need], report


class CaptionedImagesReader(DatasetReader):
    """Base of readers of captions + image files, with features from an image feature extractor.

    A subclass's ``Config`` has ``features`` (a ``component_field("image_feature_extractor")``), ``cache`` (a
    folder or None) and ``caps_per_image`` (int or None); it implements :meth:`listing` and
    :meth:`check_files`.
    """

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._extractor = None

    def listing(self, split: str) -> ImageCaptions:  # pragma: no cover - interface
        """The images of ``split`` (a known split) and their captions in file order.

        Raises:
            DataError: the files are missing or wrong, naming the file and the entry.
        """
        raise NotImplementedError

    def check_files(self) -> list[str]:  # pragma: no cover - interface
        """``'PATH: no such file'`` for each file the config names that is missing."""
        raise NotImplementedError

    def check(self) -> list[str]:
        """Missing files, a missing ``features`` table, and the extractor's own problems."""
        problems = self.check_files()
        if self.config.features is None:
            problems.append("data.features: missing: name an image feature extractor")
        else:
            problems += self.extractor.check()
        return problems

    @property
    def extractor(self) -> Any:
        """The image feature extractor built from ``config.features`` (built on first use).

        Raises:
            DataError: ``features`` is not given.
        """
        if self._extractor is None:
            if self.config.features is None:
                raise DataError("[data] features: missing: name an image feature extractor, "
                                "e.g. {type = \"precomputed\", dir = \"...\"}")
            self._extractor = self.config.features.build()
        return self._extractor

    def extractor_class(self, name: str) -> type:
        """The class an extractor type name (read from a feature file's record) resolves to, through the component
        the spec layer built for ``features`` (so that a cache made under another name of the same class is
        reused), without importing anything a data file names (RegistryError when it would)."""
        return self.config.features.loaded_class(name)

    def read(self, split: str) -> Split:
        """The split: the listed images that keep captions under ``caps_per_image`` and have features.

        Images left out are logged and listed in ``report``. Features are (N, dim_image) float32,
        through the ``cache`` feature file when one is set; ``cap2img`` (M,) int64 maps each caption
        (file order within each image, images in split order) to its image row.

        Raises:
            DataError: an unknown split, missing or wrong files, two images with one file name (features are
                looked up by it: :func:`vsekit.image.cache.feature_keys`), or no image left.
        """
        if split not in self.splits:
            raise self._unknown_split(split)
        listing = self.listing(split)
        k = self.config.caps_per_image
        keep, report = select_captions(listing, k)
        names = [listing.names[i] for i in keep]
        paths = [listing.paths[i] for i in keep]
        feature_keys(paths, str(listing.source), names)  # x/B.jpg and y/B.jpg would share a row: refused
        if self.config.cache:
            result = extract_cached(self.extractor, paths, Path(self.config.cache) / f"{split}_ims.npy",
                                    spec=self.config.features.to_dict(), resolve_type=self.extractor_class)
        else:
            result = self.extractor.extract(paths)
        report = {"images_listed": len(listing.names), **report}
        missing = [names[i] for i in np.flatnonzero(~result.ok)]
        if missing:
            report["without_features"] = missing
            log.warning("%s: %d image(s) without features left out, e.g. %s (%s)", listing.source, len(missing),
                        missing[0], result.errors.get(missing[0], "missing"))
        kept = [i for i, ok in zip(keep, result.ok, strict=True) if ok]
        if not kept:
            what = "at least one caption" if k is None else f"{k} captions"
            raise DataError(f"{listing.source}: no image of split {split!r} has both {what} and features")
        per_image = [listing.captions[i][:k] for i in kept]
        captions = [text for caps in per_image for text in caps]
        cap2img = np.repeat(np.arange(len(kept), dtype=np.int64), [len(c) for c in per_image])
        report["images"] = len(kept)
        return Split(split, captions, result.features, cap2img, image_ids=[listing.names[i] for i in kept],
                     files=[*listing.files, *result.files], report=report, source=str(listing.source))
