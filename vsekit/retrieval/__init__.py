"""Retrieval: caption and image banks, top-k search, and multimodal vector arithmetic.

A *bank* is a matrix of unit-norm embeddings (float16 or float32) with one id
per row (and, for captions, the text), encoded once by a model and saved
beside it as ``NAME.safetensors`` + ``NAME.json`` (no pickle). A query is one
encode and one ``torch.topk`` over ``bank @ q``::

    import vsekit
    from vsekit import retrieval

    r = retrieval.Retriever.load("runs/flickr8k")           # or an installed model: "f8k"
    r.captions_for_image("photo.jpg", k=5)                  # image -> captions of the default caption bank
    r.images_for_caption("a dog runs on the beach", k=5)    # caption -> images of the default image bank

    bank = retrieval.build_caption_bank(model, ["a dog runs .", "two men talk ."])
    bank.save("my_captions")                                # my_captions.safetensors + my_captions.json
    hits = bank.search(vsekit.encode_sentences(model, ["a dog"])[0], k=1)

    q = retrieval.arithmetic(model, image_vec, minus=["blue"], plus=["red"])   # the paper's image - word + word

Default banks of a model ``M.json``: ``M.captions_bank.*`` and
``M.images_bank.*`` beside it, or (for installed models and read-only
folders) in the cache folder (``$VSEKIT_CACHE_DIR``, else
``$XDG_CACHE_HOME/vsekit``, else ``~/.cache/vsekit``). When missing (or made by
other weights) they are built on first use: the caption bank from the
captions file beside the model (``M.captions.csv``, ``image,caption``) or else
the training split of the model's own spec; the image bank from the spec's
test split.

Installed models: a package exposes a model through the entry-point group
``vsekit.models`` (``name = "module:function"``, the function returns the path
of a checkpoint ``.json``). ``vsekit retrieve`` without a MODEL uses
``$VSEKIT_MODEL``, else the only installed model.

The package, one concept a module: :mod:`~vsekit.retrieval.banks` (banks, their
files, which model made them), :mod:`~vsekit.retrieval.files` (captions, ids,
feature rows, image files), :mod:`~vsekit.retrieval.extractors` (image feature
extractors for image queries), :mod:`~vsekit.retrieval.queries` (query
embeddings, arithmetic), :mod:`~vsekit.retrieval.models` (run folders,
checkpoints, installed models), :mod:`~vsekit.retrieval.retriever` (a model
with its default banks), and what the CLI commands call:
:mod:`~vsekit.retrieval.search` (``retrieve``),
:mod:`~vsekit.retrieval.building` (``bank``), :mod:`~vsekit.retrieval.encoding`
(``encode``).
"""


from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from vsekit.data.files import IMAGE_SUFFIXES  # one suffix set: vsekit.data.files
from vsekit.model import JointModel
from vsekit.retrieval.banks import (
    DTYPES,
    FORMAT,
    KINDS,
    Bank,
    CaptionBank,
    Hit,
    ImageBank,
    bank_files,
    build_caption_bank,
    build_image_bank,
    check_bank,
    find_image,
    load_bank,
    model_fingerprint,
    same_model,
)
from vsekit.retrieval.building import BankRequest, make_bank
from vsekit.retrieval.encoding import ENCODE_SUFFIXES, Encoded, encode_file
from vsekit.retrieval.extractors import (
    EXTRACTOR_PACKAGES,
    build_extractor,
    extract_features,
    extractor_table,
    image_rows,
)
from vsekit.retrieval.files import image_files, read_captions, read_features, read_ids, write_captions_csv
from vsekit.retrieval.models import (
    ENV_CACHE,
    ENV_MODEL,
    MODELS_GROUP,
    ModelRef,
    cache_dir,
    default_model,
    installed_model_path,
    installed_models,
    list_installed_models,
    locate_model,
    open_model,
    resolve_model,
)
from vsekit.retrieval.queries import arithmetic, check_query_text, embed_features, embed_text, unreadable_captions
from vsekit.retrieval.retriever import Retriever, retrieve
from vsekit.retrieval.search import RetrieveRequest, RetrieveResult, run_query

__all__ = [
    "DTYPES",
    "ENCODE_SUFFIXES",
    "ENV_CACHE",
    "ENV_MODEL",
    "EXTRACTOR_PACKAGES",
    "FORMAT",
    "IMAGE_SUFFIXES",
    "KINDS",
    "MODELS_GROUP",
    "Bank",
    "BankRequest",
    "CaptionBank",
    "Encoded",
    "Hit",
    "ImageBank",
    "ModelRef",
    "RetrieveRequest",
    "RetrieveResult",
    "Retriever",
    "arithmetic",
    "bank_files",
    "build_caption_bank",
    "build_extractor",
    "build_image_bank",
    "cache_dir",
    "check_bank",
    "check_query_text",
    "default_model",
    "embed_features",
    "embed_text",
    "encode_file",
    "extract_features",
    "extractor_table",
    "find_image",
    "image_files",
    "image_rows",
    "installed_model_path",
    "installed_models",
    "list_installed_models",
    "load_bank",
    "load_model",
    "locate_model",
    "make_bank",
    "model_fingerprint",
    "open_model",
    "read_captions",
    "read_features",
    "read_ids",
    "resolve_model",
    "retrieve",
    "run_query",
    "same_model",
    "unreadable_captions",
    "write_captions_csv",
]


def load_model(ref: str | Path | None = None) -> tuple[JointModel, ModelRef, dict[str, Any]]:
    """Deprecated: :func:`vsekit.load_model` loads a model (also by installed name); :func:`open_model` returns
    ``(model, where it is, its checkpoint metadata)`` as this did. Warns with a ``DeprecationWarning``."""
    warnings.warn("vsekit.retrieval.load_model is deprecated; use vsekit.load_model (the model), or "
                  "vsekit.retrieval.open_model for (model, where, meta)", DeprecationWarning, stacklevel=2)
    return open_model(ref)
