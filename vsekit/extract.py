"""Image files -> a feature file, resumable: ``vsekit extract``.

The feature file itself (its layout: ``features.npy`` + ``features_ids.txt`` + ``features_extractor.json``;
reading it checked against its record's checksums, growing it as one commit under its lock, so that two
``vsekit extract`` runs into one output add up; the ``flickr8k`` reader's cache) lives in
:mod:`vsekit.image.cache`. This module adds what needs the registry and the spec: extractors named by
registered name or TOML file, and records that match one class under two names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from vsekit.data import files
from vsekit.errors import SpecError
from vsekit.image import cache
from vsekit.image.base import Extracted, ImageFeatureExtractor
from vsekit.image.cache import DTYPES, RUNTIME_OPTIONS, ExtractReport, FeatureFile, feature_keys, ids_path, meta_path

__all__ = [
    "DTYPES",
    "RUNTIME_OPTIONS",
    "ExtractReport",
    "FeatureFile",
    "describe",
    "extract_cached",
    "extract_folder",
    "ids_path",
    "list_images",
    "meta_path",
    "recorded_extractor",
    "resolve_extractor",
    "update",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = files.IMAGE_SUFFIXES  # one suffix set: vsekit.data.files


# --------------------------------------------------------------------------
# inputs


def list_images(inputs: Iterable[str | Path]) -> list[Path]:
    """The images to extract (:func:`vsekit.data.files.list_images`), refusing two with the same file name.

    Raises:
        DataError: as :func:`vsekit.data.files.list_images`, and for two images with the same file name
            (ids are file names).
    """
    paths = list(dict.fromkeys(files.list_images(inputs)))
    feature_keys(paths, "")  # the one check: vsekit.image.cache
    return paths


def resolve_extractor(name_or_file: str | Path, options: Sequence[str] = ()) -> Any:
    """A :class:`vsekit.spec.Component` from a registered name, a component TOML file or a spec.

    The TOML file holds either one component table (``type = "..."`` and its
    options at the top level) or a whole spec whose ``[data.features]`` names
    the extractor. ``options`` are ``KEY=VALUE`` overrides of its options
    (values are TOML literals, e.g. ``ten_crop=true``).
    """
    from vsekit import spec as spec_mod

    arg = str(name_or_file)
    path = Path(arg)
    if arg.endswith(".toml") or path.is_file():
        raw = spec_mod.read_toml(path)
        base, where = path.resolve().parent, str(path)
        data = raw.get("data")
        if "type" in raw:
            table, section = dict(raw), "extractor"
        elif isinstance(data, dict) and isinstance(data.get("features"), dict):
            table, section = dict(data["features"]), "data.features"
        else:
            raise SpecError(f"{path}: no image feature extractor: expected 'type = ...' at the top level "
                            "or a [data.features] table")
    else:
        table, section, base, where = {"type": arg}, "extractor", Path.cwd(), arg
    for item in options:
        keys, value = spec_mod.parse_override(item)
        if len(keys) != 1:
            raise SpecError(f"--set {item!r}: expected an option of the extractor, e.g. ten_crop=true")
        table[keys[0]] = value
    try:
        return spec_mod.build_component("image_feature_extractor", table, section, base)
    except spec_mod.SpecProblems as exc:
        raise SpecError("\n".join(f"{where}: [{p}] {m}" for p, m in exc.problems)) from None


def describe(extractor: ImageFeatureExtractor) -> dict[str, Any]:
    """``{"type": ..., options...}`` for an extractor instance (its class path and attrs config)."""
    from vsekit.spec import converter

    cls = type(extractor)
    config = getattr(extractor, "config", None)
    options = converter.unstructure(config) if attrs.has(type(config)) else {}
    return {"type": f"{cls.__module__}:{cls.__qualname__}", **options}


# --------------------------------------------------------------------------
# the feature file, with extractor names resolved through the registry


def resolve_type(name: str) -> Any:
    """The image feature extractor class named ``name`` (registered name or ``module:Class``), resolved without
    importing anything (a feature file's record is data: :func:`vsekit.registry.loaded_class`).

    Raises:
        RegistryError: the name resolves to no extractor, or only by importing code.
    """
    from vsekit import registry
    from vsekit.errors import RegistryError

    cls = registry.loaded_class("image_feature_extractor", name)
    if cls is None:
        raise RegistryError(f"{name!r} is not a registered or already imported image feature extractor")
    return cls


def recorded_extractor(files: Iterable[str | Path]) -> dict[str, Any] | None:
    """:func:`vsekit.image.cache.recorded_extractor`, one class under two names being one extractor."""
    return cache.recorded_extractor(files, resolve_type)


def update(extractor: ImageFeatureExtractor, paths: Sequence[str | Path], out: str | Path, *,
           spec: dict[str, Any] | None = None, dtype: str | None = None, force: bool = False,
           progress: bool = True, chunk: int = 256) -> tuple[FeatureFile, ExtractReport]:
    """:func:`vsekit.image.cache.update`, ``spec`` defaulting to :func:`describe` of ``extractor``."""
    spec = spec if spec is not None else describe(extractor)
    return cache.update(extractor, paths, out, spec=spec, dtype=dtype, force=force, progress=progress, chunk=chunk,
                        resolve_type=resolve_type)


def extract_cached(extractor: ImageFeatureExtractor, paths: Sequence[str | Path], out: str | Path, *,
                   spec: dict[str, Any] | None = None, progress: bool | None = None) -> Extracted:
    """:func:`vsekit.image.cache.extract_cached`, ``spec`` defaulting to :func:`describe` of ``extractor``."""
    spec = spec if spec is not None else describe(extractor)
    return cache.extract_cached(extractor, paths, out, spec=spec, progress=progress, resolve_type=resolve_type)


def extract_folder(extractor: Any, inputs: Iterable[str | Path], out: str | Path = "features.npy", *,
                   dtype: str | None = None, force: bool = False, progress: bool = True,
                   chunk: int = 256) -> ExtractReport:
    """Extract the features of image folders and files into ``out`` (see the module docstring).

    ``extractor``: a registered name (``"efficientnet_lite0"``), a
    :class:`vsekit.spec.Component`, or an :class:`ImageFeatureExtractor`.
    Resumable: images already in ``out`` are skipped, new ones appended.
    """
    from vsekit.spec import Component

    paths = list_images(inputs)
    if isinstance(extractor, (str, Path)):
        extractor = resolve_extractor(extractor)
    spec = None
    if isinstance(extractor, Component):
        spec = extractor.to_dict()
        extractor = extractor.build()
    if not isinstance(extractor, ImageFeatureExtractor):
        raise SpecError(f"{extractor!r} is not an image feature extractor")
    _, report = update(extractor, paths, out, spec=spec, dtype=dtype, force=force, progress=progress, chunk=chunk)
    return report
