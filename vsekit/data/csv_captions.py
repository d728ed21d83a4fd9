"""The ``csv`` reader (any delimited captions file) and its preset ``flickr8k`` (Flickr8K as released).

A captions file holds one caption a row: an image column and a caption column
(by header name or 0-based index), any delimiter, with or without a header.
Each row is one line (:func:`vsekit.io.read_lines`'s rule), split into fields
by Python's :mod:`csv` module. Splits come from a split column (values
``train``, ``dev`` or ``val``, ``test``) or from split list files named by a
pattern with ``{split}`` (``splits/{split}.txt``: one image name a line).
Captions are kept as written (the model's tokenizer splits them), every
caption of an image in row order unless ``caps_per_image`` says otherwise.
"""

from __future__ import annotations

import csv
from collections import OrderedDict
from pathlib import Path
from typing import Any

import attrs

from vsekit.config import FieldError, component_field, path_field, positive
from vsekit.data.captioned import CaptionedImagesReader, ImageCaptions, split_path
from vsekit.errors import DataError
from vsekit.io import read_lines

__all__ = ["CsvLayout", "CsvReader", "Flickr8kReader", "read_rows"]

#: Values of a split column -> vsekit split names.
SPLIT_VALUES = {"train": "train", "dev": "dev", "val": "dev", "test": "test"}


def _column(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None and attribute.default is None:
        return
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, int) and value < 0) \
            or (isinstance(value, str) and not value.strip()):
        raise FieldError(attribute.name, f"expected a column name or a 0-based index, got {value!r}")


def _one_char(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or len(value) != 1:
        raise FieldError(attribute.name, f"expected one character (e.g. \",\" or \"\\t\"), got {value!r}")


@attrs.frozen
class CsvLayout:
    """Where the captions are and how to read them: the ``csv`` reader's options as one value (paths resolved).

    ``splits`` is a path pattern with ``{split}`` or None (then ``split_column`` names the column).
    """

    path: Path
    delimiter: str
    header: bool
    image_column: str | int
    caption_column: str | int
    split_column: str | int | None
    splits: str | None
    images_dir: Path


def _indices(layout: CsvLayout, first: list[str]) -> tuple[list[int], int]:
    """Column indices of (image, caption[, split]) and the number of fields a row must have."""
    named = [layout.image_column, layout.caption_column]
    if layout.split_column is not None:
        named.append(layout.split_column)
    if not layout.header:
        bad = [c for c in named if isinstance(c, str)]
        if bad:
            raise DataError(f"{layout.path}: header = false, so columns are 0-based indices, got {bad[0]!r}")
        return [int(c) for c in named], max(int(c) for c in named) + 1
    header = [h.strip().lower() for h in first]
    out = []
    for c in named:
        if isinstance(c, int):
            out.append(c)
        elif c.strip().lower() in header:
            out.append(header.index(c.strip().lower()))
        else:
            want = layout.delimiter.join(str(n) for n in named)
            raise DataError(f"{layout.path}: line 1: expected a CSV header {want!r} (these columns in any order, "
                            f"others allowed), got {layout.delimiter.join(first)!r}")
    return out, len(first)


def read_rows(layout: CsvLayout) -> list[tuple[int, str, str, str | None]]:
    """The rows of the captions file: ``(line number (1-based), image name (stripped), caption, split or None)``.

    Raises:
        DataError: naming the file and line: a missing or unreadable file, a header without the named columns,
            a row with another number of fields, an empty image name, an empty caption.
    """
    lines = read_lines(layout.path, "CSV row")
    records = [next(csv.reader([line], delimiter=layout.delimiter), []) for line in lines]  # a row is a line
    (img, cap, *spl), width = _indices(layout, records[0])
    rows = []
    start = 2 if layout.header else 1
    for lineno, row in enumerate(records[start - 1:], start):
        if len(row) != width and (layout.header or len(row) < width):
            raise DataError(f"{layout.path}: line {lineno}: expected {width} fields"
                            f"{' (as the header)' if layout.header else ''}, got {len(row)}")
        name, text = row[img].strip(), row[cap]
        if not name:
            raise DataError(f"{layout.path}: line {lineno}: empty image name")
        if not text.strip():
            raise DataError(f"{layout.path}: line {lineno}: empty caption for {name!r}")
        rows.append((lineno, name, text, row[spl[0]].strip() if spl else None))
    if not rows:
        raise DataError(f"{layout.path}: no captions (only the header)")
    return rows


class CsvReader(CaptionedImagesReader):
    """Any delimited captions file: ``path``, ``delimiter``, ``header``, ``image_column``, ``caption_column``,
    and ``split_column`` or ``splits`` (a split list file pattern with ``{split}``).

    Image features come from ``features`` (an image feature extractor table, e.g. ``{type = "precomputed",
    dir = "..."}``), read from ``images_dir`` (default: the captions file's folder); ``cache`` as ``flickr8k``.
    """

    @attrs.frozen
    class Config:
        path: str = path_field(validator=attrs.validators.instance_of(str))
        # component_field() returns an attrs.field() (a field specifier, not a shared default) that ruff cannot see
        features: Any = component_field("image_feature_extractor")  # noqa: RUF009
        delimiter: str = attrs.field(default=",", validator=_one_char)
        header: bool = True
        image_column: Any = attrs.field(default="image", validator=_column)
        caption_column: Any = attrs.field(default="caption", validator=_column)
        split_column: Any = attrs.field(default=None, validator=_column)
        splits: str | None = path_field(None)
        images_dir: str | None = path_field(None)
        caps_per_image: int | None = attrs.field(default=None, validator=positive())
        cache: str | None = path_field(None)

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._rows: list[tuple[int, str, str, str | None]] | None = None

    @property
    def layout(self) -> CsvLayout:
        """The captions file and how to read it."""
        c = self.config
        return CsvLayout(Path(c.path), c.delimiter, c.header, c.image_column, c.caption_column, c.split_column,
                         c.splits, Path(c.images_dir) if c.images_dir else Path(c.path).parent)

    def rows(self) -> list[tuple[int, str, str, str | None]]:
        """:func:`read_rows` of the captions file, read once."""
        if self._rows is None:
            self._rows = read_rows(self.layout)
        return self._rows

    def check_files(self) -> list[str]:
        """The missing captions file and split list files, or a missing way to split."""
        lay = self.layout
        paths = [lay.path] + ([split_path(lay.splits, s) for s in self.splits] if lay.splits else [])
        problems = [f"{p}: no such file" for p in paths if not p.exists()]
        if (lay.splits is None) == (lay.split_column is None):
            problems.append("give either split_column or splits (a split list pattern such as \"splits/{split}.txt\")")
        return problems

    def _by_split_column(self, split: str) -> tuple[list[str], Path]:
        lay = self.layout
        names: OrderedDict[str, None] = OrderedDict()
        where: dict[str, str] = {}
        for lineno, name, _text, value in self.rows():
            if value not in SPLIT_VALUES:
                raise DataError(f"{lay.path}: line {lineno}: unknown split {value!r} for {name!r} — known: "
                                f"{', '.join(SPLIT_VALUES)}")
            if where.setdefault(name, SPLIT_VALUES[value]) != SPLIT_VALUES[value]:
                raise DataError(f"{lay.path}: line {lineno}: image {name!r} is in split {where[name]!r} and "
                                f"{SPLIT_VALUES[value]!r}")
            if SPLIT_VALUES[value] == split:
                names[name] = None
        return list(names), lay.path

    def _by_list(self, split: str) -> tuple[list[str], Path]:
        path = split_path(self.layout.splits, split)
        names = [n.strip() for n in read_lines(path, "image name")]
        if len(set(names)) != len(names):
            dupe = next(n for i, n in enumerate(names) if n in names[:i])
            raise DataError(f"{path}: duplicate image ids, e.g. {dupe!r}")
        return names, path

    def listing(self, split: str) -> ImageCaptions:
        """The split's images (split column order of first rows, or split list order) and their captions.

        Raises:
            DataError: see :func:`read_rows`; an unknown split value, an image in two splits, a split list
                naming an image twice, or neither or both of ``split_column`` and ``splits``.
        """
        lay = self.layout
        if (lay.splits is None) == (lay.split_column is None):
            raise DataError(f"{lay.path}: give either split_column or splits (a split list pattern such as "
                            f"\"splits/{{split}}.txt\")")
        names, source = self._by_list(split) if lay.splits else self._by_split_column(split)
        caps: dict[str, list[str]] = {}
        for _lineno, name, text, _value in self.rows():
            caps.setdefault(name, []).append(text)
        files = [lay.path] + ([source] if source != lay.path else [])
        return ImageCaptions(names, [lay.images_dir / n for n in names], [caps.get(n, []) for n in names],
                             files, source)


class Flickr8kReader(CsvReader):
    """Flickr8K as released: ``captions.txt`` (CSV ``image,caption``) and ``splits/{train,dev,test}.txt``.

    A preset of ``csv``: header ``image,caption``, splits from ``splits_dir``,
    images from ``images_dir``, both under ``root``. Image features come from
    an image feature extractor (``features``), e.g. ``{type = "precomputed",
    dir = ".../flickr8k-effnet-lite0"}``. ``caps_per_image`` (default 5):
    images without features or with fewer captions are reported in the log and
    the run's provenance, then left out; images with more keep the first 5.

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
        caps_per_image: int | None = attrs.field(default=5, validator=positive())
        cache: str | None = path_field(None)

    @property
    def root(self) -> Path:
        """The dataset folder (``config.root``) as a Path."""
        return Path(self.config.root)

    @property
    def layout(self) -> CsvLayout:
        """``root/captions_file`` read as CSV with the header ``image,caption``; ``root/splits_dir/{split}.txt``."""
        c = self.config
        return CsvLayout(self.root / c.captions_file, ",", True, "image", "caption", None,
                         str(self.root / c.splits_dir / "{split}.txt"), self.root / c.images_dir)
