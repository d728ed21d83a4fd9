"""The ``coco`` reader: COCO captions annotation files (``captions_train2014.json`` style)::

    {"images": [{"id": 391895, "file_name": "COCO_val2014_000000391895.jpg", ...}, ...],
     "annotations": [{"image_id": 391895, "caption": "A man with a red helmet ...", ...}, ...]}

Either one file per split (``json`` with ``{split}``: ``"captions_{split}.json"``
for train, dev, test), or one file plus split id lists (``splits =
"splits/{split}_ids.txt"``: one image ``id`` or ``file_name`` a line). An
image's captions are its annotations in file order; the image id is
``file_name`` (a precomputed extractor matches features by it); the image
file is ``images_dir/file_name``.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import attrs

from vsekit.config import component_field, path_field, positive
from vsekit.data.captioned import SPLIT_TOKEN, CaptionedImagesReader, ImageCaptions, read_json, split_path
from vsekit.errors import DataError
from vsekit.io import read_lines

__all__ = ["CocoCaptions", "CocoReader", "parse_coco"]


@attrs.frozen
class CocoCaptions:
    """One annotation file: ``files`` (image id as text -> file_name, in ``images`` order) and ``captions``
    (image id as text -> its captions in ``annotations`` order)."""

    files: OrderedDict[str, str]
    captions: dict[str, list[str]]


def _items(path: Path, doc: Any, key: str) -> list[Any]:
    if key not in doc:
        raise DataError(f'{path}: missing key "{key}"')
    if not isinstance(doc[key], list):
        raise DataError(f'{path}: "{key}": expected a list, got {type(doc[key]).__name__}')
    return doc[key]


def _image_id(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and bool(value))


def _check_entry(where: str, item: Any, keys: tuple[str, ...]) -> None:
    """Raise :class:`DataError` at ``where`` unless ``item`` is an object holding every one of ``keys``."""
    if not isinstance(item, dict):
        raise DataError(f"{where}: expected an object, got {type(item).__name__}")
    for key in keys:
        if key not in item:
            raise DataError(f'{where}: missing key "{key}"')


def _images(path: Path, items: list[Any]) -> OrderedDict[str, str]:
    files: OrderedDict[str, str] = OrderedDict()
    where_name: dict[str, int] = {}
    for i, item in enumerate(items):
        where = f"{path}: images[{i}]"
        _check_entry(where, item, ("id", "file_name"))
        name = item["file_name"]
        if not isinstance(name, str) or not name.strip():
            raise DataError(f'{where}: "file_name": expected a file name, got {name!r}')
        where = f'{where} ("{name}")'
        if not _image_id(item["id"]):
            raise DataError(f'{where}: "id": expected a number or text, got {item["id"]!r}')
        key = str(item["id"])
        if key in files:
            first = list(files).index(key)
            raise DataError(f"{where}: image id {item['id']!r} listed twice (also images[{first}])")
        if name.strip() in where_name:
            raise DataError(f"{where}: file_name listed twice (also images[{where_name[name.strip()]}])")
        where_name[name.strip()] = i
        files[key] = name.strip()
    return files


def parse_coco(path: Path) -> CocoCaptions:
    """The images and captions of the COCO captions file ``path``.

    Raises:
        DataError: naming the file and the entry (``annotations[7] (image_id 42)``): not JSON, a missing
            ``images`` or ``annotations`` list or key, an image id or file name listed twice, a caption for
            an unknown image id, an empty caption.
    """
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise DataError(f'{path}: expected {{"images": [...], "annotations": [...]}}, got {type(doc).__name__}')
    files = _images(path, _items(path, doc, "images"))
    captions: dict[str, list[str]] = {}
    for j, item in enumerate(_items(path, doc, "annotations")):
        where = f"{path}: annotations[{j}]"
        _check_entry(where, item, ("image_id", "caption"))
        where = f"{where} (image_id {item['image_id']!r})"
        if str(item["image_id"]) not in files or not _image_id(item["image_id"]):
            raise DataError(f'{where}: unknown image id (not in "images")')
        if not isinstance(item["caption"], str) or not item["caption"].strip():
            raise DataError(f"{where}: empty caption")
        captions.setdefault(str(item["image_id"]), []).append(item["caption"])
    return CocoCaptions(files, captions)


class CocoReader(CaptionedImagesReader):
    """COCO captions files: ``json`` (one file, or one per split with ``{split}``), ``splits`` (id list files
    with ``{split}``, with one file), ``images_dir`` (default: the JSON's folder), ``features`` (an image feature
    extractor table), ``caps_per_image`` (default: every caption) and ``cache`` (as ``flickr8k``)."""

    @attrs.frozen
    class Config:
        json: str = path_field(validator=attrs.validators.instance_of(str))
        # component_field() returns an attrs.field() (a field specifier, not a shared default) that ruff cannot see
        features: Any = component_field("image_feature_extractor")  # noqa: RUF009
        splits: str | None = path_field(None)
        images_dir: str | None = path_field(None)
        caps_per_image: int | None = attrs.field(default=None, validator=positive())
        cache: str | None = path_field(None)

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._parsed: dict[Path, CocoCaptions] = {}

    @property
    def per_split(self) -> bool:
        """Whether ``json`` names one file per split (it holds ``{split}``)."""
        return SPLIT_TOKEN in self.config.json

    def json_path(self, split: str) -> Path:
        """The annotation file holding ``split``."""
        return split_path(self.config.json, split)

    def parsed(self, path: Path) -> CocoCaptions:
        """:func:`parse_coco` of ``path``, read once."""
        if path not in self._parsed:
            self._parsed[path] = parse_coco(path)
        return self._parsed[path]

    def _problem(self) -> str | None:
        if self.per_split == (self.config.splits is not None):
            return ('give json with {split} (one file per split, e.g. "captions_{split}.json"), or one json file '
                    'and splits (id lists, e.g. "splits/{split}_ids.txt")')
        return None

    def check_files(self) -> list[str]:
        """The missing annotation and id list files, or a config that gives both or neither way to split."""
        paths = {self.json_path(s) for s in self.splits}
        if self.config.splits:
            paths |= {split_path(self.config.splits, s) for s in self.splits}
        problems = [f"{p}: no such file" for p in sorted(paths) if not p.exists()]
        return problems + ([p] if (p := self._problem()) else [])

    def _listed(self, split: str, coco: CocoCaptions) -> tuple[list[str], Path]:
        """The ids of ``split`` from its id list (ids or file names, one a line), and that file."""
        path = split_path(self.config.splits, split)
        by_name = {name: key for key, name in coco.files.items()}
        ids: dict[str, None] = {}
        for lineno, line in enumerate(read_lines(path, "image id"), 1):
            entry = line.strip()
            key = entry if entry in coco.files else by_name.get(entry)
            if key is None:
                raise DataError(f"{path}: line {lineno}: unknown image id {entry!r} (not in "
                                f"{self.json_path(split)})")
            if entry in coco.files and by_name.get(entry, key) != key:
                raise DataError(f"{path}: line {lineno}: {entry!r} is the id of one image and the file_name of "
                                f"image {by_name[entry]!r} in {self.json_path(split)}: write the other form")
            if key in ids:
                raise DataError(f"{path}: line {lineno}: duplicate image ids, e.g. {entry!r}")
            ids[key] = None
        return list(ids), path

    def listing(self, split: str) -> ImageCaptions:
        """The split's images (``images`` order of its own file, or id list order) and their captions
        (``annotations`` order).

        Raises:
            DataError: see :func:`parse_coco`; an id list naming an unknown or repeated id, or a line that is the
                id of one image and the file_name of another; a config giving both
                or neither way to split.
        """
        if problem := self._problem():
            raise DataError(f"{self.config.json}: {problem}")
        path = self.json_path(split)
        coco = self.parsed(path)
        ids, source = (list(coco.files), path) if self.per_split else self._listed(split, coco)
        names = [coco.files[k] for k in ids]
        folder = Path(self.config.images_dir) if self.config.images_dir else path.parent
        files = [path] + ([source] if source != path else [])
        return ImageCaptions(names, [folder / n for n in names], [list(coco.captions.get(k, [])) for k in ids],
                             files, source)
