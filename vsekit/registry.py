"""Per-kind component registries and the plugin manager.

There is one :class:`Registry` per component kind. They are filled by the
pluggy hooks of :mod:`vsekit.hookspecs`: first the built-ins
(:mod:`vsekit.builtin`), then every plugin exposed through the ``vsekit``
entry-point group. Besides registered names, :meth:`Registry.get` accepts
``"package.module:Class"`` and ``"path/to/file.py:Class"`` so that a user's
own subclass works from a spec without packaging.

Environment switches (read when plugins are first loaded):

``VSEKIT_PLUGINS``
    comma-separated entry-point names to load; set but empty loads none.
``VSEKIT_DISABLE_PLUGINS``
    comma-separated entry-point names never to load.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import attrs
import pluggy

from vsekit import hookspecs
from vsekit.errors import RegistryError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "vsekit"

#: kind -> (human label, hook name, dotted base class)
KINDS: dict[str, tuple[str, str, str]] = {
    "dataset_reader": ("dataset reader", "register_dataset_readers", "vsekit.data.readers:DatasetReader"),
    "sentence_encoder": ("sentence encoder", "register_sentence_encoders", "vsekit.text.base:SentenceEncoder"),
    "image_feature_extractor": (
        "image feature extractor",
        "register_image_feature_extractors",
        "vsekit.image.base:ImageFeatureExtractor",
    ),
    "image_encoder": ("image encoder", "register_image_encoders", "vsekit.image.base:ImageEncoder"),
    "loss": ("loss", "register_losses", "vsekit.losses:Loss"),
    "metric": ("metric", "register_metrics", "vsekit.metrics:Metric"),
}


def _import_dotted(dotted: str) -> Any:
    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)


@attrs.define
class Entry:
    name: str
    cls: type
    plugin: str


class Registry:
    """Named components of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.label, self.hook, self._base_path = KINDS[kind]
        self._entries: dict[str, Entry] = {}

    @property
    def base(self) -> type:
        return _import_dotted(self._base_path)

    def register(self, name: str, cls: type, plugin: str = "user") -> None:
        if not isinstance(cls, type) or not issubclass(cls, self.base):
            raise RegistryError(
                f"{plugin}: cannot register {self.label} {name!r}: {cls!r} is not a subclass of "
                f"{self.base.__module__}.{self.base.__qualname__}"
            )
        old = self._entries.get(name)
        if old is not None and old.cls is not cls:
            raise RegistryError(
                f"{self.label} {name!r} is registered twice: by {old.plugin} ({_qualname(old.cls)}) "
                f"and by {plugin} ({_qualname(cls)})"
            )
        self._entries[name] = Entry(name, cls, plugin)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> type:
        """The class registered as ``name``, or named by ``module:Class`` / ``file.py:Class``."""
        if name in self._entries:
            return self._entries[name].cls
        if ":" in name:
            cls = _load_class(name, self.label)
            if not isinstance(cls, type) or not issubclass(cls, self.base):
                raise RegistryError(
                    f"{name!r} is not a {self.label}: expected a subclass of "
                    f"{self.base.__module__}.{self.base.__qualname__}"
                )
            return cls
        known = self.names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f", did you mean {close[0]!r}?" if close else ""
        raise RegistryError(
            f"unknown {self.label} {name!r} — known: {', '.join(known) or '(none)'}{hint} "
            f"(or name a class as 'package.module:Class')"
        )


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _load_class(spec: str, label: str) -> Any:
    module_name, _, attr = spec.rpartition(":")
    try:
        if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
            path = Path(module_name).resolve()
            if not path.is_file():
                raise RegistryError(f"{label} {spec!r}: no such file {str(path)!r}")
            mod_name = f"vsekit_user_{path.stem}"
            module = sys.modules.get(mod_name)
            if module is None or getattr(module, "__file__", None) != str(path):
                mod_spec = importlib.util.spec_from_file_location(mod_name, path)
                assert mod_spec is not None and mod_spec.loader is not None
                module = importlib.util.module_from_spec(mod_spec)
                sys.modules[mod_name] = module
                mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"{label} {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise RegistryError(f"{label} {spec!r}: module {module_name!r} has no attribute {attr!r}") from None


@attrs.define
class PluginInfo:
    name: str
    module: str
    dist: str | None = None
    version: str | None = None
    components: dict[str, list[str]] = attrs.field(factory=dict)


class PluginManager:
    """The pluggy manager plus the registries it fills."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registries = {kind: Registry(kind) for kind in KINDS}
        self.plugins: dict[str, PluginInfo] = {}
        self.skipped: dict[str, str] = {}
        from vsekit import builtin

        self._add(builtin, "vsekit", module="vsekit.builtin", dist="vsekit")
        if load_entry_points:
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        only = os.environ.get("VSEKIT_PLUGINS")
        only_set = None if only is None else {n.strip() for n in only.split(",") if n.strip()}
        disabled = {n.strip() for n in os.environ.get("VSEKIT_DISABLE_PLUGINS", "").split(",") if n.strip()}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in disabled or (only_set is not None and ep.name not in only_set):
                continue
            if ep.name in self.plugins:
                continue
            dist = ep.dist.name if ep.dist is not None else None
            try:
                module = ep.load()
                self._add(module, ep.name, module=ep.value, dist=dist)
            except RegistryError:
                raise  # duplicate names and misspelled hooks are errors, not warnings
            except Exception as exc:  # a broken plugin must not take vsekit down
                msg = f"{type(exc).__name__}: {exc}"
                self.skipped[ep.name] = msg
                log.warning("vsekit: skipped plugin %r (%s): %s", ep.name, ep.value, msg)

    def _add(self, plugin: Any, name: str, module: str, dist: str | None = None) -> None:
        """Register ``plugin`` with pluggy and collect its components into the registries."""
        self.pm.register(plugin, name=name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(plugin)
            raise RegistryError(f"plugin {name!r} ({module}): {exc}") from None
        version = None
        if dist is not None:
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                version = None
        info = PluginInfo(name=name, module=module, dist=dist, version=version)
        for kind, registry in self.registries.items():
            hook_impl = getattr(plugin, registry.hook, None)
            if hook_impl is None:
                continue
            names: list[str] = []

            def register(comp_name: str, cls: type, _reg: Registry = registry, _names: list[str] = names) -> None:
                _reg.register(comp_name, cls, plugin=name)
                _names.append(comp_name)

            hook_impl(register=register)
            if names:
                info.components[kind] = sorted(names)
        self.plugins[name] = info


_MANAGER: PluginManager | None = None


def manager() -> PluginManager:
    """The process-wide plugin manager, created (and plugins loaded) on first use."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = PluginManager()
    return _MANAGER


def reset() -> None:
    """Forget the loaded plugins; the next :func:`manager` call loads them again."""
    global _MANAGER
    _MANAGER = None


def registry(kind: str) -> Registry:
    if kind not in KINDS:
        raise RegistryError(f"unknown component kind {kind!r} — known: {', '.join(KINDS)}")
    return manager().registries[kind]


def get(kind: str, name: str) -> type:
    """Resolve a component class of ``kind`` from a registered or ``module:Class`` name."""
    return registry(kind).get(name)


def register(kind: str, name: str | None = None):
    """Class decorator registering a component from user code.

    >>> @register("sentence_encoder", "cnn")
    ... class CNNEncoder(SentenceEncoder): ...
    """

    def deco(cls: type) -> type:
        registry(kind).register(name or cls.__name__.lower(), cls, plugin=f"user:{cls.__module__}")
        return cls

    return deco
