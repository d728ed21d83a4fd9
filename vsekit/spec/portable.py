"""A spec as a run folder or a checkpoint records it: with no path of the machine that made it.

:func:`portable_spec` makes relative (to the folder the record is written in) exactly the strings that
reading the spec back resolves against that folder: the path fields (:func:`vsekit.config.path_field`) of its
sections and components, nested components included, the ``file.py`` entries of ``imports`` and the file of a
``file.py:Class`` type. Any other string is kept as written, absolute or not: a component field that is not
declared a path field is not resolved on load, so making it relative would point it elsewhere. A component
whose class is not loaded in this process (nothing is imported here) keeps its fields as they are.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import attrs

from vsekit import registry
from vsekit.config import portable

#: where a spec holds its components, and their kinds
COMPONENT_TABLES: dict[tuple[str, ...], str] = {
    ("data",): "dataset_reader", ("loss",): "loss", ("model", "sentence_encoder"): "sentence_encoder",
    ("model", "image_encoder"): "image_encoder", ("eval", "metric"): "metric",
}


def portable_spec(spec: dict[str, Any], base: str | Path) -> dict[str, Any]:
    """A copy of the plain spec ``spec`` (as :meth:`vsekit.spec.Spec.to_dict` gives it) with the paths it
    resolves on load made relative to ``base`` (see the module notes); reading it back with ``base`` as its
    folder gives the same files."""
    out = copy.deepcopy(spec)
    imports = out.get("imports")
    if isinstance(imports, list):
        out["imports"] = [portable(i, base) if isinstance(i, str) and i.endswith(".py") else i for i in imports]
    section = out.get("output")
    if isinstance(section, dict) and "dir" in section:
        section["dir"] = portable(section["dir"], base)
    for keys, kind in COMPONENT_TABLES.items():
        parent: Any = out
        for key in keys[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and isinstance(parent.get(keys[-1]), dict):
            parent[keys[-1]] = _portable_component(parent[keys[-1]], kind, base)
    return out


def _portable_component(table: dict[str, Any], kind: str, base: str | Path) -> dict[str, Any]:
    name = table.get("type")
    if not isinstance(name, str):
        return table
    out = dict(table)
    if registry.is_file_name(name):
        out["type"] = portable(name, base)  # "/abs/x.py:Class" -> "../x.py:Class", resolved against base on load
    config = getattr(registry.loaded_class(kind, name), "Config", None)
    if config is None or not attrs.has(config):
        return out
    for field in attrs.fields(config):
        if field.name not in out:  # an option the table leaves to its default stays unset
            continue
        value = out[field.name]
        if field.metadata.get("vsekit_path"):
            out[field.name] = portable(value, base)
        elif (sub := field.metadata.get("vsekit_component")) and isinstance(value, dict):
            out[field.name] = _portable_component(value, sub, base)
    return out
