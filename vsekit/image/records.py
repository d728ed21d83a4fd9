"""The files beside a feature file ``X.npy``: its ids (``X_ids.txt``) and the record of the extractor that made
it (``X_extractor.json``), and how two records are compared. The layout is described in :mod:`vsekit.image.cache`.

Where a function compares extractor records, ``resolve_type`` (a callable ``type name -> class``) lets two names
of one class (a registered name and ``module:Class``) match; without it the names must be equal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from vsekit.errors import DataError
from vsekit.io import sha256_file
from vsekit.limits import VERIFY_MAX_BYTES, read_json

#: Extractor options that do not change the numbers: a file extracted with other values of these is reused.
RUNTIME_OPTIONS = frozenset({"batch_size", "workers", "threads", "device", "progress"})
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


def read_record(record: Path) -> dict[str, Any]:
    """The record ``X_extractor.json`` as a dict ({} when there is none). Raises DataError when unreadable."""
    if not record.exists():
        return {}
    try:
        meta = read_json(record, what="extractor record")  # size and nesting bounded (vsekit.limits)
    except OSError as exc:
        raise DataError(f"{record}: not readable ({exc})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{record}: expected a JSON object, got {type(meta).__name__}")
    return meta


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
        files: data files (e.g. a split's ``files``); each ``.npy`` is looked up with :func:`meta_path`, other
            files are ignored.
        resolve_type: see :func:`same_extractor`.

    Returns:
        The record's extractor table ``{"type": NAME, option: value, ...}`` without the options that do not
        change the numbers (:data:`RUNTIME_OPTIONS`), or None when no file has a record.

    Raises:
        DataError: a record is unreadable, or two records name different extractors (they do not mix).
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


def check_recorded_rows(npy: Path) -> None:
    """Refuse a feature file whose record (``X_extractor.json``, written by ``vsekit extract``) names another
    sha256 for it: rows changed or replaced after they were extracted, so ids and rows may no longer pair up.
    Files without a record or checksum, and files over :data:`vsekit.limits.VERIFY_MAX_BYTES`, pass unchecked.

    Raises:
        DataError: the file is not the one its record names.
    """
    record = meta_path(npy)
    if not record.is_file() or not npy.is_file() or npy.stat().st_size > VERIFY_MAX_BYTES:
        return
    digest = read_record(record).get("features_sha256")
    if isinstance(digest, str) and sha256_file(npy) != digest:
        raise DataError(f"{npy}: not the file {record.name} records (its sha256 differs): the rows changed after "
                        f"`vsekit extract` wrote them, so they may no longer match the ids; extract again "
                        f"(vsekit extract --force) or remove {record.name}")
