"""The files retrieval reads and writes besides banks: captions (one a line, or Flickr8K's ``image,caption``
CSV), image ids (one a line), image feature rows (``.npy``) and the image files of folders; and whether a default
bank on disk still fits its model and the file it was built from (:func:`load_default_bank`).

Line files follow :func:`vsekit.io.read_lines`' one rule; images are listed by
:func:`vsekit.data.files.list_images` (one suffix set, :data:`vsekit.data.files.IMAGE_SUFFIXES`).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from vsekit.data.files import is_captions_csv_header, list_images, parse_captions_csv
from vsekit.errors import DataError, VsekitError
from vsekit.io import atomic_write_text, load_feature_rows, read_lines, record_text
from vsekit.model import JointModel
from vsekit.retrieval.banks import Bank, bank_files, load_bank, same_model, source_digest

log = logging.getLogger(__name__)


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


def load_default_bank(path: str | Path, model: JointModel, kind: str, source: Path | None) -> Bank | None:
    """A default bank vsekit keeps for ``model`` at ``path`` (``NAME`` of a pair), or None when it has to be built.

    None, with one log line saying why, when the pair is broken (unreadable, a bad file name, an embeddings file
    that is not the one its JSON names), of another ``kind``, dim or model, or built from another source than
    ``source`` (the file the default bank is built from now, e.g. ``M.captions.csv``; None: no file) or from an
    older version of it (its sha256 differs from the recorded ``source_sha256``). None without a line when there
    is no bank at ``path``. Never raises for a bad bank: vsekit rebuilds what it built.
    """
    meta_path = bank_files(path)[0]
    if not meta_path.is_file():
        return None
    try:
        b = load_bank(meta_path)
    except VsekitError as exc:
        log.warning("rebuilding the default %s bank: %s", kind, exc)
        return None
    if b.kind != kind or b.dim != model.dim or not same_model(b, model):
        log.info("%s was built by other weights: rebuilding it", meta_path)
        return None
    if b.meta.get("source_sha256") != source_digest(source):
        was = b.meta.get("source") or "another source"
        why = (f"{source} changed since the bank was built from it" if was == str(source)
               else f"built from {was}, not {source or 'the spec'}")
        log.warning("%s: %s: rebuilding it", meta_path, why)
        return None
    return b
