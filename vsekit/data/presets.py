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
"""

from __future__ import annotations

import os
from pathlib import Path

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


def preset_table(name: str, root: str | Path | None = None) -> dict[str, str]:
    """The ``[data]`` spec table of a preset (the folder is not checked here)."""
    return {"type": "precomp", "dir": str((data_root(root, name) / name).resolve()), "name": name}


def resolve_preset(name: str, root: str | Path | None = None):
    """A :class:`~vsekit.data.readers.PrecompReader` for preset ``name``, or None if ``name`` is not a preset."""
    if not isinstance(name, str) or name not in PRESETS:
        return None
    from vsekit.data.readers import PrecompReader

    folder = data_root(root, name) / name
    if not folder.is_dir():
        raise DataError(f"data preset {name!r}: no such folder {folder} (expected {name}_SPLIT_caps.txt and "
                        f"{name}_SPLIT_ims.npy for SPLIT in train, dev, test)")
    return PrecompReader(PrecompReader.Config(dir=str(folder.resolve()), name=name))
