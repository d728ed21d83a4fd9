"""Named dataset presets: the reference's ``f8k``, ``f30k`` and ``coco`` folders under one data root.

The root is a folder holding ``f8k/``, ``f30k/`` and ``coco/``, each laid out
as the reference released them: ``NAME_SPLIT_caps.txt`` and
``NAME_SPLIT_ims.npy`` for SPLIT in train, dev, test. Give it as ``root=`` or
in the environment variable ``VSEKIT_DATA_ROOT``::

    export VSEKIT_DATA_ROOT=~/data/vse
    python -c 'import vsekit; vsekit.evalrank("vse/f8k.npz", data="f8k")'

Feature files may hold one row per caption (the reference's files: each
image row repeated 5 times) or one row per image; the reader detects which.
For COCO's 5K-image test split, ``evalrank(..., folds=5)`` gives the 5-fold
1K mean of the papers.

``f30k`` and ``coco`` are also found as a Karpathy split JSON. The lookup
order, first match wins:

1. the precomp folder ``ROOT/NAME/`` holding ``NAME_train_caps.txt`` (the
   reference's layout above);
2. ``ROOT/NAME/dataset_X.json``, then ``ROOT/dataset_X.json`` (``X`` is
   ``flickr30k`` or ``coco``), read by the ``karpathy`` reader with features
   precomputed in ``ROOT/NAME/`` (``*_ims.npy`` + ``*_ids.txt`` pairs, e.g.
   written by ``vsekit extract``), images in ``ROOT/NAME/images``, and COCO's
   ``restval`` images in train;
3. otherwise a DataError naming both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from vsekit.errors import DataError

ENV_ROOT = "VSEKIT_DATA_ROOT"

#: preset name -> what it is
PRESETS: dict[str, str] = {
    "f8k": "Flickr8K (official split)",
    "f30k": "Flickr30K (Karpathy split)",
    "coco": "MS COCO (Karpathy split)",
}


def data_root(root: str | Path | None = None, name: str = "") -> Path:
    """The data root: ``root`` if given, else ``$VSEKIT_DATA_ROOT``; a DataError if neither is set."""
    value = root if root is not None else os.environ.get(ENV_ROOT)
    if not value:
        what = f"data preset {name!r}" if name else "data presets"
        raise DataError(f"{what}: no data root: pass root=... or set {ENV_ROOT} to the folder holding "
                        f"{', '.join(n + '/' for n in PRESETS)}")
    return Path(value).expanduser()


#: preset name -> the file name of its Karpathy split JSON (looked for when there is no precomp folder)
KARPATHY_JSON: dict[str, str] = {"f30k": "dataset_flickr30k.json", "coco": "dataset_coco.json"}


@attrs.frozen
class PrecomputedTable:
    """The ``features`` of a preset's reader: ``{type = "precomputed", dir = DIR}`` without the spec layer
    (which sits above the data layer), answering what a reader asks of its ``features`` component."""

    dir: str

    def build(self) -> Any:
        """The :class:`~vsekit.image.precomputed.PrecomputedFeatures` extractor of ``dir``."""
        from vsekit.image.precomputed import PrecomputedFeatures

        return PrecomputedFeatures(PrecomputedFeatures.Config(dir=self.dir))

    def to_dict(self) -> dict[str, str]:
        """The table, as a spec writes it."""
        return {"type": "precomputed", "dir": self.dir}


def karpathy_json(name: str, root: str | Path | None = None) -> Path | None:
    """The Karpathy JSON of preset ``name`` when its precomp folder is absent (see the lookup order above),
    else None (also for a preset without one)."""
    folder = data_root(root, name) / name
    if name not in KARPATHY_JSON or (folder / f"{name}_train_caps.txt").is_file():
        return None
    for candidate in (folder / KARPATHY_JSON[name], folder.parent / KARPATHY_JSON[name]):
        if candidate.is_file():
            return candidate.resolve()
    return None


def preset_table(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """The ``[data]`` spec table of a preset: ``precomp``, or ``karpathy`` when only its JSON is found (the
    precomp folder is not checked here)."""
    folder = (data_root(root, name) / name).resolve()
    found = karpathy_json(name, root)
    if found is None:
        return {"type": "precomp", "dir": str(folder), "name": name}
    return {"type": "karpathy", "json": str(found), "images_dir": str(folder / "images"),
            "features": {"type": "precomputed", "dir": str(folder)}}


def resolve_preset(name: str, root: str | Path | None = None):
    """The reader of preset ``name`` (a :class:`~vsekit.data.readers.PrecompReader`, or a
    :class:`~vsekit.data.karpathy.KarpathyReader` for ``f30k`` / ``coco`` found as Karpathy JSON), or None if
    ``name`` is not a preset.

    Raises:
        DataError: no data root, or neither layout found.
    """
    if not isinstance(name, str) or name not in PRESETS:
        return None
    from vsekit.data.readers import PrecompReader

    folder = data_root(root, name) / name
    table = preset_table(name, root)
    if table["type"] == "karpathy":
        from vsekit.data.karpathy import KarpathyReader

        return KarpathyReader(KarpathyReader.Config(json=table["json"], images_dir=table["images_dir"],
                                                    features=PrecomputedTable(table["features"]["dir"])))
    if not folder.is_dir():
        also = ""
        if name in KARPATHY_JSON:
            also = f", or {KARPATHY_JSON[name]} in it or beside it with precomputed features in it"
        raise DataError(f"data preset {name!r}: no such folder {folder} (expected {name}_SPLIT_caps.txt and "
                        f"{name}_SPLIT_ims.npy for SPLIT in train, dev, test{also})")
    return PrecompReader(PrecompReader.Config(dir=str(folder.resolve()), name=name))
