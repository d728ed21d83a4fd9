"""Helpers for testing vsekit components and plugins (yours or ours).

Plain functions and context managers, usable from any test runner::

    from vsekit import testing

    def test_my_encoder(tmp_path):
        testing.check_sentence_encoder(MyEncoder, {"width": 64})
        with testing.registered("sentence_encoder", "mine", MyEncoder):
            results = testing.run_quick(testing.tiny_spec(sentence_encoder={"type": "mine"}), tmp_path)
        assert results["test"]["rsum"] > 0

With pytest, ``pytest_plugins = ["vsekit.testing"]`` in a ``conftest.py``
also provides the fixtures ``vsekit_registry`` (built-ins only, fresh per
test), ``vsekit_tiny_split`` and ``vsekit_tiny_spec``.

The data is the slice of Flickr8K packaged with vsekit (``vsekit:f8k_mini``:
1,000 train, 200 dev, 200 test images, 1280-d features), so nothing is
downloaded and a one-epoch run takes seconds.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from vsekit import plugins
from vsekit import registry as reg
from vsekit.errors import VsekitError
from vsekit.testing_data import (
    F8K_MINI,
    find_shared_data,
    missing_test_input,
    run_quick,
    shared_data,
    tiny_batch,
    tiny_dataset,
    tiny_spec,
    tiny_split,
)

__all__ = [
    "F8K_MINI",
    "InstalledPlugins",
    "check_image_feature_extractor",
    "check_sentence_encoder",
    "find_shared_data",
    "installed_plugin",
    "isolated_plugins",
    "make_config",
    "missing_test_input",
    "registered",
    "run_quick",
    "shared_data",
    "tiny_batch",
    "tiny_dataset",
    "tiny_spec",
    "tiny_split",
]


# --------------------------------------------------------------------------
# registry and plugins


@contextlib.contextmanager
def registered(kind: str, name: str, cls: type) -> Iterator[type]:
    """Register ``cls`` as ``name`` for the duration of the block, then remove it again."""
    registry = reg.registry(kind)
    if name in registry:
        raise VsekitError(f"registered(): {reg.KINDS[kind][0]} {name!r} already exists "
                          f"(registered by {registry.entry(name).plugin!r})")
    registry.register(name, cls, plugin="test")
    try:
        yield cls
    finally:
        registry.unregister(name)


@contextlib.contextmanager
def isolated_plugins(only: Sequence[str] = (), disable: Sequence[str] = ()) -> Iterator[plugins.PluginManager]:
    """A fresh plugin manager with the built-ins and only the entry points named in ``only`` (none by default).

    Classes that user code registered with ``vsekit.register`` are left out
    too. The environment switches, those registrations and the previous
    manager are restored after the block.
    """
    saved = {k: os.environ.get(k) for k in (plugins.ENV_ONLY, plugins.ENV_DISABLE)}
    os.environ[plugins.ENV_ONLY] = ",".join(only)
    if disable:
        os.environ[plugins.ENV_DISABLE] = ",".join(disable)
    else:
        os.environ.pop(plugins.ENV_DISABLE, None)
    try:
        with reg.isolated() as mgr:
            yield mgr
    finally:
        _restore_env(saved)


def _restore_env(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


@attrs.define
class InstalledPlugins:
    """What :func:`installed_plugin` set up: the ``.dist-info`` folder, ``sys.path`` entries, entry-point names."""

    site: Path
    paths: list[str]
    names: list[str]

    @property
    def pythonpath(self) -> str:
        """The plugins' ``sys.path`` entries, then the current ``PYTHONPATH``, joined by ``os.pathsep``."""
        return os.pathsep.join([*self.paths, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that let a subprocess (``vsekit plugins``) see the same plugins, and only them."""
        return {"PYTHONPATH": self.pythonpath, plugins.ENV_ONLY: ",".join(self.names)}


@contextlib.contextmanager
def installed_plugin(project: str | Path, *more: str | Path, only: bool = True) -> Iterator[InstalledPlugins]:
    """Make plugin projects (folders with a ``pyproject.toml``) discoverable as if pip-installed.

    Writes a ``.dist-info`` with each project's ``[project.entry-points.vsekit]``
    into a temporary folder and puts it, and the project's source (its
    ``src/`` folder or the project folder), at the front of ``sys.path``.
    Entry-point discovery then finds the plugin exactly as after ``pip
    install``, without installing anything. With ``only`` (the default),
    ``VSEKIT_PLUGINS`` is set to these plugins' entry-point names, so plugins
    installed in the environment stay out of the test. On exit the paths and
    both switches (``VSEKIT_PLUGINS``, ``VSEKIT_DISABLE_PLUGINS``) are restored, modules imported from the projects
    unloaded and the registry reset.
    """
    projects = [Path(p).resolve() for p in (project, *more)]
    saved_env = {k: os.environ.get(k) for k in (plugins.ENV_ONLY, plugins.ENV_DISABLE)}
    with tempfile.TemporaryDirectory(prefix="vsekit-plugin-") as tmp:
        site = Path(tmp)
        names: list[str] = []
        roots = []
        for proj in projects:
            root, eps = _write_dist_info(proj, site)
            roots.append(str(root))
            names += eps
        added = [str(site), *dict.fromkeys(roots)]
        before = set(sys.modules)
        sys.path[:0] = added
        if only:
            os.environ[plugins.ENV_ONLY] = ",".join(names)
        importlib.invalidate_caches()
        reg.reset()
        try:
            yield InstalledPlugins(site, added, names)
        finally:
            for p in added:
                with contextlib.suppress(ValueError):
                    sys.path.remove(p)
            _restore_env(saved_env)
            for name in set(sys.modules) - before:
                file = getattr(sys.modules.get(name), "__file__", None) or ""
                if any(file.startswith(p + os.sep) for p in added):
                    del sys.modules[name]
            importlib.invalidate_caches()
            reg.reset()


def _write_dist_info(project: Path, site: Path) -> tuple[Path, list[str]]:
    pyproject = project / "pyproject.toml"
    try:
        meta = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        name, version = meta["name"], meta.get("version", "0")
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise VsekitError(f"{pyproject}: not a project file with [project] name: {exc}") from None
    eps = meta.get("entry-points", {}).get(plugins.ENTRY_POINT_GROUP, {})
    if not eps:
        raise VsekitError(f"{pyproject}: no [project.entry-points.{plugins.ENTRY_POINT_GROUP}] table: "
                          f"vsekit will not find this plugin")
    info = site / f"{_normalize(name)}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    lines = [f"[{plugins.ENTRY_POINT_GROUP}]"] + [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    src = project / "src"
    return (src if src.is_dir() else project), list(eps)


# --------------------------------------------------------------------------
# component contract checks


def _resolve(kind: str, cls_or_name: type | str) -> type:
    return reg.get(kind, cls_or_name) if isinstance(cls_or_name, str) else cls_or_name


def make_config(cls: type, config: dict[str, Any] | Any = None, where: str = "config") -> Any:
    """``cls.Config`` structured from a dict the way a spec table is (strict types, no extra keys)."""
    from vsekit import spec as spec_mod

    if config is not None and not isinstance(config, dict):
        return config
    config_cls = getattr(cls, "Config", None)
    if config_cls is None or not attrs.has(config_cls):
        raise AssertionError(f"{cls.__qualname__} has no attrs Config class")
    try:
        return spec_mod.structure(config or {}, config_cls, where)
    except spec_mod.SpecProblems as exc:
        raise AssertionError("; ".join(f"{p}: {m}" for p, m in exc.problems)) from None


def check_sentence_encoder(cls_or_name: type | str, config: dict[str, Any] | Any = None, dim: int = 16,
                           n: int = 6) -> Any:
    """Build a sentence encoder, encode ``n`` real captions and check what vsekit relies on; return the output.

    Checks: the Config is a frozen attrs class, ``check_config`` accepts it,
    the output is a finite float (n, dim) tensor, and a loss on it reaches at
    least one trainable parameter.
    """
    import torch

    from vsekit.text.base import SentenceEncoder

    cls = _resolve("sentence_encoder", cls_or_name)
    assert issubclass(cls, SentenceEncoder), f"{cls} is not a SentenceEncoder"
    cfg = make_config(cls, config)
    assert attrs.has(type(cfg)) and type(cfg).__setattr__ is not object.__setattr__, \
        f"{cls.__qualname__}.Config should be @attrs.frozen"
    problems = cls.check_config(cfg, dim=dim)
    assert not problems, f"check_config refused the config: {problems}"
    batch, vocab = tiny_batch(n, with_texts=True)
    enc = cls(cfg, len(vocab), dim)
    enc.train()
    out = enc.encode(batch)
    assert isinstance(out, torch.Tensor) and out.shape == (n, dim), \
        f"encode() returned {getattr(out, 'shape', out)!r}, expected ({n}, {dim})"
    assert out.dtype.is_floating_point and torch.isfinite(out).all(), "encode() returned non-finite values"
    trainable = [p for p in enc.parameters() if p.requires_grad]
    assert trainable, "the encoder has no trainable parameter"
    out.pow(2).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable), "no gradient reached the parameters"
    return out.detach()


def check_image_feature_extractor(cls_or_name: type | str, config: dict[str, Any] | Any, paths: Sequence[str | Path],
                                  bad: Sequence[str | Path] = ()) -> Any:
    """Extract features of ``paths`` (which should work) and ``bad`` (which should be reported); return the result.

    Checks the :class:`~vsekit.image.base.Extracted` contract: one ``ok``
    flag per path, one finite float row per good image in order, the ``dim``
    property (when known) equal to the row width, and each bad image named
    by file name in ``errors`` without stopping the batch.
    """
    from vsekit.image.base import Extracted, ImageFeatureExtractor

    cls = _resolve("image_feature_extractor", cls_or_name)
    assert issubclass(cls, ImageFeatureExtractor), f"{cls} is not an ImageFeatureExtractor"
    ext = cls(make_config(cls, config))
    all_paths = [*paths, *bad]
    res = ext.extract(all_paths)
    assert isinstance(res, Extracted), f"extract() returned {type(res).__name__}, expected Extracted"
    ok = np.asarray(res.ok)
    assert ok.dtype == bool and ok.shape == (len(all_paths),), f"ok has shape {ok.shape}, expected ({len(all_paths)},)"
    assert ok[: len(paths)].all(), f"good images not extracted: {res.errors}"
    assert not ok[len(paths):].any(), "bad images were marked ok"
    for p in bad:
        assert Path(p).name in res.errors, f"{Path(p).name} missing from errors {sorted(res.errors)}"
    feats = np.asarray(res.features)
    assert feats.ndim == 2 and len(feats) == int(ok.sum()), \
        f"features shape {feats.shape} for {int(ok.sum())} good images"
    assert np.issubdtype(feats.dtype, np.floating) and np.isfinite(feats).all(), "features must be finite floats"
    if ext.dim is not None:
        assert feats.shape[1] == ext.dim, f"dim says {ext.dim}, rows are {feats.shape[1]}-d"
    return res


# --------------------------------------------------------------------------
# pytest fixtures (``pytest_plugins = ["vsekit.testing"]``)

try:  # pytest is a test dependency, not a runtime one
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:

    @pytest.fixture
    def vsekit_registry() -> Iterator[plugins.PluginManager]:
        """A fresh plugin manager with the built-ins only; the previous one is restored after the test."""
        with isolated_plugins() as mgr:
            yield mgr

    @pytest.fixture(scope="session")
    def vsekit_tiny_split() -> Any:
        """20 training images of ``vsekit:f8k_mini`` with 100 captions (do not modify it)."""
        return tiny_split("train", 20)

    @pytest.fixture
    def vsekit_tiny_spec() -> dict[str, Any]:
        """A fresh :func:`tiny_spec` dict to change and run with :func:`run_quick`."""
        return tiny_spec()
