"""vsekit: visual-semantic embeddings (Kiros et al. 2014 and its family: VSE, VSE++, InfoNCE).

The public Python API::

    import vsekit
    results = vsekit.train("examples/quickstart.toml")
    model = vsekit.load_model(results["run_dir"])
    caps = vsekit.encode_sentences(model, ["a dog runs on the beach"])
    ims = vsekit.encode_images(model, features)
    vsekit.evalrank(model, data="examples/quickstart.toml", split="test")

A plugin needs only ``import vsekit``: the base classes (``SentenceEncoder``, ``ImageFeatureExtractor``,
``Extracted``, ...), ``hookimpl``, ``register`` and the config field helpers (``positive``, ``one_of``,
``path_field``, ``component_field``, ``FieldError``, ...) are all here.

The names are resolved lazily (PEP 562): ``import vsekit`` or ``import vsekit.errors`` imports neither
torch nor the rest of the package; the first use of a name imports the module that defines it.
"""

from __future__ import annotations

import importlib as _importlib

from vsekit._version import __version__

#: public name -> the module that defines it (the one place to update when a name moves)
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["eval_checkpoint", "evalrank", "load_model", "load_spec", "train"], "vsekit.api"),
    **dict.fromkeys(["FieldError", "check", "component_field", "in_range", "non_negative", "one_of", "path_field",
                     "positive", "resolve_path", "resolve_paths"], "vsekit.config"),
    **dict.fromkeys(["DatasetReader", "Split"], "vsekit.data.readers"),
    **dict.fromkeys(["DataError", "SpecError", "VsekitError"], "vsekit.errors"),
    "format_table": "vsekit.evaluate",
    "hookimpl": "vsekit.hookspecs",
    **dict.fromkeys(["Extracted", "ImageEncoder", "ImageFeatureExtractor"], "vsekit.image.base"),
    "Loss": "vsekit.losses",
    "Metric": "vsekit.metrics",
    **dict.fromkeys(["JointModel", "encode_images", "encode_sentences"], "vsekit.model"),
    "register": "vsekit.registry",
    **dict.fromkeys(["CaptionBank", "ImageBank", "Retriever", "arithmetic", "build_caption_bank",
                     "build_image_bank", "load_bank", "retrieve"], "vsekit.retrieval"),
    "SentenceEncoder": "vsekit.text.base",
}

__all__ = [
    "CaptionBank", "DataError", "DatasetReader", "Extracted", "FieldError", "ImageBank", "ImageEncoder",
    "ImageFeatureExtractor", "JointModel", "Loss", "Metric", "Retriever", "SentenceEncoder", "SpecError", "Split",
    "VsekitError", "__version__", "arithmetic", "build_caption_bank", "build_image_bank", "check", "component_field",
    "encode_images", "encode_sentences", "eval_checkpoint", "evalrank", "format_table", "hookimpl", "in_range",
    "load_bank", "load_model", "load_spec", "non_negative", "one_of", "path_field", "positive", "register",
    "resolve_path", "resolve_paths", "retrieve", "train",
]


def __getattr__(name: str) -> object:
    """Resolve a public name (importing its module on first use), or a submodule such as ``vsekit.retrieval``.

    Raises:
        AttributeError: ``name`` is neither a public name nor a submodule.
    """
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(_importlib.import_module(module), name)
        globals()[name] = value  # the next access is a plain attribute lookup
        return value
    if not name.startswith("_"):  # `import vsekit; vsekit.retrieval.load_bank(...)` as when the root imported all
        try:
            return _importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's attributes plus every public name, resolved or not."""
    return sorted(set(globals()) | set(__all__))


del annotations  # the __future__ import's binding: not a name of the package
