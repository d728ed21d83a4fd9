"""Files vsekit reads record by record: line-oriented text files and folders of images, one rule each.

``read_lines`` is the one record rule for captions, ids, splits and vocabularies; ``list_images`` the one way
to find images in folders (one suffix set everywhere: extraction, retrieval banks, image queries).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from vsekit.errors import DataError
from vsekit.io import read_lines

__all__ = ["IMAGE_SUFFIXES", "list_images", "read_lines"]

#: Suffixes of the image files taken from a folder (files named one by one are taken whatever their suffix).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def list_images(inputs: Iterable[str | Path]) -> list[Path]:
    """The image files of ``inputs``: a folder gives its files with an :data:`IMAGE_SUFFIXES` suffix (any case),
    sorted by name, not recursing; a file is taken as it is. Order follows ``inputs``; duplicates are dropped.

    Raises:
        DataError: no input, an input does not exist, or a folder holds no image file.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{p}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    if not out:
        raise DataError("no images given")
    return list(dict.fromkeys(out))
