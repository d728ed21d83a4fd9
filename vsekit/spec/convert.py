"""Structuring spec tables with cattrs, and every problem as one readable (TOML path, message) pair.

:func:`structure` turns a TOML table into an attrs class with the strict
:data:`converter` (no extra keys; ``1`` is not a float's ``True``), and flattens
cattrs' error tree, attrs' validator errors and :class:`~vsekit.config.FieldError`
into :class:`SpecProblems`: one ``(toml path, message)`` pair per problem,
with did-you-mean for unknown keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,  # a str subclass carrying .index and .type
    StructureHandlerNotFoundError,
)

from vsekit.config import FieldError


class SpecProblems(Exception):
    """Problems found while reading part of a spec, before they become one :class:`~vsekit.errors.SpecError`.

    ``problems`` is a list of ``(toml_path, message)`` pairs, e.g. ``("loss.margin", "expected float, got 'big'")``.
    Code that structures one table (a component, a config) catches it and adds the pairs to its own list, or
    turns them into a SpecError/DataError of its own wording.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(problems)
        self.problems = problems


def _strict(kind: type, accept: tuple[type, ...], reject: tuple[type, ...] = ()) -> Callable:
    def hook(value: Any, _t: Any) -> Any:
        if isinstance(value, reject) or not isinstance(value, accept):
            raise TypeError(f"expected {kind.__name__}, got {value!r}")
        return kind(value)

    return hook


def make_converter() -> cattrs.Converter:
    """A cattrs converter that forbids extra keys and takes int, float, str and bool only as themselves."""
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(int, _strict(int, (int,), (bool,)))
    conv.register_structure_hook(float, _strict(float, (int, float), (bool,)))
    conv.register_structure_hook(str, _strict(str, (str,)))
    conv.register_structure_hook(bool, _strict(bool, (bool,)))
    return conv


#: the converter every spec table and component config is structured with
converter = make_converter()
converter.register_unstructure_hook_func(lambda t: t.__name__ == "Component", lambda c: c.to_dict())


def type_name(t: Any) -> str:
    """A type as a message shows it: ``float``, ``list[str]``."""
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


def _messages(exc: BaseException, path: str, cls: type | None) -> list[tuple[str, str]]:
    """Flatten a cattrs error tree into (toml path, message) pairs."""
    out: list[tuple[str, str]] = []
    if isinstance(exc, ClassValidationError):
        for sub in exc.exceptions:
            notes = [n for n in getattr(sub, "__notes__", []) if hasattr(n, "name")]
            sub_cls = exc.cl if attrs.has(exc.cl) else cls
            if notes:
                note = notes[0]
                sub_path = f"{path}.{note.name}" if path else note.name
                if isinstance(sub, ClassValidationError):
                    out += _messages(sub, sub_path, sub.cl)
                else:
                    out += _messages_leaf(sub, sub_path, note.type)
            else:
                out += _messages(sub, path, sub_cls)
        return out
    if isinstance(exc, ForbiddenExtraKeysError):
        known = [f.name for f in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        for key in sorted(exc.extra_fields):
            close = difflib.get_close_matches(key, known, n=1)
            hint = f", did you mean {close[0]!r}?" if close else ""
            where = f"{path}.{key}" if path else key
            out.append((where, f"unknown key — known: {', '.join(known) or '(none)'}{hint}"))
        return out
    if isinstance(exc, FieldError):
        return [(f"{path}.{exc.name}" if path else exc.name, exc.message)]
    if isinstance(exc, TypeError) and "missing" in str(exc) and "required" in str(exc):
        return [(path, f"missing required key: {str(exc).split(':', 1)[-1].strip()}")]
    return _attrs_type_error(exc, path) or [(path, str(exc))]


def _attrs_type_error(exc: BaseException, path: str) -> list[tuple[str, str]] | None:
    """attrs' ``instance_of`` TypeError (message, attribute, type, value) as one readable problem."""
    args = getattr(exc, "args", ())
    if not (isinstance(exc, TypeError) and len(args) == 4 and isinstance(args[1], attrs.Attribute)):
        return None
    attribute, want, got = args[1], args[2], args[3]
    where = f"{path}.{attribute.name}" if path else attribute.name
    if got is None:
        return [(where, "missing required key")]
    return [(where, f"expected {type_name(want)}, got {got!r}")]


def _messages_leaf(exc: BaseException, path: str, typ: Any) -> list[tuple[str, str]]:
    if isinstance(exc, FieldError):
        return [(path, exc.message)]
    if isinstance(exc, IterableValidationError):  # one problem per bad list item: field[index]
        out: list[tuple[str, str]] = []
        for sub in exc.exceptions:
            notes = [n for n in getattr(sub, "__notes__", []) if isinstance(n, IterableValidationNote)]
            out += _messages_leaf(sub, f"{path}[{notes[0].index}]" if notes else path,
                                  notes[0].type if notes else typ)
        return out
    msg = str(exc)
    if not msg.startswith("expected"):
        msg = f"expected {type_name(typ)}: {msg}"
    return [(path, msg)]


def structure(data: Any, cls: type, path: str) -> Any:
    """Structure ``data`` into ``cls``; raise SpecError listing every problem under ``path``."""
    if attrs.has(cls) and not isinstance(data, dict):
        raise SpecProblems([(path, f"expected a table, got {data!r}")])
    try:
        return converter.structure(data, cls)
    except (ClassValidationError, ForbiddenExtraKeysError, FieldError) as exc:
        problems = _messages(exc, path, cls)
        subs = exc.exceptions if isinstance(exc, ClassValidationError) else [exc]
        if any(_validator_failed(e) for e in subs):  # attrs stops at the first failing validator
            problems = _all_field_errors(data, cls, path) or problems
        elif isinstance(data, dict):  # bad types or keys stop before the validators: check the other keys too
            bad = {n.name for e in subs for n in getattr(e, "__notes__", []) if hasattr(n, "name")}
            for e in subs:
                bad |= set(getattr(e, "extra_fields", ()))
            extra = _all_field_errors({k: v for k, v in data.items() if k not in bad}, cls, path, skip=bad)
            problems += [p for p in extra if p not in problems]
        raise SpecProblems(problems) from None
    except StructureHandlerNotFoundError as exc:  # a user Config field of a type TOML values cannot become
        raise SpecProblems([(path, f"{type_name(cls)} has a field vsekit cannot read from a spec: {exc}")]) from exc
    except (TypeError, ValueError) as exc:
        raise SpecProblems([(path, str(exc))]) from None
    except Exception as exc:  # a user Config's own checks (__attrs_post_init__, converters) may raise anything
        raise SpecProblems([(path, f"{type_name(cls)} refused these values: {type(exc).__name__}: {exc}")]) from exc


def _validator_failed(exc: BaseException) -> bool:
    """A validator's error from ``__init__`` (a FieldError, or attrs' own ValueError), not a per-key structuring one."""
    if isinstance(exc, FieldError):
        return True
    return isinstance(exc, ValueError) and not any(hasattr(n, "name") for n in getattr(exc, "__notes__", []))


def _all_field_errors(data: Any, cls: type, path: str, skip: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Every :class:`FieldError` of ``cls``'s validators on ``data`` (not only the first one)."""
    try:
        with attrs.validators.disabled():
            inst = converter.structure(data, cls)
    except Exception:
        return []
    out = []
    for field in attrs.fields(cls):
        if field.validator is None or field.name in skip:
            continue
        try:
            field.validator(inst, field, getattr(inst, field.name))
        except FieldError as err:
            out.append((f"{path}.{err.name}" if path else err.name, err.message))
        except (TypeError, ValueError) as err:  # attrs' own validators (instance_of, gt, in_, ...) or a user's
            where = f"{path}.{field.name}" if path else field.name
            out += _attrs_type_error(err, path) or [(where, _validator_message(err, field.name))]
    return out


def _validator_message(err: BaseException, name: str) -> str:
    """attrs' validator text ``'n' must be > 0: -1`` without the field name the problem's key already gives."""
    msg = str(err.args[0]) if err.args else str(err)
    return msg.removeprefix(f"'{name}' ").strip() or type(err).__name__
