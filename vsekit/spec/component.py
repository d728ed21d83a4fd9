"""Components in a spec: a ``type`` resolved through the registry, plus its structured ``Config``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import attrs

from vsekit import registry
from vsekit.config import resolve_paths
from vsekit.errors import RegistryError, UntrustedCodeError
from vsekit.spec.convert import SpecProblems, converter, structure


@attrs.frozen
class Component:
    """A component chosen by ``type`` plus its structured ``config``."""

    kind: str
    type: str
    config: Any

    @property
    def cls(self) -> type:
        """The component class (resolved through the registry each time)."""
        return registry.get(self.kind, self.type)

    def loaded_class(self, name: str) -> type:
        """The class of this component's kind that ``name`` (e.g. read from a data file) names, resolved without
        importing anything (:func:`vsekit.registry.loaded_class`).

        Raises:
            RegistryError: resolving ``name`` would import code (or it names nothing).
        """
        cls = registry.loaded_class(self.kind, name)
        if cls is None:
            raise RegistryError(f"{name!r} is not a registered or already imported {self.kind}; not imported")
        return cls

    def to_dict(self) -> dict[str, Any]:
        """``{"type": name, **config}`` as plain TOML-able data."""
        return {"type": self.type, **converter.unstructure(self.config)}

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """``cls(config, *args, **kwargs)``: the component object."""
        return self.cls(self.config, *args, **kwargs)


def build_component(kind: str, table: Any, path: str, base: Path) -> Component:
    """The :class:`Component` of ``kind`` that the TOML ``table`` (with its ``type`` key) at ``path`` describes.

    Relative ``file.py:Class`` names and path fields resolve against ``base``;
    nested component fields (``component_field``) are built too.

    Raises:
        SpecProblems: every problem of the table (unknown type, bad or extra keys).
    """
    if not isinstance(table, dict):
        raise SpecProblems([(path, f"expected a table with a 'type' key, got {table!r}")])
    table = dict(table)
    name = table.pop("type", None)
    if name is None:
        raise SpecProblems([(path, "missing key 'type'")])
    if not isinstance(name, str):
        raise SpecProblems([(f"{path}.type", f"expected a string, got {name!r}")])
    try:
        name = registry.canonical_name(name, base)  # file.py:Class -> absolute, so saved specs still resolve
        cls = registry.get(kind, name, base)
    except RegistryError as exc:
        raise SpecProblems([(f"{path}.type", str(exc))]) from None
    config_cls = getattr(cls, "Config", None)
    if config_cls is None or not attrs.has(config_cls):
        raise SpecProblems([(f"{path}.type", f"{name!r} has no attrs Config class")])
    config = resolve_paths(structure(table, config_cls, path), base)
    nested = {}
    for field in attrs.fields(config_cls):
        sub_kind = field.metadata.get("vsekit_component")
        value = getattr(config, field.name)
        if sub_kind and value is not None and not isinstance(value, Component):
            nested[field.name] = build_component(sub_kind, value, f"{path}.{field.name}", base)
    if nested:
        config = attrs.evolve(config, **nested)
    return Component(kind, name, config)


def import_user_module(name: str, base: Path) -> None:
    """Import one entry of a spec's ``imports``: a ``file.py`` (relative to ``base``) or a module name.

    Its ``@vsekit.register`` calls run. ``base`` (the spec's folder) is put on ``sys.path`` for module names.

    Raises:
        SpecProblems: the file or module cannot be imported, or raised while importing.
    """
    if name.endswith(".py"):
        path = Path(name) if Path(name).is_absolute() else base / name
        try:
            registry.import_file(path, "imports")
        except RegistryError as exc:
            raise SpecProblems([("imports", str(exc))]) from None
        except Exception as exc:  # the user's file raised; --debug shows the traceback
            raise SpecProblems([("imports", f"importing {str(path)!r} failed: {type(exc).__name__}: {exc}")]) from exc
        return
    if str(base) not in sys.path:
        sys.path.insert(0, str(base))
    try:
        importlib.import_module(name)
    except ImportError as exc:
        raise SpecProblems([("imports", f"cannot import {name!r}: {exc}")]) from None
    except RegistryError as exc:
        raise SpecProblems([("imports", f"importing {name!r}: {exc}")]) from None


def code_names(raw: Any, path: str = "") -> list[tuple[str, str]]:
    """``(where, name)`` for each name in a spec dict ``raw`` that resolving would import: every ``imports`` entry
    (a ``file.py`` or a module) and every ``type`` that is ``file.py:Class`` or a ``module:Class`` no installed
    plugin registered (:func:`vsekit.registry.names_registered_class`). Nothing is imported to find them.

    ``where`` is the TOML path (``imports``, ``model.sentence_encoder.type``); ``path`` prefixes it (for recursion).
    """
    found: list[tuple[str, str]] = []
    if isinstance(raw, list):
        for item in raw:
            found += code_names(item, path)
    if not isinstance(raw, dict):
        return found
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        if key == "imports" and not path:
            found += [(where, v) for v in ([value] if isinstance(value, str) else value if isinstance(value, list)
                                           else []) if isinstance(v, str)]
        elif key == "type" and isinstance(value, str) and ":" in value and not registry.names_registered_class(value):
            found.append((where, value))
        elif isinstance(value, (dict, list)):
            found += code_names(value, where)
    return found


def require_trust(raw: Any, source: str, *, trust_code: bool) -> None:
    """The one trust decision: refuse a spec dict read from a model file (checkpoint JSON, run folder, bank) that
    names code to import (:func:`code_names`), unless the caller opted in with ``trust_code``.

    A spec the user runs is their own request and is read with ``trust_code=True``; everything a model file
    names passes the caller's ``--trust-code`` / ``trust_code=`` down to here.

    Raises:
        UntrustedCodeError: one line: ``source``, the modules and files with where they are named, how to opt in.
    """
    names = [] if trust_code else code_names(raw)
    if names:
        shown = ", ".join(f"{name!r} ({where})" for where, name in names)
        raise UntrustedCodeError(f"{source}: names code that loading it would import: {shown}; not imported. If you "
                                 f"trust where it came from, pass --trust-code (trust_code=True in Python)")
