"""Feature files: image rows + ids + a record of the extractor that made them, read, written and grown.

A feature file is a pair (plus a small record of what made it)::

    features.npy            float32 or float16, one row per image
    features_ids.txt        the image file names, one per line, row order
    features_extractor.json the extractor's type and options

The ids file is the ``.npy`` path with ``.npy`` replaced by ``_ids.txt``,
except that a trailing ``_ims`` is dropped first, so ``test_ims.npy`` pairs
with ``test_ids.txt``: the layout of the ``precomp`` reader and of the
``precomputed`` extractor, which read such folders as they are.

Every write is atomic (:func:`vsekit.io.atomic_write`), and new rows are
saved every ``chunk`` images. A rerun skips the images already in the file
and appends the others, so an interrupted extraction resumes where it
stopped. Images that cannot be read are reported by name and never stop
the batch (they are not written, so a rerun tries them again). This is the
cache of the ``flickr8k`` reader and the store of ``vsekit extract``
(:mod:`vsekit.extract`).

Where a function compares extractor records, ``resolve_type`` (a callable
``type name -> class``) lets two names of one class (a registered name and
``module:Class``) match; without it the names must be equal.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from vsekit.errors import DataError
from vsekit.image.base import Extracted, ImageFeatureExtractor
from vsekit.io import atomic_write, atomic_write_text, read_lines
from vsekit.limits import read_json

log = logging.getLogger(__name__)

#: Extractor options that do not change the numbers: a file extracted with other values of these is reused.
RUNTIME_OPTIONS = frozenset({"batch_size", "workers", "threads", "device", "progress"})
#: The dtypes a feature file may hold.
DTYPES = ("float32", "float16")

TypeResolver = Callable[[str], Any]
"""A function from an extractor's type name to its class (may raise when the name no longer resolves)."""


def _base(out: Path) -> str:
    stem = out.name[: -len(".npy")] if out.name.endswith(".npy") else out.name
    return stem[: -len("_ims")] if stem.endswith("_ims") and len(stem) > len("_ims") else stem


def ids_path(out: str | Path) -> Path:
    """The ids file beside a feature file: ``X.npy`` -> ``X_ids.txt``, ``X_ims.npy`` -> ``X_ids.txt``."""
    out = Path(out)
    return out.with_name(_base(out) + "_ids.txt")


def meta_path(out: str | Path) -> Path:
    """The record of the extractor beside a feature file: ``X_extractor.json``."""
    out = Path(out)
    return out.with_name(_base(out) + "_extractor.json")


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
        """The file at ``out``, or None when there is none yet.

        Rows past the end of the ids file (an extraction stopped between the
        two writes) are dropped with a warning: they are extracted again.

        Raises:
            DataError: an unreadable array or record, more ids than rows, or an id twice.
        """
        out = Path(out)
        ids_file, meta_file = ids_path(out), meta_path(out)
        if not out.exists():
            return None
        try:
            feats = np.load(out, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{out}: not a readable .npy array ({exc}); delete it or use --force") from None
        if feats.ndim != 2 or feats.dtype.name not in DTYPES:
            raise DataError(f"{out}: expected a 2-D float32/float16 array, got {feats.dtype} {feats.shape}")
        ids = read_lines(ids_file, "image id", allow_empty_file=True) if ids_file.exists() else []
        if len(ids) > len(feats):
            raise DataError(f"{ids_file} has {len(ids)} ids but {out} has {len(feats)} rows")
        if len(ids) < len(feats):
            log.warning("%s: %d row(s) without an id in %s (interrupted?) dropped", out, len(feats) - len(ids),
                        ids_file.name)
            feats = feats[: len(ids)]
        if len(set(ids)) != len(ids):
            raise DataError(f"{ids_file}: an image id appears twice")
        meta: dict[str, Any] = {}
        if meta_file.exists():
            try:
                meta = read_json(meta_file)  # size and nesting bounded (vsekit.limits)
            except OSError as exc:
                raise DataError(f"{meta_file}: not readable ({exc})") from None
        return cls(out, feats, ids, meta)

    def write(self) -> None:
        """Record, rows, then ids; each atomically (rows without ids are dropped on read)."""

        def save(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, self.features, allow_pickle=False)

        atomic_write_text(meta_path(self.out), json.dumps(self.meta, indent=1) + "\n")
        atomic_write(self.out, save)
        atomic_write_text(ids_path(self.out), "".join(f"{i}\n" for i in self.ids))


def same_extractor(a: dict[str, Any], b: dict[str, Any], resolve_type: TypeResolver | None = None) -> bool:
    """Same class (by equal type names, or names ``resolve_type`` maps to one class) and the same options,
    :data:`RUNTIME_OPTIONS` aside."""

    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in RUNTIME_OPTIONS and k != "type"}

    def cls(d: dict[str, Any]) -> Any:
        try:
            return resolve_type(str(d.get("type")))  # type: ignore[misc]
        except Exception:  # no longer importable: compare the names
            return d.get("type")

    if strip(a) != strip(b):
        return False
    return a.get("type") == b.get("type") or (resolve_type is not None and cls(a) == cls(b))


def recorded_extractor(files: Iterable[str | Path], resolve_type: TypeResolver | None = None) -> dict[str, Any] | None:
    """The extractor that made these feature files, from the ``X_extractor.json`` records beside them.

    Args:
        files: data files (e.g. a split's ``files``); each ``.npy`` is looked up
            with :func:`meta_path`, other files are ignored.
        resolve_type: see :func:`same_extractor`.

    Returns:
        The record's extractor table ``{"type": NAME, option: value, ...}``
        without the options that do not change the numbers
        (:data:`RUNTIME_OPTIONS`), or None when no file has a record.

    Raises:
        DataError: a record is unreadable, or two records name different
            extractors (features made by different extractors do not mix).
    """
    found: tuple[Path, dict[str, Any]] | None = None
    for f in dict.fromkeys(Path(f) for f in files):
        record = meta_path(f)
        if f.suffix != ".npy" or not record.is_file():
            continue
        try:
            table = read_json(record, what="extractor record").get("extractor")
        except (OSError, AttributeError) as exc:
            raise DataError(f"{record}: not a readable extractor record ({exc})") from None
        if not isinstance(table, dict) or not isinstance(table.get("type"), str):
            raise DataError(f"{record}: expected {{\"extractor\": {{\"type\": NAME, ...}}}}, got {table!r}")
        table = {k: v for k, v in table.items() if k not in RUNTIME_OPTIONS}
        if found is None:
            found = (record, table)
        elif not same_extractor(found[1], table, resolve_type):
            raise DataError(f"{record} names another image feature extractor ({json.dumps(table)}) than "
                            f"{found[0]} ({json.dumps(found[1])}): features of different extractors do not mix")
    return found[1] if found else None


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
    """The feature file to grow: the one at ``out`` (checked against ``spec`` and ``dtype``) or a new one."""
    if dtype is not None and dtype not in DTYPES:
        raise DataError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    current = None if force else FeatureFile.read(out)
    if current is not None:
        old = current.meta.get("extractor")
        if old is not None and not same_extractor(old, spec, resolve_type):
            raise DataError(f"{out} was made by another extractor ({json.dumps(old)}), not {json.dumps(spec)}: "
                            "choose another output, or start over (vsekit extract --force)")
        if dtype is not None and current.features.dtype.name != dtype and len(current.ids):
            raise DataError(f"{out} holds {current.features.dtype} rows, not {dtype}: choose another output, "
                            "or start over (--force)")
    if current is None:
        dim = extractor.dim or 0
        current = FeatureFile(out, np.zeros((0, dim), dtype or "float32"), [])
    current.meta = {"extractor": spec, "dim": current.features.shape[1] or extractor.dim}
    return current


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


def _append(current: FeatureFile, part: list[Path], got: Extracted) -> int:
    """Append the readable rows of one extracted chunk and write the file; the number of rows added."""
    rows = np.asarray(got.features)
    good = [p.name for p, ok in zip(part, got.ok, strict=True) if ok]
    if not good:
        return 0
    if current.ids and rows.shape[1] != current.features.shape[1]:
        raise DataError(f"{current.out}: holds {current.features.shape[1]}-d rows, the extractor gives "
                        f"{rows.shape[1]}-d ones")
    base = current.features if current.ids else current.features.reshape(0, rows.shape[1])
    current.features = np.concatenate([base, rows.astype(base.dtype)])
    current.ids += good
    current.meta["dim"] = int(rows.shape[1])
    current.write()
    return len(good)


def _extract_into(current: FeatureFile, extractor: ImageFeatureExtractor, todo: list[Path], *, progress: bool,
                  chunk: int) -> tuple[int, dict[str, str]]:
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
            added += _append(current, part, got)
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
    float32). ``force``: start a new file. ``resolve_type``: see :func:`same_extractor`.

    Raises:
        DataError: a bad dtype, a file made by another extractor or holding another dtype or dim.
    """
    out = Path(out)
    paths = [Path(p) for p in paths]
    current = _open(out, extractor, spec, dtype=dtype, force=force, resolve_type=resolve_type)
    todo, skipped = _missing(paths, current.index)
    start = time.perf_counter()
    added, errors = _extract_into(current, extractor, todo, progress=progress, chunk=chunk)
    if not added and not current.ids and force:
        current.write()  # --force on nothing readable still leaves an empty, consistent file
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
    names = [Path(p).name for p in paths]
    ok = np.array([n in index for n in names], dtype=bool)
    rows = [index[n] for n in names if n in index]
    dim = current.features.shape[1]
    feats = current.features[rows].astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    errors = {n: report.errors.get(n, "not in the feature file") for n, good in zip(names, ok, strict=True) if not good}
    return Extracted(feats, ok, errors, [Path(out), ids_path(out)])
