"""pluggy hook specifications: one hook per component kind, plus CLI commands.

Each ``register_*`` hook receives a *registrar*: call it as
``register(name, cls)`` once per component. Built-in components are
registered through these same hooks (see :mod:`vsekit.builtin`), so a
third-party plugin is an ordinary module with a few ``@hookimpl`` functions,
exposed through the ``vsekit`` entry-point group::

    # pyproject.toml
    [project.entry-points.vsekit]
    myfeatures = "vsekit_myfeatures"

    # vsekit_myfeatures/__init__.py
    from vsekit import hookimpl

    @hookimpl
    def register_image_feature_extractors(register):
        from vsekit_myfeatures.colorhist import ColorHistExtractor  # import lazily: keeps `vsekit` fast

        register("colorhist", ColorHistExtractor)

Rules the plugin manager enforces (see :mod:`vsekit.plugins`):

* a function named like a hook but not marked ``@hookimpl``, or marked but
  named like no hook (a typo), is an error naming the plugin;
* a component name registered by two plugins is an error naming both;
* a plugin that fails to import, or whose hook raises, is skipped with one
  warning line and listed as skipped by ``vsekit plugins``.

A hook may take fewer arguments than its spec (``def register_losses():``
is valid pluggy) but not other ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click

PROJECT = "vsekit"

#: component kind -> (human label, hook name, dotted base class): the kinds the registries hold
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

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Registrar(Protocol):
    """What every ``register_*`` hook receives.

    ``register(name, cls)``: ``name`` is what specs write as ``type = "name"``
    (no ``:`` in it; that form means ``module:Class``); ``cls`` must subclass
    the kind's base class and define a frozen attrs ``Config``.
    """

    def __call__(self, name: str, cls: type, /) -> None: ...


@hookspec
def register_dataset_readers(register: Registrar) -> None:
    """Register :class:`vsekit.data.readers.DatasetReader` subclasses.

    A reader turns a split name (``train``/``dev``/``test``) into a
    :class:`vsekit.data.readers.Split`. Specs pick it with ``[data] type``.
    """


@hookspec
def register_sentence_encoders(register: Registrar) -> None:
    """Register :class:`vsekit.text.base.SentenceEncoder` subclasses.

    Built as ``cls(config, vocab_size, dim)``; specs pick it with
    ``[model.sentence_encoder] type``.
    """


@hookspec
def register_image_feature_extractors(register: Registrar) -> None:
    """Register :class:`vsekit.image.base.ImageFeatureExtractor` subclasses.

    Built as ``cls(config)``; ``extract(paths)`` returns an
    :class:`vsekit.image.base.Extracted`. Readers that work from image files
    (``flickr8k``) take one as ``features = {type = "name", ...}``.
    """


@hookspec
def register_image_encoders(register: Registrar) -> None:
    """Register :class:`vsekit.image.base.ImageEncoder` subclasses.

    Built as ``cls(config, dim_image, dim)``; specs pick it with
    ``[model.image_encoder] type``.
    """


@hookspec
def register_losses(register: Registrar) -> None:
    """Register :class:`vsekit.losses.Loss` subclasses; specs pick one with ``[loss] type``."""


@hookspec
def register_metrics(register: Registrar) -> None:
    """Register :class:`vsekit.metrics.Metric` subclasses; specs pick one with ``[eval.metric] type``."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``vsekit`` click group ``cli`` (``@cli.command()``).

    Commands should import heavy modules inside the command function, not at
    plugin import time: every ``vsekit`` invocation loads every plugin.
    """


#: every hook name a plugin may implement
HOOKS: tuple[str, ...] = tuple(sorted(n for n, v in list(globals().items())
                                      if n.startswith("register_") and callable(v)))
