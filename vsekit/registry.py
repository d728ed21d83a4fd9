"""Per-kind component registries and the plugin manager.

There is one :class:`Registry` per component kind. They are filled by the
pluggy hooks of :mod:`vsekit.hookspecs`: first the built-ins
(:mod:`vsekit.builtin`), then every plugin exposed through the ``vsekit``
entry-point group, then classes that user code registered with
:func:`register`. Besides registered names, :meth:`Registry.get` accepts
``"package.module:Class"`` and ``"path/to/file.py:Class"`` so that a user's
own subclass works from a spec without packaging.

Plugin hygiene:

* a hook name that is misspelled, or a hook function not marked
  ``@hookimpl``, is a :class:`~vsekit.errors.RegistryError` naming the plugin;
* a component name registered by two plugins is an error naming both;
* a plugin that fails to import, or whose hook raises, is skipped with one
  warning line; ``vsekit plugins`` lists it as skipped. A plugin is added
  all or nothing: a failing hook leaves none of its components behind.

Environment switches (read when plugins are first loaded):

``VSEKIT_PLUGINS``
    comma-separated entry-point names to load; set but empty loads none
    (the built-ins always load).
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
from typing import Any, Callable, Iterator

import attrs
import pluggy

from vsekit import hookspecs
from vsekit.errors import RegistryError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "vsekit"
ENV_ONLY = "VSEKIT_PLUGINS"
ENV_DISABLE = "VSEKIT_DISABLE_PLUGINS"
BUILTIN = "vsekit"

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

#: every hook name a plugin may implement
HOOKS: tuple[str, ...] = tuple(sorted(n for n in vars(hookspecs) if n.startswith("register_")))


def _import_dotted(dotted: str) -> Any:
    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)


def _qualname(cls: Any) -> str:
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', repr(cls))}"


def _same_definition(a: type, b: type) -> bool:
    """One class statement run twice (a user file imported as a module and as a path): not a real clash."""
    def source(c: type) -> str | None:
        return getattr(sys.modules.get(c.__module__), "__file__", None)

    return a.__qualname__ == b.__qualname__ and source(a) is not None and source(a) == source(b)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
        raise RegistryError(f"{label} {spec!r}: importing {module_name!r} failed: {_one_line(exc)}") from exc
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

    def check(self, name: str, cls: Any, plugin: str) -> None:
        """Raise :class:`RegistryError` unless ``cls`` may be registered as ``name`` by ``plugin``."""
        if not isinstance(name, str) or not name.strip() or ":" in name:
            raise RegistryError(f"{plugin}: cannot register {self.label} {name!r}: a name is a non-empty string "
                                f"without ':' (that form means 'module:Class')")
        base = self.base
        if not isinstance(cls, type) or not issubclass(cls, base):
            raise RegistryError(f"{plugin}: cannot register {self.label} {name!r}: {cls!r} is not a subclass of "
                                f"{_qualname(base)}")
        old = self._entries.get(name)
        if old is not None and old.cls is not cls and old.plugin != plugin and not _same_definition(old.cls, cls):
            external = [p for p in (old.plugin, plugin) if p != BUILTIN and ":" not in p and p != "test"]
            fix = (f"skip one with {ENV_DISABLE}={' or '.join(external)}" if external
                   else "choose another name")
            raise RegistryError(
                f"{self.label} {name!r} is registered twice: by plugin {old.plugin!r} ({_qualname(old.cls)}) "
                f"and by plugin {plugin!r} ({_qualname(cls)}); {fix}"
            )

    def register(self, name: str, cls: type, plugin: str = "user") -> None:
        """Add ``cls`` as ``name``; the same plugin registering the name again replaces its class."""
        self.check(name, cls, plugin)
        self._entries[name] = Entry(name, cls, plugin)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def entry(self, name: str) -> Entry | None:
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
                raise RegistryError(f"{name!r} is not a {self.label}: expected a subclass of {_qualname(base_cls)}, "
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


# --------------------------------------------------------------------------
# the plugin manager


@attrs.define
class PluginInfo:
    """What ``vsekit plugins`` shows about one plugin."""

    name: str
    module: str
    dist: str | None = None
    version: str | None = None
    hooks: list[str] = attrs.field(factory=list)
    components: dict[str, list[str]] = attrs.field(factory=dict)
    commands: list[str] = attrs.field(factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "module": self.module, "distribution": self.dist, "version": self.version,
                "hooks": list(self.hooks), "components": dict(self.components), "commands": list(self.commands)}


class _HookFailed(Exception):
    """A plugin's hook raised something other than RegistryError."""


#: (kind, name, cls, plugin) registered by user code with :func:`register`; replayed after :func:`reset`
_USER: list[tuple[str, str, type, str]] = []


def _env_names(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {n.strip() for n in value.split(",") if n.strip()}


class PluginManager:
    """The pluggy manager plus the registries it fills."""

    def __init__(self, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registries = {kind: Registry(kind) for kind in KINDS}
        self.plugins: dict[str, PluginInfo] = {}
        #: entry-point name -> one-line reason it was not loaded
        self.skipped: dict[str, str] = {}
        #: entry-point names left out by VSEKIT_PLUGINS / VSEKIT_DISABLE_PLUGINS
        self.disabled: dict[str, str] = {}
        from vsekit import builtin

        self.add_plugin(builtin, BUILTIN, module="vsekit.builtin", dist="vsekit")
        if load_entry_points:
            self._load_entry_points()
        for kind, name, cls, plugin in _USER:
            self._add_user(kind, name, cls, plugin)

    # -- entry points ------------------------------------------------------

    def _load_entry_points(self) -> None:
        only = _env_names(ENV_ONLY)
        disabled = _env_names(ENV_DISABLE) or set()
        seen: dict[str, str] = {}
        eps = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value))
        for ep in eps:
            if seen.get(ep.name) == ep.value:
                continue  # the same distribution found twice on sys.path
            if ep.name in disabled:
                self.disabled[ep.name] = f"{ENV_DISABLE}"
                continue
            if only is not None and ep.name not in only:
                self.disabled[ep.name] = f"not in {ENV_ONLY}"
                continue
            dist = ep.dist.name if ep.dist is not None else None
            if ep.name in self.plugins or ep.name in seen:
                holder = self.plugins[ep.name].module if ep.name in self.plugins else seen[ep.name]
                why = f"the name {ep.name!r} is taken by {holder}"
                self._skip(ep.name, ep.value, why)
                continue
            seen[ep.name] = ep.value
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not take vsekit down
                self._skip(ep.name, ep.value, _one_line(exc))
                continue
            try:
                self.add_plugin(module, ep.name, module=ep.value, dist=dist)
            except _HookFailed as exc:
                self._skip(ep.name, ep.value, str(exc))
        for name in sorted((only or set()) - {ep.name for ep in eps} - {BUILTIN}):
            log.warning("vsekit: %s names plugin %r, but no installed package provides it", ENV_ONLY, name)

    def _skip(self, name: str, value: str, why: str) -> None:
        self.skipped[name] = why
        log.warning("vsekit: skipped plugin %r (%s): %s", name, value, why)

    # -- adding one plugin ---------------------------------------------------

    def add_plugin(self, plugin: Any, name: str, module: str | None = None, dist: str | None = None) -> PluginInfo:
        """Register ``plugin`` (a module or object with ``@hookimpl`` functions) and collect its components.

        All or nothing: on any error the plugin is removed again and none of
        its components stay registered. Raises :class:`RegistryError` for a
        misspelled or unmarked hook and for a duplicate name; a hook that
        raises anything else raises ``_HookFailed``, which entry-point
        loading turns into a skip.
        """
        module = module or getattr(plugin, "__name__", type(plugin).__name__)
        where = f"plugin {name!r} ({module})"
        if name in self.plugins or self.pm.has_plugin(name):
            raise RegistryError(f"{where}: a plugin named {name!r} is already loaded")
        self._check_unmarked(plugin, where)
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:  # e.g. a hook argument the spec does not pass
            raise RegistryError(f"{where}: {' '.join(str(exc).split())}") from None
        try:
            hooks = self._check_hooks(plugin, where)
            staged = self._collect(plugin, name, where)
        except BaseException:
            self.pm.unregister(plugin)
            raise
        info = PluginInfo(name=name, module=module, dist=dist, version=_dist_version(dist), hooks=hooks)
        for kind, comp_name, cls in staged:
            self.registries[kind].register(comp_name, cls, plugin=name)
            info.components.setdefault(kind, []).append(comp_name)
        for names in info.components.values():
            names.sort()
        self.plugins[name] = info
        return info

    def _check_unmarked(self, plugin: Any, where: str) -> None:
        for hook in HOOKS:
            fn = getattr(plugin, hook, None)
            if callable(fn) and self.pm.parse_hookimpl_opts(plugin, hook) is None:
                raise RegistryError(f"{where}: {hook} is not marked @hookimpl "
                                    f"(add `from vsekit import hookimpl` and `@hookimpl` above it)")

    def _check_hooks(self, plugin: Any, where: str) -> list[str]:
        """The hook names ``plugin`` implements; a name that is no hook is an error (``check_pending``)."""
        names = []
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.has_spec():
                names.append(caller.name)
                continue
            close = difflib.get_close_matches(caller.name, HOOKS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise RegistryError(f"{where}: unknown hook {caller.name!r}{hint} — vsekit hooks: {', '.join(HOOKS)}")
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:  # pragma: no cover - caught above
            raise RegistryError(f"{where}: {exc}") from None
        return sorted(names)

    def _collect(self, plugin: Any, name: str, where: str) -> list[tuple[str, str, type]]:
        """Call ``plugin``'s registrar hooks; return (kind, name, cls) without registering anything yet."""
        staged: list[tuple[str, str, type]] = []
        for kind, registry in self.registries.items():
            for impl in getattr(self.pm.hook, registry.hook).get_hookimpls():
                if impl.plugin is not plugin:
                    continue

                def register(comp_name: str, cls: type, _kind: str = kind) -> None:
                    self.registries[_kind].check(comp_name, cls, name)
                    for k, n, c in staged:
                        if k == _kind and n == comp_name and c is not cls:
                            raise RegistryError(f"{where}: registers {KINDS[k][0]} {n!r} twice "
                                                f"({_qualname(c)} and {_qualname(cls)})")
                    staged.append((_kind, comp_name, cls))

                try:
                    impl.function(**{a: register for a in impl.argnames})
                except RegistryError:
                    raise
                except Exception as exc:
                    raise _HookFailed(f"{registry.hook} raised {_one_line(exc)}") from exc
        return staged

    def _add_user(self, kind: str, name: str, cls: type, plugin: str) -> None:
        self.registries[kind].register(name, cls, plugin=plugin)
        info = self.plugins.get(plugin)
        if info is None:
            info = self.plugins[plugin] = PluginInfo(name=plugin, module=plugin.partition(":")[2] or plugin)
        names = info.components.setdefault(kind, [])
        if name not in names:
            names.append(name)
            names.sort()

    # -- commands --------------------------------------------------------------

    def add_commands(self, cli: Any) -> None:
        """Let every plugin add its subcommands to ``cli``; a failing plugin is skipped with a warning."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            before = set(getattr(cli, "commands", {}))
            try:
                impl.function(**{a: cli for a in impl.argnames})
            except Exception as exc:
                self.skipped.setdefault(impl.plugin_name, f"register_commands raised {_one_line(exc)}")
                log.warning("vsekit: plugin %r: commands not added: register_commands raised %s",
                            impl.plugin_name, _one_line(exc))
                continue
            info = self.plugins.get(impl.plugin_name)
            if info is not None:  # (a second call on the same group adds nothing new: keep what was found)
                info.commands = sorted(set(info.commands) | (set(getattr(cli, "commands", {})) - before))

    # -- listing ---------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Everything ``vsekit plugins --json`` prints."""
        return {
            "plugins": [p.to_dict() for p in self.plugins.values()],
            "skipped": dict(self.skipped),
            "disabled": dict(self.disabled),
        }


def _dist_version(dist: str | None) -> str | None:
    if dist is None:
        return None
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


_MANAGER: PluginManager | None = None


def manager() -> PluginManager:
    """The process-wide plugin manager, created (and plugins loaded) on first use."""
    global _MANAGER
    if _MANAGER is None:
        _MANAGER = PluginManager()
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


def registry(kind: str) -> Registry:
    if kind not in KINDS:
        close = difflib.get_close_matches(kind, list(KINDS), n=1)
        hint = f", did you mean {close[0]!r}?" if close else ""
        raise RegistryError(f"unknown component kind {kind!r} — known: {', '.join(KINDS)}{hint}")
    return manager().registries[kind]


def get(kind: str, name: str, base: str | Path | None = None) -> type:
    """Resolve a component class of ``kind`` from a registered, ``module:Class`` or ``file.py:Class`` name."""
    return registry(kind).get(name, base)


def register(kind: str, name: str | None = None) -> Callable[[type], type]:
    """Class decorator registering a component from user code (a script, a notebook, a spec's ``imports``).

    >>> @register("sentence_encoder", "cnn")
    ... class CNNEncoder(SentenceEncoder): ...

    The name defaults to the lowercased class name. The registration lasts
    for the process (it survives :func:`reset`); a plugin package should use
    a ``@hookimpl`` instead, so that ``vsekit plugins`` and other processes
    see it.
    """
    reg = registry(kind)

    def deco(cls: type) -> type:
        comp_name = name or cls.__name__.lower()
        plugin = f"user:{cls.__module__}"
        manager()._add_user(kind, comp_name, cls, plugin)
        _USER[:] = [u for u in _USER if not (u[0] == kind and u[1] == comp_name and u[3] == plugin)]
        _USER.append((kind, comp_name, cls, plugin))
        return cls

    del reg  # validated the kind eagerly
    return deco
