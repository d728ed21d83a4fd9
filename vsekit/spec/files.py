"""Spec files: reading TOML, ``--set KEY=VALUE`` overrides, writing a spec dict back as TOML."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import tomli_w

from vsekit.errors import SpecError


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot stand in a spec, or None: a NUL character, or bytes that are not UTF-8 (what Python
    makes of such bytes in a command line); no spec file can hold either, and no file name."""
    if "\0" in text:
        return f"{text!r} holds a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"{text!r} holds bytes that are not UTF-8 text"
    return None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return [s for v in items for s in _strings(v)]


def parse_override(item: str) -> tuple[list[str], Any]:
    """``train.lr=1e-4`` -> (["train", "lr"], 1e-4); values are TOML literals, else strings.

    Raises:
        SpecError: ``item`` is not ``KEY=VALUE`` with a non-empty dotted key, its value is nested too deeply,
            or it holds a NUL character or bytes that are not UTF-8 (also as a TOML escape, ``"\u0000"``).
    """
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. train.lr=1e-4")
    from vsekit.limits import MAX_DEPTH, nesting_depth

    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    except RecursionError:
        parsed = None
    if parsed is None or nesting_depth(parsed) > MAX_DEPTH:
        raise SpecError(f"--set {key}: the value is nested more than {MAX_DEPTH} levels deep (vsekit.limits)")
    for text in (item, *_strings(parsed)):
        if problem := text_problem(text):
            raise SpecError(f"--set {item!r}: {problem[problem.index('holds'):]}")
    return key.split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``raw`` with every ``KEY=VALUE`` of ``overrides`` set (tables made as needed).

    Raises:
        SpecError: a malformed override, or a key whose parent is not a table.
    """
    raw = copy.deepcopy(raw)
    for item in overrides:
        keys, value = parse_override(item)
        node = raw
        for k in keys[:-1]:
            nxt = node.setdefault(k, {})
            if not isinstance(nxt, dict):
                raise SpecError(f"--set {item!r}: {'.'.join(keys[:-1])} is not a table")
            node = nxt
        node[keys[-1]] = value
    return raw


def read_toml(path: str | Path) -> dict[str, Any]:
    """The parsed TOML file at ``path``, read through :func:`vsekit.limits.read_toml` (size and nesting bounded).

    Raises:
        SpecError: no such file, not valid TOML, not UTF-8, too large or nested too deeply.
        OSError: the file cannot be read (no permission).
    """
    from vsekit import limits

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    return limits.read_toml(path, SpecError)


def _without_none(table: dict[str, Any]) -> dict[str, Any]:
    return {k: _without_none(v) if isinstance(v, dict) else v for k, v in table.items() if v is not None}


def dumps_toml(data: dict[str, Any]) -> str:
    """``data`` (a spec dict: tables, scalars, lists) as TOML text; keys whose value is None are left out.

    ``tomllib.loads(dumps_toml(d))`` gives ``d`` back, less its None values.

    Raises:
        TypeError: a value TOML cannot hold (None in a list, an object).
    """
    return tomli_w.dumps(_without_none(data))
