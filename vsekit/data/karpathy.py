"""The ``karpathy`` reader: the split JSON used across the field (``dataset_flickr8k.json``,
``dataset_flickr30k.json``, ``dataset_coco.json``)::

    {"images": [{"filename": "1000268201_693b08cb0e.jpg", "filepath": "...", "split": "train",
                 "sentences": [{"raw": "A child in a pink dress ...", "tokens": [...]}, ...]}, ...]}

``split`` is ``train``, ``val`` (vsekit's ``dev``), ``test`` or ``restval``
(COCO's extra training images: ``restval = "train"`` adds them to ``train``,
``"skip"`` leaves them out). Captions are the ``raw`` texts, in ``sentences``
order (the model's tokenizer splits them; ``tokens`` is not read). The image
id is ``filename`` (a precomputed extractor matches features by it); the image
file is ``images_dir/filepath/filename``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from vsekit.config import component_field, one_of, path_field, positive
from vsekit.data.captioned import CaptionedImagesReader, ImageCaptions, read_json
from vsekit.errors import DataError

__all__ = ["KARPATHY_SPLITS", "KarpathyEntry", "KarpathyReader", "parse_karpathy"]

#: The ``split`` values of the JSON -> vsekit's split names (``restval``: see the ``restval`` option).
KARPATHY_SPLITS = {"train": "train", "val": "dev", "test": "test", "restval": "restval"}


@attrs.frozen
class KarpathyEntry:
    """One image of the JSON: ``filename``, ``filepath`` ("" when absent), ``split`` as written, ``captions``."""

    filename: str
    filepath: str
    split: str
    captions: list[str]


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _entry(path: Path, i: int, item: Any) -> KarpathyEntry:
    where = f"{path}: images[{i}]"
    if not isinstance(item, dict):
        raise DataError(f"{where}: expected an object, got {type(item).__name__}")
    if "filename" not in item:
        raise DataError(f'{where}: missing key "filename"')
    if not _text(item["filename"]):
        raise DataError(f'{where}: "filename": expected a file name, got {item["filename"]!r}')
    where = f'{where} ("{item["filename"]}")'
    for key in ("split", "sentences"):
        if key not in item:
            raise DataError(f'{where}: missing key "{key}"')
    if item["split"] not in KARPATHY_SPLITS:
        raise DataError(f'{where}: unknown split {item["split"]!r} — known: {", ".join(KARPATHY_SPLITS)}')
    if not isinstance(item["sentences"], list):
        raise DataError(f'{where}: "sentences": expected a list, got {type(item["sentences"]).__name__}')
    captions = []
    for j, sentence in enumerate(item["sentences"]):
        if not isinstance(sentence, dict) or "raw" not in sentence:
            raise DataError(f'{where}: sentences[{j}]: missing key "raw"')
        if not _text(sentence["raw"]):
            raise DataError(f"{where}: sentences[{j}]: empty caption")
        captions.append(sentence["raw"])
    filepath = item.get("filepath") or ""
    if not isinstance(filepath, str):
        raise DataError(f'{where}: "filepath": expected a folder name, got {filepath!r}')
    return KarpathyEntry(item["filename"].strip(), filepath, item["split"], captions)


def parse_karpathy(path: Path) -> list[KarpathyEntry]:
    """The images of the Karpathy split JSON ``path``, in file order.

    Raises:
        DataError: naming the file and the entry (``images[12] ("x.jpg")``): not JSON, no ``images`` list,
            a missing key, an unknown ``split``, an empty caption, a ``filename`` listed twice.
    """
    doc = read_json(path)
    if not isinstance(doc, dict) or "images" not in doc:
        raise DataError(f'{path}: missing key "images" (expected {{"images": [...]}})')
    if not isinstance(doc["images"], list):
        raise DataError(f'{path}: "images": expected a list, got {type(doc["images"]).__name__}')
    entries, seen = [], {}
    for i, item in enumerate(doc["images"]):
        entry = _entry(path, i, item)
        if entry.filename in seen:
            raise DataError(f'{path}: images[{i}] ("{entry.filename}"): listed twice '
                            f'(also images[{seen[entry.filename]}])')
        seen[entry.filename] = i
        entries.append(entry)
    if not entries:
        raise DataError(f'{path}: "images" is empty')
    return entries


class KarpathyReader(CaptionedImagesReader):
    """The Karpathy split JSON: ``json``, ``images_dir`` (default: the JSON's folder), ``features`` (an image
    feature extractor table), ``restval`` (``"train"``: train on train + restval, COCO practice; ``"skip"``),
    ``caps_per_image`` (default: every caption) and ``cache`` (as ``flickr8k``)."""

    @attrs.frozen
    class Config:
        json: str = path_field(validator=attrs.validators.instance_of(str))
        # component_field() returns an attrs.field() (a field specifier, not a shared default) that ruff cannot see
        features: Any = component_field("image_feature_extractor")  # noqa: RUF009
        images_dir: str | None = path_field(None)
        restval: str = attrs.field(default="train", validator=one_of("train", "skip"))
        caps_per_image: int | None = attrs.field(default=None, validator=positive())
        cache: str | None = path_field(None)

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._entries: list[KarpathyEntry] | None = None

    @property
    def path(self) -> Path:
        """The JSON file."""
        return Path(self.config.json)

    def entries(self) -> list[KarpathyEntry]:
        """:func:`parse_karpathy` of the JSON, read once."""
        if self._entries is None:
            self._entries = parse_karpathy(self.path)
        return self._entries

    def check_files(self) -> list[str]:
        """The JSON file, if missing."""
        return [] if self.path.is_file() else [f"{self.path}: no such file"]

    def listing(self, split: str) -> ImageCaptions:
        """The images whose ``split`` is ``split`` (``val`` for ``dev``; ``restval`` too for ``train`` unless
        ``restval = "skip"``), in file order, with their ``raw`` captions in ``sentences`` order.

        Raises:
            DataError: see :func:`parse_karpathy`.
        """
        wanted = {s for s, v in KARPATHY_SPLITS.items() if v == split}
        if split == "train" and self.config.restval == "train":
            wanted.add("restval")
        chosen = [e for e in self.entries() if e.split in wanted]
        if not chosen:
            raise DataError(f"{self.path}: no image with split {' or '.join(sorted(wanted))!r}")
        folder = Path(self.config.images_dir) if self.config.images_dir else self.path.parent
        return ImageCaptions([e.filename for e in chosen], [folder / e.filepath / e.filename for e in chosen],
                             [list(e.captions) for e in chosen], [self.path], self.path)
