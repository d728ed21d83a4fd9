"""Components in a spec: a ``type`` resolved through the registry, plus its structured ``Config``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import attrs

from vsekit import registry
from vsekit.config import resolve_paths
from vsekit.errors import RegistryError
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
