"""Feature files: image rows + ids + a record of the extractor that made them, read, written and grown.

A feature file is a pair (plus a small record of what made it)::

    features.npy            float32 or float16, one row per image
    features_ids.txt        the image file names, one per line, row order
    features_extractor.json the extractor's type and options

The ids file is the ``.npy`` path with ``.npy`` replaced by ``_ids.txt``,
except that a trailing ``_ims`` is dropped first, so ``test_ims.npy`` pairs
with ``test_ids.txt``: the layout of the ``precomp`` reader and of the
``precomputed`` extractor, which read such folders as they are.

Rows and ids are committed with the record holding their sha256 as one
change (:func:`vsekit.io.commit_parts`); files that are not the ones the record
names are extracted again (one log line). Writers hold the lock ``.X.npy.lock``
(:func:`vsekit.io.lock_beside`) and re-read what is committed before adding
rows, so concurrent extractions add up. New rows are saved every ``chunk``
images; a rerun skips the images already in the file, so an interrupted
extraction resumes where it stopped. Unreadable images are reported by name
and not written (a rerun tries them again). This is the ``flickr8k`` reader's
cache and ``vsekit extract``'s store (:mod:`vsekit.extract`).

Where a function compares extractor records, ``resolve_type`` (a callable
``type name -> class``) lets two names of one class (a registered name and
``module:Class``) match; without it the names must be equal.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from vsekit.errors import DataError
from vsekit.image.base import Extracted, ImageFeatureExtractor
from vsekit.image.records import (  # noqa: F401 (ids_path, meta_path, recorded_extractor: also read from here)
    RUNTIME_OPTIONS,
    TypeResolver,
    ids_path,
    meta_path,
    read_record,
    recorded_extractor,
    same_extractor,
)
from vsekit.io import (
    commit_parts,
    committed_part,
    lock_beside,
    pending_path,
    read_lines,
    record_text,
)

log = logging.getLogger(__name__)

#: The dtypes a feature file may hold.
DTYPES = ("float32", "float16")

@attrs.define
class FeatureFile:
    """A feature file in memory: ``(n, dim)`` float32/float16 rows, ``n`` ids (file names) and the extractor record."""

    out: Path
    features: np.ndarray
    ids: list[str]
    meta: dict[str, Any] = attrs.Factory(dict)

    @property
    def index(self) -> dict[str, int]:
        """Row of each id."""
        return {name: i for i, name in enumerate(self.ids)}

    @classmethod
    def read(cls, out: str | Path) -> FeatureFile | None:
        """The file at ``out``; None when there is none yet, or (with one warning) when its rows or ids are not
        the files its record names. A record without checksums (vsekit < 0.2): rows past the end of the ids
        file (an extraction stopped between the two writes) are dropped with a warning.

        Raises:
            DataError: an unreadable array or record, more ids than rows, or an id twice.
        """
        out = Path(out)
        if not out.exists() and not pending_path(out).exists():
            return None
        meta = read_record(meta_path(out))
        files = _committed(out, meta)
        if files is None:
            return None
        feats = _read_rows(files[0])
        ids = read_lines(files[1], "image id", allow_empty_file=True) if files[1].exists() else []
        if len(ids) > len(feats) or (len(ids) < len(feats) and "ids_sha256" in meta):
            raise DataError(f"{ids_path(out)} has {len(ids)} ids but {out} has {len(feats)} rows")
        if len(ids) < len(feats):
            log.warning("%s: %d row(s) without an id in %s (interrupted?) dropped", out, len(feats) - len(ids),
                        ids_path(out).name)
            feats = feats[: len(ids)]
        if len(set(ids)) != len(ids):
            raise DataError(f"{ids_path(out)}: an image id appears twice")
        return cls(out, feats, ids, meta)

    def write(self) -> None:
        """Commit rows, ids and the record of their sha256 (:func:`vsekit.io.commit_parts`), under the lock.

        Raises:
            DataError: an id that cannot be one line of the ids file (:func:`vsekit.io.record_text`), before
                anything is written.
        """

        def save(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, self.features, allow_pickle=False)

        def record(digests: dict[Path, str]) -> str:
            self.meta.update(features_sha256=digests[self.out], ids_sha256=digests[ids_path(self.out)])
            return json.dumps(self.meta, indent=1) + "\n"

        text = record_text(self.ids, "image id", str(ids_path(self.out)))  # refused before anything is written
        commit_parts(meta_path(self.out), {self.out: save, ids_path(self.out): lambda tmp: Path(tmp).write_text(
            text, encoding="utf-8")}, record)


def _committed(out: Path, meta: dict[str, Any]) -> tuple[Path, Path] | None:
    """(rows file, ids file) with the checksums the record names (or their ``.pending`` copies), the files
    themselves for a record without checksums, else None with a warning."""
    rows_sha, ids_sha = meta.get("features_sha256"), meta.get("ids_sha256")
    if rows_sha is None and ids_sha is None:
        return out, ids_path(out)
    rows = committed_part(out, rows_sha) if isinstance(rows_sha, str) else None
    ids = committed_part(ids_path(out), ids_sha) if isinstance(ids_sha, str) else None
    if rows is None or ids is None:
        log.warning("%s: %s or %s is not the file its record names (changed, or from another write): "
                    "extracting its images again", meta_path(out), out.name, ids_path(out).name)
        return None
    return rows, ids


def _read_rows(path: Path) -> np.ndarray:
    """The 2-D float32/float16 rows in the ``.npy`` file ``path`` (else DataError)."""
    try:
        feats = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc}); delete it or use --force") from None
    if feats.ndim != 2 or feats.dtype.name not in DTYPES:
        raise DataError(f"{path}: expected a 2-D float32/float16 array, got {feats.dtype} {feats.shape}")
    return feats


@attrs.define
class ExtractReport:
    """What an extraction did: rows in the file, rows added and skipped, unreadable images (name -> why)."""

    out: Path
    ids_file: Path
    rows: int
    added: int
    skipped: int
    errors: dict[str, str]
    seconds: float
    dim: int | None

    @property
    def images_per_s(self) -> float | None:
        """Images added per second of extraction, or None when none was added."""
        return self.added / self.seconds if self.added and self.seconds > 0 else None


def _open(out: Path, extractor: ImageFeatureExtractor, spec: dict[str, Any], *, dtype: str | None, force: bool,
          resolve_type: TypeResolver | None) -> FeatureFile:
    """The feature file to grow: the one at ``out`` (checked against ``spec`` and ``dtype``) or a new one; the
    caller holds the lock."""
    if dtype is not None and dtype not in DTYPES:
        raise DataError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    _check_ours(out)
    current = None if force else FeatureFile.read(out)
    if current is not None:
        _check_fits(current, spec, dtype, resolve_type)
    if current is None:
        current = FeatureFile(out, np.zeros((0, extractor.dim or 0), dtype or "float32"), [])
    try:  # the checksums committed now: _refresh takes in only what is committed after them
        record = {} if force else read_record(meta_path(out))
    except DataError:
        record = {}
    current.meta = {"extractor": spec, "dim": current.features.shape[1] or extractor.dim,
                    **{k: record[k] for k in ("features_sha256", "ids_sha256") if k in record}}
    return current


def _check_ours(out: Path) -> None:
    """Refuse to grow or replace (even with ``force``) feature files vsekit did not write: ``out``, its ids file
    or its record existing without a record naming an extractor (which every vsekit writer leaves first)."""
    record = meta_path(out)
    present = [p for p in (out, ids_path(out), record) if p.exists() or p.is_symlink()]
    if not present:
        return
    if record.is_file() and not record.is_symlink() and isinstance(read_record(record).get("extractor"), dict):
        return
    raise DataError(f"{present[0]}: exists and was not written by vsekit extract (no {record.name} naming an "
                    f"extractor beside it): vsekit does not overwrite files it did not write; choose another -o")


def feature_keys(paths: Sequence[str | Path], where: str, ids: Sequence[str] | None = None) -> list[str]:
    """The key each of ``paths`` is looked up by in a feature file: its file name, exactly as written (no case
    or space folding), as :meth:`FeatureFile.read` and the ``precomputed`` extractor store ids.

    ``ids`` (one per path, default the paths as given) name the images in the error; ``where`` (a file, or "")
    starts it.

    Raises:
        DataError: two different images (two ``ids``, or without ids two paths) with one file name (``x/B.jpg``
            and ``y/B.jpg``, or ``B.jpg`` and ``./B.jpg``): they would share one feature row, so they are
            refused rather than one silently given the other's features.
    """
    seen: dict[str, int] = {}
    keys = []
    for i, p in enumerate(paths):
        key = Path(p).name
        j = seen.setdefault(key, i)
        if j != i and (ids[j] != ids[i] if ids else Path(paths[j]) != Path(p)):
            names = ids or [str(q) for q in paths]
            raise DataError(f"{where + ': ' if where else ''}two images named {key!r} ({names[j]} and {names[i]}): "
                            f"feature rows are looked up by file name, so they would share one row; rename one "
                            f"or extract them into separate files")
        keys.append(key)
    return keys
def _check_fits(current: FeatureFile, spec: dict[str, Any], dtype: str | None,
                resolve_type: TypeResolver | None) -> None:
    """Refuse to add rows of the extractor ``spec`` (and ``dtype``, if given) to a file made otherwise."""
    old, out = current.meta.get("extractor"), current.out
    if old is not None and not same_extractor(old, spec, resolve_type):
        raise DataError(f"{out} was made by another extractor ({json.dumps(old)}), not {json.dumps(spec)}: "
                        "choose another output, or start over (vsekit extract --force)")
    if dtype is not None and current.features.dtype.name != dtype and len(current.ids):
        raise DataError(f"{out} holds {current.features.dtype} rows, not {dtype}: choose another output, "
                        "or start over (--force)")


def _refresh(current: FeatureFile, resolve_type: TypeResolver | None) -> None:
    """Take into ``current`` what another writer committed since (under the lock; DataError: other extractor)."""
    record = read_record(meta_path(current.out))
    if all(record.get(k) == current.meta.get(k) for k in ("features_sha256", "ids_sha256")):
        return  # nobody else committed
    fresh = FeatureFile.read(current.out)
    if fresh is None or fresh.ids == current.ids:
        return
    _check_fits(fresh, current.meta["extractor"], None, resolve_type)
    current.features, current.ids = fresh.features, fresh.ids


def _missing(paths: list[Path], have: dict[str, int]) -> tuple[list[Path], int]:
    """The paths whose names are not in ``have`` (each name once, first occurrence), and how many were."""
    have = dict(have)
    skipped = sum(p.name in have for p in paths)
    todo: list[Path] = []
    for p in paths:
        if p.name not in have:
            have[p.name] = -1
            todo.append(p)
    return todo, skipped


def _append(current: FeatureFile, part: list[Path], got: Extracted, resolve_type: TypeResolver | None) -> int:
    """Under the lock: re-read, add the chunk's readable rows not there yet, commit; how many were added."""
    rows = np.asarray(got.features)
    good = [p.name for p, ok in zip(part, got.ok, strict=True) if ok]
    if not good:
        return 0
    with lock_beside(current.out):
        _refresh(current, resolve_type)
        index = current.index
        new = [i for i, name in enumerate(good) if name not in index]  # another writer may have added some
        if not new:
            return 0
        if current.ids and rows.shape[1] != current.features.shape[1]:
            raise DataError(f"{current.out}: holds {current.features.shape[1]}-d rows, the extractor gives "
                            f"{rows.shape[1]}-d ones")
        base = current.features if current.ids else current.features.reshape(0, rows.shape[1])
        current.features = np.concatenate([base, rows[new].astype(base.dtype)])
        current.ids += [good[i] for i in new]
        current.meta["dim"] = int(rows.shape[1])
        current.write()
    return len(new)


def _extract_into(current: FeatureFile, extractor: ImageFeatureExtractor, todo: list[Path], *, progress: bool,
                  chunk: int, resolve_type: TypeResolver | None) -> tuple[int, dict[str, str]]:
    """Extract ``todo`` in chunks into ``current`` under one progress bar; (rows added, unreadable images)."""
    from tqdm.auto import tqdm

    errors: dict[str, str] = {}
    added = 0
    inner = getattr(extractor, "progress", None)
    bar = tqdm(total=len(todo), unit="img", desc=f"extract {current.out.name}", disable=not progress or not todo,
               dynamic_ncols=True)
    try:
        if inner is not None:
            extractor.progress = False  # one bar, this one
        for lo in range(0, len(todo), chunk):
            part = todo[lo: lo + chunk]
            got = extractor.extract(part)
            errors.update(got.errors)
            added += _append(current, part, got, resolve_type)
            bar.update(len(part))
            if errors:
                bar.set_postfix(unreadable=len(errors))
    finally:
        bar.close()
        if inner is not None:
            extractor.progress = inner
    return added, errors


def update(extractor: ImageFeatureExtractor, paths: Sequence[str | Path], out: str | Path, *,
           spec: dict[str, Any], dtype: str | None = None, force: bool = False, progress: bool = True,
           chunk: int = 256, resolve_type: TypeResolver | None = None) -> tuple[FeatureFile, ExtractReport]:
    """Add the features of ``paths`` missing from the file ``out`` (created if needed); return it and a report.

    ``spec``: the extractor's type and options as written in the record; a file made with other options that
    change the numbers is refused. ``dtype``: ``float32`` or ``float16`` (default: the existing file's, else
    float32). ``force``: start a new file. ``resolve_type``: see :func:`same_extractor`. Another process
    extracting into ``out`` at the same time is waited for at each commit (the lock ``.X.npy.lock``), and the rows
    each adds are kept.

    Raises:
        DataError: a bad dtype, a file made by another extractor or holding another dtype or dim, two images
            with one file name (:func:`feature_keys`), a file name that cannot be one line of the ids file.
    """
    out = Path(out)
    paths = [Path(p) for p in paths]
    record_text(feature_keys(paths, str(out)), "image file name", str(ids_path(out)))  # nothing is extracted yet
    with lock_beside(out):
        current = _open(out, extractor, spec, dtype=dtype, force=force, resolve_type=resolve_type)
        if force:
            current.write()  # start over now (an empty, consistent file even if nothing is readable)
    todo, skipped = _missing(paths, current.index)
    start = time.perf_counter()
    added, errors = _extract_into(current, extractor, todo, progress=progress, chunk=chunk, resolve_type=resolve_type)
    seconds = time.perf_counter() - start
    report = ExtractReport(out, ids_path(out), len(current.ids), added, skipped, errors, seconds,
                           int(current.features.shape[1]) or extractor.dim)
    return current, report


def extract_cached(extractor: ImageFeatureExtractor, paths: Sequence[str | Path], out: str | Path, *,
                   spec: dict[str, Any], progress: bool | None = None,
                   resolve_type: TypeResolver | None = None) -> Extracted:
    """Features of ``paths`` through the feature file ``out``: extract only images not in it yet.

    Returns an :class:`Extracted` for ``paths`` in order, as
    ``extractor.extract(paths)`` would (images unreadable now are not ``ok``).
    ``progress``: default, the extractor's own ``progress`` setting (if any).
    ``spec`` and ``resolve_type``: as in :func:`update`.
    """
    if progress is None:
        progress = bool(getattr(extractor, "progress", True))
    current, report = update(extractor, paths, out, spec=spec, progress=progress, resolve_type=resolve_type)
    index = current.index
    names = feature_keys(paths, str(out))
    ok = np.array([n in index for n in names], dtype=bool)
    rows = [index[n] for n in names if n in index]
    dim = current.features.shape[1]
    feats = current.features[rows].astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    errors = {n: report.errors.get(n, "not in the feature file") for n, good in zip(names, ok, strict=True) if not good}
    return Extracted(feats, ok, errors, [Path(out), ids_path(out)])
