"""pluggy hook specifications: one hook per component kind, plus CLI commands.

Each ``register_*`` hook receives a *registrar*: call it as
``register(name, cls)`` once per component. Built-in components are
registered through these same hooks (see :mod:`vsekit.builtin`), so a
third-party plugin is an ordinary module with a few ``@hookimpl`` functions,
exposed through the ``vsekit`` entry-point group::

    # pyproject.toml
    [project.entry-points.vsekit]
    myfeatures = "vsekit_myfeatures"

    # vsekit_myfeatures.py
    from vsekit import hookimpl

    @hookimpl
    def register_image_feature_extractors(register):
        register("colorhist", ColorHistExtractor)
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "vsekit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Registrar = Callable[[str, type], None]


@hookspec
def register_dataset_readers(register: Registrar) -> None:
    """Register :class:`vsekit.data.DatasetReader` subclasses by name."""


@hookspec
def register_sentence_encoders(register: Registrar) -> None:
    """Register :class:`vsekit.text.SentenceEncoder` subclasses by name."""


@hookspec
def register_image_feature_extractors(register: Registrar) -> None:
    """Register :class:`vsekit.image.ImageFeatureExtractor` subclasses by name."""


@hookspec
def register_image_encoders(register: Registrar) -> None:
    """Register :class:`vsekit.image.ImageEncoder` subclasses by name."""


@hookspec
def register_losses(register: Registrar) -> None:
    """Register :class:`vsekit.losses.Loss` subclasses by name."""


@hookspec
def register_metrics(register: Registrar) -> None:
    """Register :class:`vsekit.metrics.Metric` subclasses by name."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add subcommands to the ``vsekit`` click group ``cli``."""
