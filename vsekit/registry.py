"""Per-kind component registries: names, ``module:Class`` / ``file.py:Class`` names, did-you-mean.

There is one :class:`Registry` per component kind (:data:`vsekit.hookspecs.KINDS`).
The process-wide plugin manager (:func:`manager`, a :class:`vsekit.plugins.PluginManager`)
fills them: first the built-ins, then every installed plugin, then classes that
user code registered with :func:`register`. Besides registered names,
:meth:`Registry.get` accepts ``"package.module:Class"`` and
``"path/to/file.py:Class"`` so that a user's own subclass works from a spec
without packaging.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from vsekit import plugins
from vsekit.errors import RegistryError
from vsekit.hookspecs import KINDS
from vsekit.plugins import one_line, qualname


def _import_dotted(dotted: str) -> Any:
    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)


def _same_definition(a: type, b: type) -> bool:
    """One class statement run twice (a user file imported as a module and as a path): not a real clash."""
    def source(c: type) -> str | None:
        return getattr(sys.modules.get(c.__module__), "__file__", None)

    return a.__qualname__ == b.__qualname__ and source(a) is not None and source(a) == source(b)


# --------------------------------------------------------------------------
# names: registered, module:Class, file.py:Class


def is_file_name(name: str) -> bool:
    """True for ``path/to/file.py:Class`` (as opposed to ``package.module:Class``)."""
    module, sep, _ = name.rpartition(":")
    return bool(sep) and (module.endswith(".py") or "/" in module or os.sep in module)


def canonical_name(name: str, base: str | Path | None = None) -> str:
    """``name`` with a relative ``file.py:Class`` made absolute against ``base`` (a spec's folder).

    Registered names and ``module:Class`` come back unchanged, so a spec saved
    with a run still names the same class when it is read from elsewhere.
    """
    if not is_file_name(name):
        return name
    module, _, attr = name.rpartition(":")
    path = Path(module).expanduser()
    if not path.is_absolute():
        path = Path(base if base is not None else Path.cwd()) / path
    return f"{path.resolve()}:{attr}"


def names_registered_class(name: str) -> bool:
    """True when ``name`` is ``module:Class`` of a class already registered (by the built-ins, an installed plugin
    or user code this process ran), so resolving it imports nothing new; False for ``file.py:Class`` and for
    names without ``:``."""
    if ":" not in name or is_file_name(name):
        return False
    return any(f"{e.cls.__module__}:{e.cls.__qualname__}" == name
               for reg in manager().registries.values() for e in reg.entries())


_FILE_MODULE_PREFIX = "vsekit_user_"  # module names of files loaded by import_file


def import_file(path: str | Path, label: str = "imports") -> Any:
    """Import a Python file as a module (once per file), so that its ``@register`` calls run."""
    path = Path(path).resolve()
    if not path.is_file():
        raise RegistryError(f"{label}: no such file {str(path)!r}")
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == str(path):
            return module
    mod_name = f"{_FILE_MODULE_PREFIX}{path.stem}"
    if mod_name in sys.modules:  # another file with the same stem
        mod_name = f"{mod_name}_{abs(hash(str(path))):x}"
    mod_spec = importlib.util.spec_from_file_location(mod_name, path)
    if mod_spec is None or mod_spec.loader is None:
        raise RegistryError(f"{label}: cannot import {str(path)!r} as Python")
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_name] = module
    try:
        mod_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    return module


def _import_module(module_name: str, base: str | Path | None) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # a module next to the spec file works without PYTHONPATH
        top = module_name.split(".")[0]
        if base is None or exc.name != top:
            raise
        base_dir = Path(base)
        if not ((base_dir / f"{top}.py").is_file() or (base_dir / top / "__init__.py").is_file()):
            raise
        sys.path.insert(0, str(base_dir))
        return importlib.import_module(module_name)


def _load_class(spec: str, label: str, base: str | Path | None = None) -> Any:
    module_name, _, attr = spec.rpartition(":")
    try:
        if is_file_name(spec):
            module = import_file(canonical_name(spec, base).rpartition(":")[0], f"{label} {spec!r}")
        else:
            module = _import_module(module_name, base)
    except ImportError as exc:
        raise RegistryError(f"{label} {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    except RegistryError:
        raise
    except Exception as exc:  # the user's module raised while being imported
        raise RegistryError(f"{label} {spec!r}: importing {module_name!r} failed: {one_line(exc)}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        public = sorted(n for n, v in vars(module).items() if isinstance(v, type) and not n.startswith("_"))
        close = difflib.get_close_matches(attr, public, n=1)
        hint = f", did you mean {close[0]!r}?" if close else ""
        raise RegistryError(f"{label} {spec!r}: module {module_name!r} has no attribute {attr!r}{hint}") from None


# --------------------------------------------------------------------------
# one registry per kind


@attrs.define
class Entry:
    """One registered component: its ``name``, class and the plugin that registered it."""

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
        """The base class every component of this kind subclasses (imported on first use)."""
        return _import_dotted(self._base_path)

    def check(self, name: str, cls: Any, plugin: str) -> None:
        """Raise :class:`RegistryError` unless ``cls`` may be registered as ``name`` by ``plugin``."""
        if not isinstance(name, str) or not name.strip() or ":" in name:
            raise RegistryError(f"{plugin}: cannot register {self.label} {name!r}: a name is a non-empty string "
                                f"without ':' (that form means 'module:Class')")
        base = self.base
        if not isinstance(cls, type) or not issubclass(cls, base):
            raise RegistryError(f"{plugin}: cannot register {self.label} {name!r}: {cls!r} is not a subclass of "
                                f"{qualname(base)}")
        old = self._entries.get(name)
        if old is not None and old.cls is not cls and old.plugin != plugin and not _same_definition(old.cls, cls):
            external = [p for p in (old.plugin, plugin) if p != plugins.BUILTIN and ":" not in p and p != "test"]
            fix = (f"skip one with {plugins.ENV_DISABLE}={' or '.join(external)}" if external
                   else "choose another name")
            raise RegistryError(
                f"{self.label} {name!r} is registered twice: by plugin {old.plugin!r} ({qualname(old.cls)}) "
                f"and by plugin {plugin!r} ({qualname(cls)}); {fix}"
            )

    def register(self, name: str, cls: type, plugin: str = "user") -> None:
        """Add ``cls`` as ``name``; the same plugin registering the name again replaces its class."""
        self.check(name, cls, plugin)
        self._entries[name] = Entry(name, cls, plugin)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (nothing happens if it is not registered)."""
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry]:
        """The registered entries, sorted by name."""
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def entry(self, name: str) -> Entry | None:
        """The entry registered as ``name``, or None."""
        return self._entries.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str, base: str | Path | None = None) -> type:
        """The class registered as ``name``, or named by ``module:Class`` / ``file.py:Class``.

        ``base`` is the folder that relative ``file.py`` paths (and modules
        beside the spec) are looked up in; the current directory if None.
        """
        if name in self._entries:
            return self._entries[name].cls
        if ":" in name:
            cls = _load_class(name, self.label, base)
            base_cls = self.base
            if not isinstance(cls, type) or not issubclass(cls, base_cls):
                raise RegistryError(f"{name!r} is not a {self.label}: expected a subclass of {qualname(base_cls)}, "
                                    f"got {cls!r}")
            return cls
        known = self.names()
        close = difflib.get_close_matches(name, known, n=1) or difflib.get_close_matches(
            name.lower(), [k.lower() for k in known], n=1, cutoff=0.5)
        hint = f", did you mean {close[0]!r}?" if close else ""
        raise RegistryError(
            f"unknown {self.label} {name!r} — known: {', '.join(known) or '(none)'}{hint} "
            f"(or name a class as 'package.module:Class' or 'file.py:Class'; `vsekit plugins` lists what is installed)"
        )


#: (kind, name, cls, plugin) registered by user code with :func:`register`; replayed after :func:`reset`
_USER: list[tuple[str, str, type, str]] = []
_MANAGER: plugins.PluginManager | None = None


def manager(collect: bool = True) -> plugins.PluginManager:
    """The process-wide plugin manager, created (built-ins, plugins, then user classes loaded) on first use.

    With ``collect`` (the default) every plugin's components are in the registries on return; without it the
    plugins are loaded but their registrar hooks not yet called (what adding CLI commands needs: no component
    class, so no torch). The registries collect them on first use either way.

    Raises:
        RegistryError: a plugin's hooks or components conflict (with ``collect``, or later on first use).
    """
    global _MANAGER
    if _MANAGER is None:
        mgr = plugins.PluginManager({kind: Registry(kind) for kind in KINDS})
        for kind, name, cls, plugin in _USER:
            mgr.add_user(kind, name, cls, plugin)
        _MANAGER = mgr
    if collect:
        _MANAGER.collect_components()
    return _MANAGER


def reset(forget_user: bool = False) -> None:
    """Forget the loaded plugins; the next :func:`manager` call loads them again (re-reading the env switches).

    Classes registered with :func:`register` by modules that stay imported are
    registered again, unless ``forget_user``: then they are dropped, and the
    files that spec ``imports`` or ``file.py:Class`` names loaded are unloaded
    too, so that naming them again runs (and registers) them again.
    """
    global _MANAGER
    _MANAGER = None
    if forget_user:
        for name in list(sys.modules):
            if name.startswith(_FILE_MODULE_PREFIX):
                del sys.modules[name]
        _USER.clear()


@contextlib.contextmanager
def isolated() -> Iterator[plugins.PluginManager]:
    """A fresh manager without user registrations for the block; the previous manager and registrations after it.

    The fresh manager reads the environment switches when the block starts.
    """
    global _MANAGER
    saved_user, saved_manager = list(_USER), _MANAGER
    _USER.clear()
    reset()
    try:
        yield manager()
    finally:
        _USER[:] = saved_user
        _MANAGER = saved_manager


def registry(kind: str) -> Registry:
    """The registry of ``kind`` (a key of :data:`vsekit.hookspecs.KINDS`).

    Raises:
        RegistryError: an unknown kind (with the closest known one).
    """
    if kind not in KINDS:
        close = difflib.get_close_matches(kind, list(KINDS), n=1)
        hint = f", did you mean {close[0]!r}?" if close else ""
        raise RegistryError(f"unknown component kind {kind!r} — known: {', '.join(KINDS)}{hint}")
    return manager().registries[kind]


def get(kind: str, name: str, base: str | Path | None = None) -> type:
    """Resolve a component class of ``kind`` from a registered, ``module:Class`` or ``file.py:Class`` name.

    Raises:
        RegistryError: unknown kind or name (with did-you-mean), or a class that is not of that kind.
    """
    return registry(kind).get(name, base)


def register(kind: str, name: str | None = None) -> Callable[[type], type]:
    """Class decorator registering a component from user code (a script, a notebook, a spec's ``imports``).

    >>> @register("sentence_encoder", "cnn")
    ... class CNNEncoder(SentenceEncoder): ...

    The name defaults to the lowercased class name. The registration lasts
    for the process (it survives :func:`reset`); a plugin package should use
    a ``@hookimpl`` instead, so that ``vsekit plugins`` and other processes
    see it.

    Raises:
        RegistryError: an unknown kind (at once), or a bad name or class (when the decorator runs).
    """
    registry(kind)  # validates the kind eagerly

    def deco(cls: type) -> type:
        comp_name = name or cls.__name__.lower()
        plugin = f"user:{cls.__module__}"
        manager().add_user(kind, comp_name, cls, plugin)
        _USER[:] = [u for u in _USER if not (u[0] == kind and u[1] == comp_name and u[3] == plugin)]
        _USER.append((kind, comp_name, cls, plugin))
        return cls

    return deco


#: names that moved to :mod:`vsekit.plugins`; reading them here warns (for one release)
_MOVED = ("ENTRY_POINT_GROUP", "ENV_ONLY", "ENV_DISABLE", "PluginManager", "PluginInfo", "HOOKS")


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(f"vsekit.registry.{name} is deprecated; use vsekit.plugins.{name}", DeprecationWarning,
                      stacklevel=2)
        return getattr(plugins, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def loaded_class(kind: str, name: str) -> type | None:
    """The class of ``kind`` that ``name`` names when resolving it imports nothing: a registered name, or a
    ``module:Class`` / ``file.py:Class`` whose module or file this process has already imported; else None.
    For names read from data or model files, which must not make vsekit import code (see
    :func:`vsekit.spec.require_trust`)."""
    if name in registry(kind):
        return get(kind, name)
    module_name, sep, cls_name = name.rpartition(":")
    if not sep:
        return None
    if is_file_name(name):
        path = str(Path(module_name).resolve())
        module = next((m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == path), None)
    else:
        module = sys.modules.get(module_name)
    cls = getattr(module, cls_name, None)
    return cls if isinstance(cls, type) else None
