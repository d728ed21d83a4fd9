"""The pluggy plugin manager: built-ins, entry points, off switches, plugin descriptions.

A :class:`PluginManager` fills one registry per component kind (the
:class:`vsekit.registry.Registry` objects it is given) through the hooks of
:mod:`vsekit.hookspecs`: first the built-ins (:mod:`vsekit.builtin`, loaded
like any plugin), then every plugin exposed through the ``vsekit``
entry-point group. The process-wide manager is :func:`vsekit.registry.manager`.

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
import logging
import os
from collections.abc import Mapping
from typing import Any

import attrs
import pluggy

from vsekit import hookspecs
from vsekit.errors import RegistryError
from vsekit.hookspecs import HOOKS, KINDS

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "vsekit"
ENV_ONLY = "VSEKIT_PLUGINS"
ENV_DISABLE = "VSEKIT_DISABLE_PLUGINS"
#: the plugin name of the built-in components
BUILTIN = "vsekit"
#: the module holding the built-ins' hooks, loaded by name like an entry point
BUILTIN_MODULE = "vsekit.builtin"


def one_line(exc: BaseException) -> str:
    """``"TypeName: message"`` on one line (whitespace runs collapsed): how a plugin's failure is reported."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def qualname(cls: Any) -> str:
    """``module.QualName`` of a class, for messages."""
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', repr(cls))}"


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
        """Plain data for ``vsekit plugins --json``."""
        return {"name": self.name, "module": self.module, "distribution": self.dist, "version": self.version,
                "hooks": list(self.hooks), "components": dict(self.components), "commands": list(self.commands)}


class HookFailed(Exception):
    """A plugin's hook raised something other than :class:`~vsekit.errors.RegistryError`.

    :meth:`PluginManager.add_plugin` raises it; entry-point loading turns it into a skipped plugin.
    """


def _env_names(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {n.strip() for n in value.split(",") if n.strip()}


def _dist_version(dist: str | None) -> str | None:
    if dist is None:
        return None
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


class PluginManager:
    """The pluggy manager plus the registries it fills.

    ``registries`` maps every kind of :data:`vsekit.hookspecs.KINDS` to a
    :class:`vsekit.registry.Registry` (``check``/``register`` are all this class uses).
    The built-ins are added first, then (with ``load_entry_points``) the installed plugins.
    """

    def __init__(self, registries: Mapping[str, Any], load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._registries = dict(registries)
        self.plugins: dict[str, PluginInfo] = {}
        #: entry-point name -> one-line reason it was not loaded
        self.skipped: dict[str, str] = {}
        #: entry-point names left out by VSEKIT_PLUGINS / VSEKIT_DISABLE_PLUGINS
        self.disabled: dict[str, str] = {}
        #: plugins whose hooks are registered but whose components are not collected yet, in load order
        self._pending: list[tuple[Any, str, str, bool]] = []  # (plugin, name, module, skippable)
        builtin = importlib.import_module(BUILTIN_MODULE)
        self._add_hooks(builtin, BUILTIN, module=BUILTIN_MODULE, dist="vsekit")
        self._pending.append((builtin, BUILTIN, BUILTIN_MODULE, False))
        if load_entry_points:
            self._load_entry_points()

    @property
    def registries(self) -> dict[str, Any]:
        """Kind -> registry, with every loaded plugin's components in it.

        Components are collected (the registrar hooks called) on first use, not when the plugins load:
        adding the plugins' commands (``vsekit --help``) needs no component class, so it imports no torch.

        Raises:
            RegistryError: a plugin registers a component name twice, or a name another plugin took.
        """
        self.collect_components()
        return self._registries

    def collect_components(self) -> None:
        """Call the registrar hooks of every plugin not collected yet, in load order (all or nothing per plugin:
        an installed plugin whose hook raises is unloaded and listed as skipped)."""
        while self._pending:
            plugin, name, module, skippable = self._pending.pop(0)
            try:
                self._stage_and_register(plugin, name, f"plugin {name!r} ({module})")
            except HookFailed as exc:
                self.pm.unregister(plugin)
                self.plugins.pop(name, None)
                if not skippable:
                    raise
                self._skip(name, module, str(exc))
            except BaseException:
                self.pm.unregister(plugin)
                self.plugins.pop(name, None)
                raise

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
            if ep.name in self.plugins or ep.name in seen:
                holder = self.plugins[ep.name].module if ep.name in self.plugins else seen[ep.name]
                self._skip(ep.name, ep.value, f"the name {ep.name!r} is taken by {holder}")
                continue
            seen[ep.name] = ep.value
            self._load_entry_point(ep)
        for name in sorted((only or set()) - {ep.name for ep in eps} - {BUILTIN}):
            log.warning("vsekit: %s names plugin %r, but no installed package provides it", ENV_ONLY, name)

    def _load_entry_point(self, ep: importlib.metadata.EntryPoint) -> None:
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not take vsekit down
            self._skip(ep.name, ep.value, one_line(exc))
            return
        try:
            self._add_hooks(module, ep.name, module=ep.value, dist=ep.dist.name if ep.dist is not None else None)
        except HookFailed as exc:
            self._skip(ep.name, ep.value, str(exc))
            return
        self._pending.append((module, ep.name, ep.value, True))

    def _skip(self, name: str, value: str, why: str) -> None:
        self.skipped[name] = why
        log.warning("vsekit: skipped plugin %r (%s): %s", name, value, why)

    # -- adding one plugin ---------------------------------------------------

    def add_plugin(self, plugin: Any, name: str, module: str | None = None, dist: str | None = None) -> PluginInfo:
        """Register ``plugin`` (a module or object with ``@hookimpl`` functions) and collect its components now.

        All or nothing: on any error the plugin is removed again and none of
        its components stay registered.

        Raises:
            RegistryError: a misspelled or unmarked hook, a duplicate plugin or component name.
            HookFailed: a hook raised anything else (entry-point loading turns it into a skip).
        """
        self.collect_components()  # the plugins loaded before it come first
        info = self._add_hooks(plugin, name, module=module, dist=dist)
        try:
            self._stage_and_register(plugin, name, f"plugin {name!r} ({info.module})")
        except BaseException:
            self.pm.unregister(plugin)
            self.plugins.pop(name, None)
            raise
        return info

    def _add_hooks(self, plugin: Any, name: str, module: str | None = None, dist: str | None = None) -> PluginInfo:
        """Register ``plugin``'s hooks with pluggy and list it; its components are collected later."""
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
        except BaseException:
            self.pm.unregister(plugin)
            raise
        info = PluginInfo(name=name, module=module, dist=dist, version=_dist_version(dist), hooks=hooks)
        self.plugins[name] = info
        return info

    def _stage_and_register(self, plugin: Any, name: str, where: str) -> None:
        staged = self._collect(plugin, name, where)
        info = self.plugins[name]
        for kind, comp_name, cls in staged:
            self._registries[kind].register(comp_name, cls, plugin=name)
            info.components.setdefault(kind, []).append(comp_name)
        for names in info.components.values():
            names.sort()

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
        for kind, registry in self._registries.items():
            for impl in getattr(self.pm.hook, registry.hook).get_hookimpls():
                if impl.plugin is not plugin:
                    continue

                def register(comp_name: str, cls: type, _kind: str = kind) -> None:
                    self._registries[_kind].check(comp_name, cls, name)
                    for k, n, c in staged:
                        if k == _kind and n == comp_name and c is not cls:
                            raise RegistryError(f"{where}: registers {KINDS[k][0]} {n!r} twice "
                                                f"({qualname(c)} and {qualname(cls)})")
                    staged.append((_kind, comp_name, cls))

                try:
                    impl.function(**{a: register for a in impl.argnames})
                except RegistryError:
                    raise
                except Exception as exc:
                    raise HookFailed(f"{registry.hook} raised {one_line(exc)}") from exc
        return staged

    def add_user(self, kind: str, name: str, cls: type, plugin: str) -> None:
        """Register a class user code registered (``vsekit.register``), listed under the pseudo-plugin ``plugin``.

        Raises:
            RegistryError: ``name`` or ``cls`` is not acceptable (see ``Registry.check``).
        """
        self.registries[kind].register(name, cls, plugin=plugin)  # (the plugins' components first)
        info = self.plugins.get(plugin)
        if info is None:
            info = self.plugins[plugin] = PluginInfo(name=plugin, module=plugin.partition(":")[2] or plugin)
        names = info.components.setdefault(kind, [])
        if name not in names:
            names.append(name)
            names.sort()

    # -- commands --------------------------------------------------------------

    def add_commands(self, cli: Any) -> None:
        """Let every plugin add its subcommands to the click group ``cli``; a failing plugin is skipped, warned."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            before = set(getattr(cli, "commands", {}))
            try:
                impl.function(**{a: cli for a in impl.argnames})
            except Exception as exc:
                self.skipped.setdefault(impl.plugin_name, f"register_commands raised {one_line(exc)}")
                log.warning("vsekit: plugin %r: commands not added: register_commands raised %s",
                            impl.plugin_name, one_line(exc))
                continue
            info = self.plugins.get(impl.plugin_name)
            if info is not None:  # (a second call on the same group adds nothing new: keep what was found)
                info.commands = sorted(set(info.commands) | (set(getattr(cli, "commands", {})) - before))

    # -- listing ---------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Everything ``vsekit plugins --json`` prints: ``plugins`` (list of dicts), ``skipped``, ``disabled``."""
        self.collect_components()
        return {
            "plugins": [p.to_dict() for p in self.plugins.values()],
            "skipped": dict(self.skipped),
            "disabled": dict(self.disabled),
        }
