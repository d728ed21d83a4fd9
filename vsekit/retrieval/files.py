"""The files retrieval reads and writes besides banks: captions (one a line, or Flickr8K's ``image,caption``
CSV), image ids (one a line), image feature rows (``.npy``) and the image files of folders.

Line files follow :func:`vsekit.io.read_lines`' one rule; images are listed by
:func:`vsekit.data.files.list_images` (one suffix set, :data:`vsekit.data.files.IMAGE_SUFFIXES`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from vsekit.data.files import is_captions_csv_header, list_images, parse_captions_csv
from vsekit.errors import DataError
from vsekit.io import atomic_write_text, load_feature_rows, read_lines, record_text


def read_captions(path: str | Path) -> tuple[list[str], list[str] | None]:
    """Captions from a file: one a line, or a CSV with the header ``image,caption`` (Flickr8K's ``captions.txt``).

    Returns ``(texts, image_ids or None)``, one text per record, in file
    order, so that row i of anything computed from them is record i. Lines
    follow :func:`vsekit.io.read_lines`: trailing blank lines are ignored and
    any other empty caption is refused with its line number.
    Raises :class:`~vsekit.errors.DataError` naming the file and line.
    """
    path = Path(path)
    lines = read_lines(path, "caption")
    if not is_captions_csv_header(lines[0]):
        return [line.strip() for line in lines], None
    rows = parse_captions_csv(path, lines)
    texts, ids = [text.strip() for _, _, text in rows], [name for _, name, _ in rows]
    if not texts:
        raise DataError(f"{path}: no captions (only the header)")
    return texts, ids


def write_captions_csv(path: str | Path, texts: Sequence[str], ids: Sequence[str | None]) -> None:
    """Write ``image,caption`` CSV (the format :func:`read_captions` reads), atomically.

    Raises:
        DataError: naming ``path`` and the caption or id that cannot be one line (a line break, a U+FEFF, an
            empty caption): :func:`read_captions` reads a row per line (:func:`vsekit.io.record_text`).
    """
    record_text(texts, "caption", str(path))
    record_text((i or "" for i in ids), "image id", str(path), allow_empty=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "caption"])
    for i, t in zip(ids, texts, strict=True):
        w.writerow([i or "", t])
    atomic_write_text(path, buf.getvalue())


def read_features(path: str | Path) -> np.ndarray:
    """Image feature rows (N, dim_image), floating point, from a ``.npy`` file.

    Raises :class:`~vsekit.errors.DataError` for a missing or unreadable file, or an array that is not 2-D float.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    return load_feature_rows(p)


def read_ids(path: str | Path) -> list[str]:
    """Image ids, one a line (:func:`vsekit.io.read_lines`' rule; an empty id is refused with its line number)."""
    return [line.strip() for line in read_lines(path, "image id")]


def image_files(paths: Iterable[str | Path]) -> tuple[list[Path], Path | None]:
    """Image files named directly or found in folders (:func:`vsekit.data.files.list_images`); returns
    (files, the folder when they all come from one)."""
    paths = [Path(p) for p in paths]
    files = list_images(paths)
    folders = [p for p in paths if p.is_dir()]
    root = folders[0] if len(folders) == 1 and all(f.parent == folders[0] for f in files) else None
    return files, root
