"""Field helpers for component configs: validators, path fields and nested component fields.

A component's attrs ``Config`` uses these (``positive()``, ``one_of(...)``, ``path_field()``, ...); they raise
:class:`FieldError`, which the spec turns into a message naming the key. This module imports only attrs, so
components, plugins and the spec share it without importing one another.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "EMBEDDED_PREFIX",
    "EMBEDDED_ROOT",
    "FieldError",
    "check",
    "component_field",
    "embedded_path",
    "in_range",
    "non_negative",
    "one_of",
    "path_field",
    "positive",
    "resolve_path",
    "resolve_paths",
]

EMBEDDED_PREFIX = "vsekit:"
#: The folder of the datasets packaged with vsekit (``vsekit:NAME`` names ``EMBEDDED_ROOT / NAME``).
EMBEDDED_ROOT = Path(__file__).resolve().parent / "datasets"


def embedded_path(value: str) -> Path:
    """Resolve ``vsekit:NAME`` to the packaged dataset folder ``vsekit/datasets/NAME``; other values as paths.

    Raises:
        DataError: no packaged dataset of that name.
    """
    from vsekit.errors import DataError

    if value.startswith(EMBEDDED_PREFIX):
        name = value[len(EMBEDDED_PREFIX):]
        path = EMBEDDED_ROOT / name
        if not path.is_dir():
            known = sorted(p.name for p in EMBEDDED_ROOT.iterdir() if p.is_dir()) if EMBEDDED_ROOT.is_dir() else []
            raise DataError(f"no embedded dataset {value!r} — known: {', '.join(EMBEDDED_PREFIX + k for k in known)}")
        return path
    return Path(value)


# --------------------------------------------------------------------------
# field helpers for component configs


class FieldError(ValueError):
    """A config value that has the right type but a wrong value."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def check(pred: Callable[[Any], bool], what: str) -> Callable[[Any, attrs.Attribute, Any], None]:
    """An attrs validator: ``pred(value)`` must hold (None passes).

    Raises:
        FieldError: when it does not, saying ``expected {what}, got {value!r}``.
    """
    def validator(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None and not pred(value):
            raise FieldError(attribute.name, f"expected {what}, got {value!r}")

    return validator


def positive() -> Callable:
    """A validator: the value (if not None) is > 0; raises :class:`FieldError`."""
    return check(lambda v: v > 0, "a number > 0")


def non_negative() -> Callable:
    """A validator: the value (if not None) is >= 0; raises :class:`FieldError`."""
    return check(lambda v: v >= 0, "a number >= 0")


def in_range(lo: float, hi: float) -> Callable:
    """A validator: ``lo <= value <= hi`` (if not None); raises :class:`FieldError`."""
    return check(lambda v: lo <= v <= hi, f"a number in [{lo}, {hi}]")


def one_of(*choices: Any) -> Callable:
    """A validator: the value (if not None) is one of ``choices``; raises :class:`FieldError`."""
    return check(lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))


def path_field(default: Any = None, **kw: Any) -> Any:
    """A config field holding a path; relative paths resolve from the spec file's folder."""
    return attrs.field(default=default, metadata={"vsekit_path": True}, **kw)


def component_field(kind: str, default: Any = None) -> Any:
    """A config field holding a nested component table (e.g. a reader's image feature extractor)."""
    return attrs.field(default=default, metadata={"vsekit_component": kind})


def resolve_path(value: str | None, base: Path) -> str | None:
    """``value`` as an absolute path string, relative ones taken from ``base``; ``vsekit:`` names and None as given."""
    if value is None or value.startswith(EMBEDDED_PREFIX):
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def portable(record: Any, base: str | Path) -> Any:
    """``record`` (a JSON-like value: dicts, lists, strings) with every absolute path string, as a value or a dict
    key, made relative to ``base`` (the folder the record is written in), the inverse of :func:`resolve_path`: a
    run folder or a checkpoint records no path of the machine that made it, and reading it back against its own
    folder gives the same files. Other values, ``vsekit:`` names and paths on another drive are kept."""
    if isinstance(record, dict):
        return {portable(k, base): portable(v, base) for k, v in record.items()}
    if isinstance(record, (list, tuple)):
        return type(record)(portable(v, base) for v in record)
    if isinstance(record, str) and os.path.isabs(record) and ": " not in record and "\n" not in record:
        try:
            return Path(os.path.relpath(record, Path(base).resolve())).as_posix()
        except ValueError:  # another drive (Windows): no relative path exists
            return record
    return record


def resolve_paths(config: Any, base: Path) -> Any:
    """Return ``config`` with every :func:`path_field` resolved against ``base``."""
    changes = {}
    for field in attrs.fields(type(config)):
        if field.metadata.get("vsekit_path"):
            value = getattr(config, field.name)
            if isinstance(value, str):
                changes[field.name] = resolve_path(value, base)
            elif isinstance(value, (list, tuple)):
                changes[field.name] = type(value)(resolve_path(v, base) for v in value)
    return attrs.evolve(config, **changes) if changes else config
