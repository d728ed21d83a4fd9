"""Files vsekit reads record by record: line-oriented text files and folders of images, one rule each.

``read_lines`` is the one record rule for captions, ids, splits and vocabularies; ``parse_captions_csv`` the one
reader of ``image,caption`` CSV files (Flickr8K's ``captions.txt``); ``load_feature_rows`` the one reader of
``.npy`` feature arrays; ``list_images`` the one way to find images in folders (one suffix set everywhere:
extraction, retrieval banks, image queries).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from vsekit.errors import DataError
from vsekit.io import load_feature_rows, read_lines

__all__ = ["IMAGE_SUFFIXES", "is_captions_csv_header", "list_images", "load_feature_rows", "parse_captions_csv",
           "read_lines"]

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


def is_captions_csv_header(line: str) -> bool:
    """Whether ``line`` is the header ``image,caption`` (any case and spacing) of a captions CSV."""
    header = next(csv.reader([line]), [])
    return [h.strip().lower() for h in header] == ["image", "caption"]


def parse_captions_csv(path: str | Path, lines: list[str]) -> list[tuple[int, str, str]]:
    """The records of a captions CSV whose ``lines`` (from :func:`read_lines`, header first) were read from ``path``.

    Returns:
        One ``(line number (1-based), image name (stripped, may be empty), caption as written)`` per row after
        the header, in file order (empty when there is only the header).

    Raises:
        DataError: naming ``path`` and the line, for a row without exactly two fields or with an empty caption.
    """
    rows = []
    for lineno, line in enumerate(lines[1:], 2):
        row = next(csv.reader([line]), [])
        if len(row) != 2:
            raise DataError(f"{path}: line {lineno}: expected 2 CSV fields (image,caption), got {len(row)}")
        name, text = row[0].strip(), row[1]
        if not text.strip():
            raise DataError(f"{path}: line {lineno}: empty caption" + (f" for {name!r}" if name else ""))
        rows.append((lineno, name, text))
    return rows


#: a folder of image files looked in after the roots a caller gives (e.g. the packaged model's Flickr8K images,
#: which no vsekit package ships: their terms forbid redistribution)
ENV_IMAGES = "VSEKIT_F8K_IMAGES"


def find_image(image_id: str | None, *roots: str | Path | None) -> Path | None:
    """The existing file for ``image_id``: under the first root that has it (then ``$VSEKIT_F8K_IMAGES``), else
    the id itself as an absolute path; None when there is no such file."""
    if not image_id:
        return None
    for root in (*roots, os.environ.get(ENV_IMAGES)):
        if root:
            p = Path(root) / image_id
            if p.is_file():
                return p
    p = Path(image_id)
    return p if p.is_absolute() and p.is_file() else None
