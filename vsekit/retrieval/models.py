"""Where a model for retrieval is: a run folder, a checkpoint, or an installed model's name.

Installed models: a package exposes a model through the entry-point group
``vsekit.models`` (``name = "module:function"``, the function returns the path
of a checkpoint ``.json``). With no model named, ``$VSEKIT_MODEL`` is used,
else the only installed model. :func:`vsekit.load_model` accepts the same
names through :func:`locate_model`.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from pathlib import Path
from typing import Any

import attrs

from vsekit import checkpoint
from vsekit.errors import CheckpointError, VsekitError
from vsekit.model import JointModel

log = logging.getLogger(__name__)

MODELS_GROUP = "vsekit.models"
ENV_MODEL = "VSEKIT_MODEL"
ENV_CACHE = "VSEKIT_CACHE_DIR"

EntryPoints = dict[str, importlib.metadata.EntryPoint]


@attrs.frozen
class ModelRef:
    """Where a model is: its checkpoint ``.json`` and, for an installed model, its name."""

    path: Path
    name: str | None = None

    @property
    def installed(self) -> bool:
        """Whether the model comes from an installed package (its folder is not ours to write in)."""
        return self.name is not None


def installed_models() -> EntryPoints:
    """Models installed through the ``vsekit.models`` entry-point group, by name."""
    out: EntryPoints = {}
    for ep in sorted(importlib.metadata.entry_points(group=MODELS_GROUP), key=lambda e: (e.name, e.value)):
        out.setdefault(ep.name, ep)
    return out


def installed_model_path(name: str, ep: importlib.metadata.EntryPoint | None = None) -> Path:
    """The checkpoint ``.json`` of the installed model ``name`` (its entry point ``ep``, looked up if not given).

    Raises:
        KeyError: no installed model has that name (and no ``ep`` is given).
        CheckpointError: the package fails to load, or names no checkpoint.
    """
    ep = ep or installed_models()[name]
    try:
        target = ep.load()
        path = target() if callable(target) else target
    except Exception as exc:  # a broken model package must say which one
        raise CheckpointError(f"installed model {name!r} ({ep.value}): cannot load: "
                              f"{type(exc).__name__}: {exc}") from None
    return checkpoint.find(Path(path))


def locate_model(ref: str | Path, models: EntryPoints | None = None) -> ModelRef | None:
    """A named model: an existing run folder or checkpoint first, then an installed model's name; None if neither.

    ``models`` are the installed models (default: :func:`installed_models`). A bare name that is both a path
    here and an installed model means the path, with one warning saying so (``./NAME`` names the path alone).
    Raises :class:`CheckpointError` for a path that exists but holds no checkpoint, or a broken installed model.
    """
    p = Path(ref).expanduser()
    models = installed_models() if models is None else models
    if p.exists() or p.with_name(p.name + ".json").exists():
        if str(ref) in models:
            log.warning("%r is both a path here (%s) and an installed model: using the path; run from another "
                        "folder for the installed model, or write ./%s to name the path", str(ref), p.resolve(), ref)
        return ModelRef(checkpoint.find(p))
    if str(ref) in models:
        return ModelRef(installed_model_path(str(ref), models[str(ref)]), str(ref))
    return None


def default_model(models: EntryPoints) -> ModelRef:
    """The model used when none is named: the only installed one.

    Raises:
        CheckpointError: none or several are installed (the message says what to do).
    """
    if len(models) == 1:
        name = next(iter(models))
        return ModelRef(installed_model_path(name, models[name]), name)
    if not models:
        raise CheckpointError("no MODEL given and no installed model: pass a run folder or checkpoint, "
                              "or `pip install vsekit-f8k` for a pretrained Flickr8K model")
    raise CheckpointError(f"no MODEL given and several models are installed ({', '.join(models)}): "
                          f"name one, or set {ENV_MODEL}")


def resolve_model(ref: str | Path | None = None) -> ModelRef:
    """A run folder / checkpoint path, an installed model's name, or None (``$VSEKIT_MODEL``, else the only
    installed one).

    Raises:
        CheckpointError: nothing of that name, or no default model (see :func:`default_model`).
    """
    models = installed_models()
    if ref is None or str(ref) == "":
        ref = os.environ.get(ENV_MODEL) or None
        if ref is None:
            return default_model(models)
    where = locate_model(ref, models)
    if where is not None:
        return where
    known = f" — installed models: {', '.join(models)}" if models else ""
    raise CheckpointError(f"{ref}: no such run folder, checkpoint or installed model{known}")


def open_model(ref: str | Path | None = None, *,
               trust_code: bool = False) -> tuple[JointModel, ModelRef, dict[str, Any]]:
    """Load a model for retrieval (:func:`resolve_model`'s names); returns (model, where it is, its checkpoint
    metadata). The model carries ``weights_sha256``, so that banks know which weights made them. ``trust_code``:
    as :func:`vsekit.load_model`.

    :func:`vsekit.load_model` is the public loader; this one also says where the model is, for its default banks.
    Raises :class:`CheckpointError` (see :func:`resolve_model`, :func:`vsekit.checkpoint.load`).
    """
    where = resolve_model(ref)
    model, meta, _ = checkpoint.load(where.path, trust_code=trust_code)
    model.set_origin(weights_sha256=meta["weights_sha256"])
    return model, where, meta


def cache_dir() -> Path:
    """Where default banks of installed models and read-only folders go: ``$VSEKIT_CACHE_DIR``, else the
    platform's user cache folder for vsekit (``platformdirs``: ``$XDG_CACHE_HOME/vsekit`` or ``~/.cache/vsekit``
    on Linux). Nothing is created here."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("vsekit", appauthor=False))


def list_installed_models() -> list[dict[str, Any]]:
    """One dict per installed model: ``name``, entry point ``value``, ``distribution`` and ``version`` (None when
    unknown), checkpoint ``path`` and ``problem`` (one of the two is None: a broken package is reported, not raised).
    """
    out = []
    for name, ep in installed_models().items():
        try:
            path, problem = str(installed_model_path(name, ep)), None
        except VsekitError as exc:
            path, problem = None, str(exc)
        out.append({"name": name, "value": ep.value, "distribution": ep.dist.name if ep.dist else None,
                    "version": ep.dist.version if ep.dist else None, "path": path, "problem": problem})
    return out
