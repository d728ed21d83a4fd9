"""Dataset readers: ``precomp`` (the reference's folder layout) and ``flickr8k`` (raw captions + features).

A reader turns a split name into a :class:`Split`: caption texts (strings,
never token lists: the model's tokenizer splits them), one feature row per
image, and the caption -> image map. Line files are read by
:func:`vsekit.io.read_lines` (one rule for every line file). Readers refuse
inconsistent data with a :class:`~vsekit.errors.DataError` naming the file.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np

from vsekit.config import EMBEDDED_ROOT, component_field, embedded_path, path_field, positive
from vsekit.data.files import is_captions_csv_header, parse_captions_csv
from vsekit.errors import DataError
from vsekit.image.cache import extract_cached
from vsekit.io import collapse_repeated_rows, load_feature_rows, nonfinite_rows, read_lines

log = logging.getLogger(__name__)

__all__ = ["EMBEDDED_ROOT", "DatasetReader", "Flickr8kReader", "PrecompReader", "Split", "embedded_path"]


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
                     list(self.files), dict(self.report), self.source)


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
        """``'PATH: no such file'`` for each missing train/dev/test file, or the missing folder; [] if none."""
        root = self._root()
        if not root.is_dir():
            return [f"{root}: no such folder"]
        return [f"{p}: no such file" for s in ("train", "dev", "test") for p in self.paths(s) if not p.exists()]

    def read(self, split: str) -> Split:
        """The split from ``SPLIT_caps.txt`` (a caption a line) and ``SPLIT_ims.npy``.

        Images are (N, dim_image) float32, one row per image (a row-per-caption file
        is collapsed); caption i belongs to image ``i // caps_per_image`` (the option ``caps_per_image``,
        default 5; ``caps_per_image = 1`` for a folder with one caption per image). A 3-D file of region
        features (N, K, dim_image) is memory-mapped, dtype as stored (see :class:`Split`).

        Raises:
            DataError: an unknown split, a missing folder or file, or caption and row counts that fit neither
                layout with this ``caps_per_image`` (the message names the value that fits, if one does).
        """
        if split not in self.splits:
            raise self._unknown_split(split)
        root = self._root()
        if not root.is_dir():
            raise DataError(f"{root}: no such dataset folder")
        caps_path, ims_path = self.paths(split)
        captions = read_lines(caps_path, "caption")
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
        return Split(split, captions, images, cap2img, files=[caps_path, ims_path],
                     report={"layout": layout}, source=str(ims_path))


# --------------------------------------------------------------------------
# flickr8k


class Flickr8kReader(DatasetReader):
    """Flickr8K as released: ``captions.txt`` (CSV ``image,caption``) and ``splits/{train,dev,test}.txt``.

    Captions are kept as written (the model's tokenizer splits them). Image
    features come from an image feature extractor (``features``), e.g.
    ``{type = "precomputed", dir = ".../flickr8k-effnet-lite0"}``. Images
    without features or with fewer than ``caps_per_image`` captions are
    reported in the log and the run's provenance, then left out.

    ``cache`` (a folder): features are extracted once per split into
    ``CACHE/{split}_ims.npy`` + ``{split}_ids.txt`` (the files ``vsekit
    extract`` writes) and reused; later runs extract only missing images.
    """

    @attrs.frozen
    class Config:
        root: str = path_field(validator=attrs.validators.instance_of(str))
        # component_field() returns an attrs.field() (a field specifier, not a shared default) that ruff cannot see
        features: Any = component_field("image_feature_extractor")  # noqa: RUF009
        captions_file: str = "captions.txt"
        splits_dir: str = "splits"
        images_dir: str = "images"
        caps_per_image: int = attrs.field(default=5, validator=positive())
        cache: str | None = path_field(None)

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._captions: OrderedDict[str, list[str]] | None = None
        self._extractor = None

    @property
    def root(self) -> Path:
        """The dataset folder (``config.root``) as a Path."""
        return Path(self.config.root)

    def check(self) -> list[str]:
        """Missing caption and split files, a missing ``features`` table, and the extractor's own problems."""
        problems = []
        for p in [self.root / self.config.captions_file] + [
            self.root / self.config.splits_dir / f"{s}.txt" for s in self.splits
        ]:
            if not p.exists():
                problems.append(f"{p}: no such file")
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

    def _extractor_class(self, name: str) -> type:
        """The class an extractor type name resolves to, through the component the spec layer built for
        ``features`` (so that a cache made under another name of the same class is reused)."""
        return attrs.evolve(self.config.features, type=name).cls

    def captions_by_image(self) -> OrderedDict[str, list[str]]:
        """Caption texts by image name, in file order. Each CSV row is one line (:func:`vsekit.io.read_lines`'s
        rule); a row with an empty image name or caption is refused with its line number."""
        if self._captions is None:
            path = self.root / self.config.captions_file
            lines = read_lines(path, "CSV row")
            if not is_captions_csv_header(lines[0]):
                raise DataError(f"{path}: expected a CSV header 'image,caption', got {lines[0]!r}")
            by_image: OrderedDict[str, list[str]] = OrderedDict()
            for lineno, name, text in parse_captions_csv(path, lines):
                if not name:
                    raise DataError(f"{path}: line {lineno}: empty image name")
                by_image.setdefault(name, []).append(text)
            if not by_image:
                raise DataError(f"{path}: no captions")
            self._captions = by_image
        return self._captions

    def read(self, split: str) -> Split:
        """The split listed in ``splits_dir/SPLIT.txt``: images with ``caps_per_image`` captions and features.

        Images with fewer captions or no features are left out (and logged and listed
        in ``report``); images with more keep the first ``caps_per_image``. Features
        are (N, dim_image) float32, through the ``cache`` feature file when one is set.

        Raises:
            DataError: an unknown split, a missing file, duplicate image ids, or no image left.
        """
        if split not in self.splits:
            raise self._unknown_split(split)
        split_path = self.root / self.config.splits_dir / f"{split}.txt"
        names = [n.strip() for n in read_lines(split_path, "image name")]
        dupes = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
        if dupes:
            raise DataError(f"{split_path}: duplicate image ids, e.g. {dupes[0]!r}")
        caps = self.captions_by_image()
        k = self.config.caps_per_image
        few = [n for n in names if len(caps.get(n, [])) < k]
        many = [n for n in names if len(caps.get(n, [])) > k]
        keep = [n for n in names if n not in set(few)]
        image_paths = [self.root / self.config.images_dir / n for n in keep]
        if self.config.cache:
            result = extract_cached(self.extractor, image_paths, Path(self.config.cache) / f"{split}_ims.npy",
                                    spec=self.config.features.to_dict(), resolve_type=self._extractor_class)
        else:
            result = self.extractor.extract(image_paths)
        missing = [keep[i] for i in np.flatnonzero(~result.ok)]
        report: dict[str, Any] = {"images_listed": len(names)}
        if few:
            report[f"fewer_than_{k}_captions"] = few
            log.warning("%s: %d image(s) with fewer than %d captions left out, e.g. %s", split_path, len(few), k,
                        few[0])
        if many:
            report[f"more_than_{k}_captions_truncated"] = many
            log.warning("%s: %d image(s) with more than %d captions: the first %d used", split_path, len(many), k, k)
        if missing:
            report["without_features"] = missing
            log.warning("%s: %d image(s) without features left out, e.g. %s (%s)", split_path, len(missing),
                        missing[0], result.errors.get(missing[0], "missing"))
        kept = [n for n, ok in zip(keep, result.ok, strict=True) if ok]
        if not kept:
            raise DataError(f"{split_path}: no image of split {split!r} has both {k} captions and features")
        captions = [text for name in kept for text in caps[name][:k]]
        cap2img = np.repeat(np.arange(len(kept), dtype=np.int64), k)
        report["images"] = len(kept)
        return Split(split, captions, result.features, cap2img, image_ids=kept,
                     files=[self.root / self.config.captions_file, split_path, *result.files],
                     report=report, source=str(split_path))
