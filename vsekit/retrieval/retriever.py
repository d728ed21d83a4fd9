"""The retriever: a model with its default banks and image feature extractor, loaded once for many queries.

Default banks of a model ``M.json``: ``M.captions_bank.*`` and
``M.images_bank.*`` beside it, or (for installed models and read-only
folders) in the cache folder (:func:`~vsekit.retrieval.models.cache_dir`).
When missing (or made by other weights) they are built on first use: the
caption bank from the captions file beside the model (``M.captions.csv``,
``image,caption``) or else the training split of the model's own spec; the
image bank from the spec's test split.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vsekit.errors import DataError, VsekitError
from vsekit.model import JointModel
from vsekit.retrieval.banks import (
    KINDS,
    Bank,
    CaptionBank,
    Hit,
    ImageBank,
    build_caption_bank,
    build_image_bank,
    load_bank,
)
from vsekit.retrieval.extractors import build_extractor, extract_features, extractor_table
from vsekit.retrieval.files import load_default_bank, read_captions, read_ids
from vsekit.retrieval.models import ModelRef, cache_dir, open_model
from vsekit.retrieval.queries import arithmetic, embed_features, embed_text

log = logging.getLogger(__name__)


class Retriever:
    """A model plus its banks and image feature extractor, loaded once for many queries."""

    def __init__(self, model: JointModel, meta: dict[str, Any] | None = None, ref: ModelRef | None = None, *,
                 caption_bank: CaptionBank | None = None, image_bank: ImageBank | None = None,
                 extractor: str | None = None, trust_code: bool = False) -> None:
        self.model = model
        self.trust_code = trust_code  # may what the model's files name be imported (vsekit.load_model's)
        self.meta = meta or {}
        self.ref = ref
        self._banks: dict[str, Bank | None] = {"captions": caption_bank, "images": image_bank}
        self._extractor_name = extractor
        self._extractor: Any = None

    @classmethod
    def load(cls, model: str | Path | None = None, *, caption_bank: str | Path | None = None,
             image_bank: str | Path | None = None, extractor: str | None = None,
             trust_code: bool = False) -> Retriever:
        """Load a model (path, installed name, or the default) and, if given, bank files (``trust_code``: as
        :func:`vsekit.load_model`)."""
        m, ref, meta = open_model(model, trust_code=trust_code)
        return cls(m, meta, ref, caption_bank=load_bank(caption_bank, m) if caption_bank else None,
                   image_bank=load_bank(image_bank, m) if image_bank else None, extractor=extractor,
                   trust_code=trust_code)

    # -- banks ---------------------------------------------------------------

    def default_bank_paths(self, kind: str) -> list[Path]:
        """Where the default ``kind`` bank may be: beside the model, then in the cache."""
        if self.ref is None:
            return []
        stem = self.ref.path.with_suffix("")
        out = [stem.with_name(f"{stem.name}.{kind}_bank")]
        sha = self.meta.get("weights_sha256", "")[:16]
        if sha:
            out.append(cache_dir() / "banks" / f"{self.ref.name or 'model'}-{sha}.{kind}_bank")
        return out

    def save_target(self, kind: str) -> Path | None:
        """Where the default ``kind`` bank is saved: beside the model when that folder is ours and writable, else
        in the cache; None for a model loaded from no file."""
        paths = self.default_bank_paths(kind)
        if not paths:
            return None
        beside = paths[0]
        if not self.ref.installed and os.access(beside.parent, os.W_OK):
            return beside
        return paths[-1]

    def bank(self, kind: str, verbose: bool = True) -> Bank:
        """The ``kind`` bank given at load time, else the model's default one (built and saved on first use)."""
        if kind not in KINDS:
            raise VsekitError(f"bank kind must be one of {', '.join(KINDS)}, got {kind!r}")
        b = self._banks.get(kind)
        if b is not None:
            return b
        source = self._captions_file() if kind == "captions" else None
        for path in self.default_bank_paths(kind):
            b = load_default_bank(path, self.model, kind, source)  # None (and one log line) when it must be rebuilt
            if b is not None:
                self._banks[kind] = b
                return b
        b = self.build_default_bank(kind, verbose=verbose)
        target = self.save_target(kind)
        if target is not None:
            try:
                b.save(target)
                log.info("saved the default %s bank: %s", kind, b.path)
            except OSError as exc:
                log.warning("could not save the default %s bank at %s: %s", kind, target, exc)
        self._banks[kind] = b
        return b

    @property
    def caption_bank(self) -> CaptionBank:
        """The caption bank searched by image queries (see :meth:`bank`)."""
        return self.bank("captions")  # type: ignore[return-value]

    @property
    def image_bank(self) -> ImageBank:
        """The image bank searched by text and arithmetic queries (see :meth:`bank`)."""
        return self.bank("images")  # type: ignore[return-value]

    def build_default_bank(self, kind: str, verbose: bool = True) -> Bank:
        """Build the default bank: captions from the captions file beside the model or the training split; images
        from the spec's test split."""
        if kind == "captions":
            texts, ids, source = self._default_captions()
            if verbose:
                log.warning("building the caption bank of %d captions once (%s); later queries load it", len(texts),
                            source)
            return build_caption_bank(self.model, texts, ids, source=source, verbose=verbose)
        feats, ids, root, source = self._default_images()
        return build_image_bank(self.model, feats, ids, image_root=root, source=source,
                                extractor=self.meta.get("image_feature_extractor"))

    def _sidecar(self, suffix: str) -> Path | None:
        if self.ref is None:
            return None
        stem = self.ref.path.with_suffix("")
        p = stem.with_name(stem.name + suffix)
        return p if p.is_file() else None

    def split_data(self, split: str) -> tuple[Any, list[str] | None, Path | None]:
        """``(Split, image ids or None, image folder or None)`` of ``split`` of the model's own spec.

        Raises :class:`~vsekit.errors.DataError` when the model records no spec, or the spec's data cannot be read.
        """
        from vsekit import spec as spec_mod
        from vsekit.data.csv_captions import Flickr8kReader
        from vsekit.data.readers import PrecompReader

        spec = self.meta.get("spec") or getattr(self.model, "spec", None)
        if not spec:
            raise DataError("this model records no data spec")
        base = self.ref.path.parent if self.ref else Path.cwd()
        reader = spec_mod.from_dict(spec, source=str(self.ref.path if self.ref else "<model>"), base=base,
                                    trust_code=self.trust_code).data.build()
        data = reader.read(split)
        ids, root = data.image_ids, None
        if isinstance(reader, Flickr8kReader):
            root = reader.root / reader.config.images_dir
        elif ids is None and isinstance(reader, PrecompReader):
            caps_path, _ = reader.paths(split)
            ids_path = caps_path.with_name(caps_path.name[: -len("_caps.txt")] + "_ids.txt")
            if ids_path.is_file():
                listed = read_ids(ids_path)
                ids = listed if len(listed) == data.n_images else None
        return data, ids, root

    def _captions_file(self) -> Path | None:
        """The captions file beside the model (``M.captions.csv``, else ``M.captions.txt``), if any."""
        return self._sidecar(".captions.csv") or self._sidecar(".captions.txt")

    def _default_captions(self) -> tuple[list[str], list[str] | None, str]:
        sidecar = self._captions_file()
        if sidecar is not None:
            texts, ids = read_captions(sidecar)
            return texts, ids, str(sidecar)
        try:
            data, img_ids, _ = self.split_data("train")
        except VsekitError as exc:
            raise VsekitError(f"no caption bank for this model and none can be built from its training data ({exc}): "
                              f"build one with `vsekit bank MODEL --captions FILE`, or pass --bank") from None
        ids = [img_ids[i] for i in data.cap2img] if img_ids else None
        return list(data.captions), ids, f"{data.source} (train split)"

    def _default_images(self) -> tuple[np.ndarray, list[str], Path | None, str]:
        try:
            data, ids, root = self.split_data("test")
        except VsekitError as exc:
            raise VsekitError(f"no image bank for this model and none can be built from its test data ({exc}): "
                              f"build one with `vsekit bank MODEL --images DIR` (or --features F --ids IDS), "
                              f"or pass --bank") from None
        return data.images, ids or [str(i) for i in range(data.n_images)], root, f"{data.source} (test split)"

    # -- images ----------------------------------------------------------------

    @property
    def extractor(self) -> Any:
        """The image feature extractor for image files, built on first use (:func:`extractor_table` says which)."""
        if self._extractor is None:
            bank = self._banks.get("images")
            table = extractor_table(self.meta, self.model.dim_image, self._extractor_name, bank)
            # a name the user gave is their own request; one the model or bank records needs trust_code
            self._extractor = build_extractor(table, trust_code=self.trust_code or self._extractor_name is not None)
        return self._extractor

    def image_features(self, paths: Sequence[str | Path]) -> np.ndarray:
        """Feature rows (N, dim_image) float32 of image files; a file that fails is a DataError naming it."""
        return extract_features(self.extractor, paths, self.model.dim_image)

    def embed_image(self, image: str | Path | np.ndarray) -> np.ndarray:
        """The embedding (dim,) of an image file or of one feature row."""
        if isinstance(image, (str, Path)):
            return embed_features(self.model, self.image_features([image])[0])
        return embed_features(self.model, image)

    def embed_text(self, text: str) -> np.ndarray:
        """The unit-norm embedding (dim,) of one query caption (refused if empty or with no known word)."""
        return embed_text(self.model, text)

    # -- queries -----------------------------------------------------------------

    def query_vector(self, *, image: str | Path | np.ndarray | None = None, text: str | None = None,
                     minus: Sequence[str] = (), plus: Sequence[str] = ()) -> np.ndarray:
        """The unit-norm query (dim,) of one ``image`` or ``text``, moved by ``minus``/``plus`` words if given."""
        if (image is None) == (text is None):
            raise VsekitError("give one query: an image or a text")
        v = self.embed_image(image) if image is not None else self.embed_text(text)  # type: ignore[arg-type]
        return arithmetic(self.model, v, minus, plus) if (minus or plus) else v

    def captions_for_image(self, image: str | Path | np.ndarray, k: int = 5, *, minus: Sequence[str] = (),
                           plus: Sequence[str] = ()) -> list[Hit]:
        """The ``k`` best captions for an image file or feature row."""
        query = self.query_vector(image=image, minus=minus, plus=plus)
        return self.caption_bank.search(query, k)  # type: ignore[return-value]

    def images_for_caption(self, text: str, k: int = 5) -> list[Hit]:
        """The ``k`` best images for a caption."""
        return self.image_bank.search(self.query_vector(text=text), k)  # type: ignore[return-value]

    def images_for_image(self, image: str | Path | np.ndarray, k: int = 5, *, minus: Sequence[str] = (),
                         plus: Sequence[str] = ()) -> list[Hit]:
        """Images near an image, e.g. after arithmetic (``minus=["blue"], plus=["red"]``)."""
        query = self.query_vector(image=image, minus=minus, plus=plus)
        return self.image_bank.search(query, k)  # type: ignore[return-value]


def retrieve(model: JointModel | str | Path | None = None, *, image: str | Path | np.ndarray | None = None,
             text: str | None = None, k: int = 5, bank: Bank | str | Path | None = None,
             minus: Sequence[str] = (), plus: Sequence[str] = (), extractor: str | None = None,
             trust_code: bool = False) -> list[Hit]:
    """One query: captions for an ``image`` (a file or a feature row), or images for a ``text``.

    With ``minus``/``plus`` words the query is moved by vector arithmetic and
    an image query searches images. ``bank`` is a bank or its path; by default
    the model's default bank of the searched kind. ``trust_code``: as :func:`vsekit.load_model`.
    """
    if isinstance(model, JointModel):
        r = Retriever(model, extractor=extractor, trust_code=trust_code)
    else:
        r = Retriever.load(model, extractor=extractor, trust_code=trust_code)
    if bank is not None and not isinstance(bank, Bank):
        bank = load_bank(bank, r.model)
    q = r.query_vector(image=image, text=text, minus=minus, plus=plus)
    if bank is None:
        bank = r.bank("images" if text is not None or minus or plus else "captions")
    return bank.search(q, k)  # type: ignore[return-value]
