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
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import importlib.metadata
import json
import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

import attrs
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vsekit._version import __version__
from vsekit.data import files as files_mod
from vsekit.data.files import is_captions_csv_header, list_images, parse_captions_csv
from vsekit.errors import CheckpointError, DataError, VsekitError
from vsekit.io import atomic_write, atomic_write_text, read_lines, sha256_file
from vsekit.model import JointModel

log = logging.getLogger(__name__)

FORMAT = "vsekit-bank/1"
MODELS_GROUP = "vsekit.models"
ENV_MODEL = "VSEKIT_MODEL"
ENV_CACHE = "VSEKIT_CACHE_DIR"
#: the package to install for an extractor a model records but this environment lacks
EXTRACTOR_PACKAGES = {"efficientnet_lite0": "vsekit-efficientnet"}
IMAGE_SUFFIXES = files_mod.IMAGE_SUFFIXES  # one suffix set: vsekit.data.files
DTYPES = {"float16": torch.float16, "float32": torch.float32}
KINDS = ("captions", "images")


# --------------------------------------------------------------------------
# hits and banks


@attrs.frozen
class Hit:
    """One search result: 1-based ``rank``, cosine ``score``, bank row ``index``, its ``id`` and (captions) ``text``."""

    rank: int
    score: float
    index: int
    id: str | None = None
    text: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _dtype_name(dtype: torch.dtype) -> str:
    for name, dt in DTYPES.items():
        if dt == dtype:
            return name
    raise DataError(f"bank embeddings must be float16 or float32, got {dtype}")


def bank_files(path: str | Path) -> tuple[Path, Path]:
    """``(NAME.json, NAME.safetensors)`` for ``NAME``, ``NAME.json`` or ``NAME.safetensors``."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".json", ".safetensors") else p
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".safetensors")


class Bank:
    """Unit-norm embeddings (N, dim), float16 or float32, with an id per row. See :class:`CaptionBank`, :class:`ImageBank`."""

    kind: ClassVar[str] = ""

    def __init__(self, embeddings: np.ndarray | torch.Tensor, ids: Sequence[str | None] | None = None,
                 texts: Sequence[str] | None = None, meta: dict[str, Any] | None = None) -> None:
        emb = torch.as_tensor(np.asarray(embeddings) if not torch.is_tensor(embeddings) else embeddings)
        if emb.ndim != 2:
            raise DataError(f"{self.kind} bank: expected a 2-D (N, dim) embedding matrix, got shape {tuple(emb.shape)}")
        if emb.dtype not in (torch.float16, torch.float32):
            emb = emb.float()
        self.embeddings = emb.contiguous()
        n = len(emb)
        self.ids: list[str | None] = list(ids) if ids is not None else [None] * n
        if len(self.ids) != n:
            raise DataError(f"{self.kind} bank: {n} embeddings but {len(self.ids)} ids")
        self.texts: list[str] | None = list(texts) if texts is not None else None
        if self.texts is not None and len(self.texts) != n:
            raise DataError(f"{self.kind} bank: {n} embeddings but {len(self.texts)} texts")
        self.meta: dict[str, Any] = dict(meta or {})
        self.path: Path | None = None

    def __len__(self) -> int:
        return len(self.embeddings)

    def __repr__(self) -> str:
        where = f", {self.path}" if self.path else ""
        return f"{type(self).__name__}({len(self)} x {self.dim}, {self.dtype}{where})"

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def dtype(self) -> str:
        return _dtype_name(self.embeddings.dtype)

    def _where(self) -> str:
        return str(self.path) if self.path else f"the {self.kind} bank"

    def scores(self, query: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Cosine scores of every row against ``query`` (dim,) -> (N,), or (Q, dim) -> (Q, N), as float32."""
        q = torch.as_tensor(np.asarray(query) if not torch.is_tensor(query) else query)
        if q.ndim not in (1, 2) or q.shape[-1] != self.dim:
            raise DataError(f"{self._where()}: a query must have {self.dim} values, got shape {tuple(q.shape)}")
        q = q.to(self.embeddings.dtype)
        # (N, dim) @ (dim, 1): the matrix-matrix kernel is faster than matrix-vector for float16 on CPU
        out = (self.embeddings @ q.unsqueeze(1)).squeeze(1) if q.ndim == 1 else q @ self.embeddings.T
        return out.float()

    def search(self, query: np.ndarray | torch.Tensor, k: int = 5) -> list[Hit] | list[list[Hit]]:
        """The ``k`` best rows for a query (dim,) -> list of hits, or for queries (Q, dim) -> one list per query."""
        if len(self) == 0:
            raise VsekitError(f"{self._where()} is empty: nothing to search (build it with `vsekit bank`)")
        if k < 1:
            raise VsekitError(f"k must be >= 1, got {k}")
        scores = self.scores(query)
        values, indices = torch.topk(scores, min(k, len(self)), dim=-1)
        if scores.ndim == 1:
            return self._hits(values.tolist(), indices.tolist())
        return [self._hits(v, i) for v, i in zip(values.tolist(), indices.tolist())]

    def _hits(self, values: list[float], indices: list[int]) -> list[Hit]:
        texts = self.texts
        return [Hit(r, float(s), int(i), self.ids[i], texts[i] if texts is not None else None)
                for r, (s, i) in enumerate(zip(values, indices), 1)]

    # -- files ---------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write ``NAME.safetensors`` then ``NAME.json`` (each atomically); return the JSON path."""
        meta_path, weights = bank_files(path)
        tensors = {"embeddings": self.embeddings.detach().contiguous().cpu()}
        atomic_write(weights, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
        meta = {
            "format": FORMAT,
            "kind": self.kind,
            "count": len(self),
            "dim": self.dim,
            "dtype": self.dtype,
            "vsekit_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **{k: v for k, v in self.meta.items() if k not in ("ids", "texts")},
            "weights": weights.name,
            "weights_sha256": sha256_file(weights),
            "ids": self.ids,
        }
        if self.texts is not None:
            meta["texts"] = self.texts
        atomic_write_text(meta_path, json.dumps(meta, ensure_ascii=False, separators=(",", ":")))
        self.path = meta_path
        return meta_path


class CaptionBank(Bank):
    """Caption embeddings with their texts; ``ids`` are the captions' image ids where known."""

    kind = "captions"

    def __init__(self, embeddings: Any, texts: Sequence[str], ids: Sequence[str | None] | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        super().__init__(embeddings, ids, texts, meta)


class ImageBank(Bank):
    """Image embeddings with their ids (file names or paths); ``meta['image_root']`` is where the files lie, if known."""

    kind = "images"

    def __init__(self, embeddings: Any, ids: Sequence[str], meta: dict[str, Any] | None = None) -> None:
        super().__init__(embeddings, ids, None, meta)

    @property
    def image_root(self) -> Path | None:
        root = self.meta.get("image_root")
        return Path(root) if root else None

    def image_path(self, index: int, images_dir: str | Path | None = None) -> Path | None:
        """The image file of row ``index`` (looked up in ``images_dir``, the bank's image root, or the id as a path)."""
        return find_image(self.ids[index], images_dir, self.image_root)


def find_image(image_id: str | None, *roots: str | Path | None) -> Path | None:
    """The existing file for ``image_id``: under the first root that has it, else the id itself as a path."""
    if not image_id:
        return None
    for root in roots:
        if root:
            p = Path(root) / image_id
            if p.is_file():
                return p
    p = Path(image_id)
    return p if p.is_absolute() and p.is_file() else None


def load_bank(path: str | Path, model: JointModel | None = None, verify: bool = False) -> CaptionBank | ImageBank:
    """Read a bank saved by :meth:`Bank.save`.

    With ``model`` the bank must have been built by the same weights (else a
    :class:`VsekitError`); ``verify`` also checks the safetensors file's sha256.
    """
    meta_path, weights = bank_files(path)
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: no such bank (expected {meta_path.name} and {weights.name}; "
                        f"build one with `vsekit bank`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{meta_path}: not a readable bank JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("kind") not in KINDS:
        raise DataError(f"{meta_path}: not a vsekit bank (expected format {FORMAT!r})")
    weights = meta_path.with_name(meta.get("weights", weights.name))
    if not weights.is_file():
        raise DataError(f"{weights}: bank embeddings missing (named by {meta_path})")
    if verify and sha256_file(weights) != meta.get("weights_sha256"):
        raise DataError(f"{weights}: checksum mismatch (changed after {meta_path} was written)")
    try:
        emb = load_file(weights)["embeddings"]
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise DataError(f"{weights}: cannot read bank embeddings: {exc}") from None
    ids = meta.get("ids")
    if not isinstance(ids, list) or len(ids) != len(emb) or (emb.ndim == 2 and emb.shape[1] != meta.get("dim")):
        raise DataError(f"{meta_path}: {weights.name} holds {tuple(emb.shape)} embeddings, but the JSON lists "
                        f"{len(ids) if isinstance(ids, list) else 'no'} ids of dim {meta.get('dim')}: rebuild the bank")
    rest = {k: v for k, v in meta.items() if k not in ("ids", "texts")}
    if meta["kind"] == "captions":
        texts = meta.get("texts")
        if not isinstance(texts, list):
            raise DataError(f"{meta_path}: a caption bank without texts")
        bank: CaptionBank | ImageBank = CaptionBank(emb, texts, ids, rest)
    else:
        bank = ImageBank(emb, ids, rest)
    bank.path = meta_path
    if model is not None:
        check_bank(bank, model)
    return bank


# --------------------------------------------------------------------------
# model identity


def model_fingerprint(model: JointModel) -> str:
    """A digest of the model's weights (float32 bytes), so a bank knows which model made it."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def _model_info(model: JointModel) -> dict[str, Any]:
    info = {"fingerprint": model_fingerprint(model), "dim": model.dim}
    sha = getattr(model, "weights_sha256", None)
    if sha:
        info["weights_sha256"] = sha
    return info


def same_model(bank: Bank, model: JointModel) -> bool:
    """Whether ``bank`` was built by ``model``'s weights (checkpoint digests when both know them, else fingerprints)."""
    info = bank.meta.get("model") or {}
    sha = getattr(model, "weights_sha256", None)
    if sha and info.get("weights_sha256"):
        return info["weights_sha256"] == sha
    return info.get("fingerprint") == model_fingerprint(model)


def check_bank(bank: Bank, model: JointModel) -> None:
    if bank.dim != model.dim:
        raise VsekitError(f"{bank._where()}: {bank.dim}-d embeddings, but the model embeds in {model.dim}-d")
    if bank.meta.get("model") and not same_model(bank, model):  # a bank made by hand records no model
        raise VsekitError(f"{bank._where()} was built by another model's weights: rebuild it with "
                          f"`vsekit bank MODEL ... -o {bank_files(bank.path)[0].with_suffix('') if bank.path else 'BANK'}`")


# --------------------------------------------------------------------------
# building banks


def _as_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        _dtype_name(dtype)
        return dtype
    if dtype not in DTYPES:
        raise VsekitError(f"bank dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def build_caption_bank(model: JointModel, captions: Sequence[str] | Sequence[Sequence[str]],
                       ids: Sequence[str | None] | None = None, *, dtype: str | torch.dtype = "float16",
                       source: str | None = None, verbose: bool = False) -> CaptionBank:
    """Encode ``captions`` (strings, or token lists) once into a :class:`CaptionBank`."""
    from vsekit.model import encode_sentences

    if len(captions) == 0:
        raise DataError(f"{source or 'captions'}: no captions: a bank needs at least one")
    texts = [c if isinstance(c, str) else " ".join(c) for c in captions]
    emb = torch.from_numpy(encode_sentences(model, list(captions), verbose=verbose)).to(_as_dtype(dtype))
    meta = {"model": _model_info(model), "source": source}
    return CaptionBank(emb, texts, ids, meta)


def build_image_bank(model: JointModel, features: np.ndarray | torch.Tensor, ids: Sequence[str], *,
                     dtype: str | torch.dtype = "float16", image_root: str | Path | None = None,
                     extractor: dict[str, Any] | None = None, source: str | None = None) -> ImageBank:
    """Encode image feature rows (N, dim_image) once into an :class:`ImageBank` with one id per row."""
    from vsekit.model import encode_images

    n = len(features)
    if n == 0:
        raise DataError(f"{source or 'image features'}: no images: a bank needs at least one")
    if len(ids) != n:
        raise DataError(f"{source or 'image features'}: {n} feature rows but {len(ids)} ids")
    emb = torch.from_numpy(encode_images(model, features)).to(_as_dtype(dtype))
    meta = {"model": _model_info(model), "source": source,
            "image_root": str(Path(image_root).resolve()) if image_root else None,
            "image_feature_extractor": extractor}
    return ImageBank(emb, [str(i) for i in ids], meta)


# --------------------------------------------------------------------------
# input files


def read_captions(path: str | Path) -> tuple[list[str], list[str] | None]:
    """Captions from a file: one a line, or a CSV with the header ``image,caption`` (Flickr8K's ``captions.txt``).

    Returns ``(texts, image_ids or None)``, one text per record, in file
    order, so that row i of anything computed from them is record i. Lines
    follow :func:`vsekit.io.read_lines`: trailing blank lines are ignored and
    any other empty caption is refused with its line number.
    Raises :class:`~vsekit.errors.DataError` naming the file and line.
    """
    path = Path(path)
    lines = read_lines(path, "caption")
    if not is_captions_csv_header(lines[0]):
        return [line.strip() for line in lines], None
    rows = parse_captions_csv(path, lines)
    texts, ids = [text.strip() for _, _, text in rows], [name for _, name, _ in rows]
    if not texts:
        raise DataError(f"{path}: no captions (only the header)")
    return texts, ids


def write_captions_csv(path: str | Path, texts: Sequence[str], ids: Sequence[str | None]) -> None:
    """Write ``image,caption`` CSV (the format :func:`read_captions` reads), atomically."""
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "caption"])
    for i, t in zip(ids, texts):
        w.writerow([i or "", t])
    atomic_write_text(path, buf.getvalue())


def read_features(path: str | Path) -> np.ndarray:
    from vsekit.data.files import load_feature_rows

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    return load_feature_rows(p)


def read_ids(path: str | Path) -> list[str]:
    """Image ids, one a line (:func:`vsekit.io.read_lines`' rule; an empty id is refused with its line number)."""
    return [line.strip() for line in read_lines(path, "image id")]


def image_files(paths: Iterable[str | Path]) -> tuple[list[Path], Path | None]:
    """Image files named directly or found in folders (:func:`vsekit.data.files.list_images`); returns
    (files, the folder when they all come from one)."""
    paths = [Path(p) for p in paths]
    files = list_images(paths)
    folders = [p for p in paths if p.is_dir()]
    root = folders[0] if len(folders) == 1 and all(f.parent == folders[0] for f in files) else None
    return files, root


# --------------------------------------------------------------------------
# image feature extractors


def extractor_table(meta: dict[str, Any] | None, dim_image: int, name: str | None = None,
                    bank: Bank | None = None) -> dict[str, Any]:
    """Which image feature extractor turns a photo into this model's features.

    In order: ``name``; what the checkpoint records (``image_feature_extractor``,
    carried from the features' ``_extractor.json`` by the trainer); what the
    bank records; the spec's ``[data.features]`` unless it is ``precomputed``.
    Nothing is guessed from ``dim_image``.

    Raises:
        VsekitError: none of these names an extractor (the message asks for ``--extractor``).
    """
    if name:
        return {"type": name}
    meta = meta or {}
    candidates = [meta.get("image_feature_extractor"), bank.meta.get("image_feature_extractor") if bank else None,
                  ((meta.get("spec") or {}).get("data") or {}).get("features")]
    for table in candidates:
        if isinstance(table, dict) and table.get("type") and table.get("type") != "precomputed":
            return dict(table)
    raise VsekitError(f"this model takes {dim_image}-d image features and records no image feature extractor: "
                      f"pass --extractor NAME, the one that made its training features (`vsekit plugins` lists "
                      f"them), or query with --features FILE.npy")


def build_extractor(table: dict[str, Any]) -> Any:
    """Build an image feature extractor from a table ``{"type": NAME, ...}``."""
    from vsekit import spec as spec_mod
    from vsekit.errors import RegistryError

    name = table.get("type")
    try:
        component = spec_mod.build_component("image_feature_extractor", table, "extractor", Path.cwd())
        if "progress" not in table and "progress" in attrs.fields_dict(type(component.config)):
            component = attrs.evolve(component, config=attrs.evolve(component.config, progress=False))  # one query
        return component.build()
    except spec_mod._SpecProblems as exc:
        msg = "; ".join(m for _, m in exc.problems)
        if name in EXTRACTOR_PACKAGES and name not in _registered_extractors():
            msg = (f"image queries need the image feature extractor {name!r}, which is not installed: "
                   f"pip install {EXTRACTOR_PACKAGES[name]} (or pass --extractor NAME, or --features FILE.npy)")
        raise RegistryError(msg) from None


def _registered_extractors() -> list[str]:
    from vsekit import registry

    return registry.registry("image_feature_extractor").names()


def extract_features(extractor: Any, paths: Sequence[str | Path], dim_image: int | None = None) -> np.ndarray:
    """Feature rows of image files; any image that fails is a :class:`DataError` naming it."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: no such image file")
    result = extractor.extract(paths)
    ok = np.asarray(result.ok, dtype=bool)
    if not ok.all():
        bad = paths[int(np.flatnonzero(~ok)[0])]
        why = result.errors.get(bad.name) or result.errors.get(str(bad)) or "the extractor could not read it"
        raise DataError(f"{bad}: cannot use this image: {why}" + (f" (and {int((~ok).sum()) - 1} more)" if (~ok).sum() > 1 else ""))
    feats = np.asarray(result.features, dtype=np.float32)
    if dim_image is not None and (feats.ndim != 2 or feats.shape[1] != dim_image):
        raise DataError(f"the image feature extractor gives {feats.shape[-1]}-d features, but the model takes "
                        f"{dim_image}-d: pass --extractor with the extractor the model was trained on")
    return feats


# --------------------------------------------------------------------------
# queries


def check_query_text(model: JointModel, text: str | Sequence[str], what: str = "query text") -> None:
    """Refuse a query the model cannot read: empty (no token after the model's tokenizer) or, for a model with a
    word vocabulary, no word it knows -- its embedding would be the same for every such query, and a ranking
    of it means nothing. Raises :class:`~vsekit.errors.DataError` saying which."""
    from vsekit.data.vocab import UNK

    tokens = model.tokens([text])[0]
    shown = text if isinstance(text, str) else " ".join(text)
    if not tokens:
        raise DataError(f"{what} {shown!r} is empty: it has no words to search with")
    if getattr(model.sentence_encoder, "needs_texts", False):
        return  # the encoder reads the text itself: its own tokenizer knows no "unknown word"
    if all(i == UNK for i in model.vocab.encode(tokens, model.n_words)):
        raise DataError(f"{what} {shown!r}: none of its words is in the model's vocabulary "
                        f"({len(model.vocab)} words, tokenizer {model.tokenizer!r}), so it would match at random")


def embed_text(model: JointModel, text: str | Sequence[str]) -> np.ndarray:
    """The unit-norm embedding (dim,) of one query caption.

    Raises :class:`~vsekit.errors.DataError` for an empty text or one with no known word (:func:`check_query_text`).
    """
    from vsekit.model import encode_sentences

    check_query_text(model, text)
    return encode_sentences(model, [text])[0]


def embed_features(model: JointModel, features: np.ndarray | torch.Tensor) -> np.ndarray:
    """The unit-norm embedding (dim,) of one image feature row (dim_image,)."""
    from vsekit.model import encode_images

    f = np.asarray(features, dtype=np.float32)
    return encode_images(model, f.reshape(1, -1))[0]


def arithmetic(model: JointModel, image_vec: np.ndarray | torch.Tensor, minus: Sequence[str] = (),
               plus: Sequence[str] = ()) -> np.ndarray:
    """The paper's multimodal arithmetic: ``normalize(image_vec - sum(embed(minus)) + sum(embed(plus)))``.

    ``image_vec`` is an embedding in the joint space (dim,), e.g. from
    :func:`vsekit.encode_images`; each word (or phrase) is embedded as a
    one-word caption. Returns a unit-norm (dim,) float32 vector.
    """
    from vsekit.model import encode_sentences

    v = np.asarray(image_vec.detach().cpu() if torch.is_tensor(image_vec) else image_vec, dtype=np.float32).copy()
    if v.shape != (model.dim,):
        raise DataError(f"arithmetic: image_vec must be a joint-space embedding of shape ({model.dim},), got {v.shape} "
                        f"(encode image features with vsekit.encode_images first)")
    for word in (*minus, *plus):
        check_query_text(model, word, "--minus/--plus word")
    if minus:
        v -= encode_sentences(model, list(minus)).sum(axis=0)
    if plus:
        v += encode_sentences(model, list(plus)).sum(axis=0)
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm < 1e-8:
        raise VsekitError("arithmetic: the words cancel the query out (zero vector); change --minus/--plus")
    return v / norm


# --------------------------------------------------------------------------
# installed models


@attrs.frozen
class ModelRef:
    """Where a model is: its checkpoint ``.json`` and, for an installed model, its name."""

    path: Path
    name: str | None = None

    @property
    def installed(self) -> bool:
        return self.name is not None


def installed_models() -> dict[str, importlib.metadata.EntryPoint]:
    """Models installed through the ``vsekit.models`` entry-point group, by name."""
    out: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in sorted(importlib.metadata.entry_points(group=MODELS_GROUP), key=lambda e: (e.name, e.value)):
        out.setdefault(ep.name, ep)
    return out


def installed_model_path(name: str, ep: importlib.metadata.EntryPoint | None = None) -> Path:
    ep = ep or installed_models()[name]
    try:
        target = ep.load()
        path = target() if callable(target) else target
    except Exception as exc:  # a broken model package must say which one
        raise CheckpointError(f"installed model {name!r} ({ep.value}): cannot load: {type(exc).__name__}: {exc}") from None
    from vsekit import checkpoint

    return checkpoint.find(Path(path))


def resolve_model(ref: str | Path | None = None) -> ModelRef:
    """A run folder / checkpoint path, an installed model's name, or None (``$VSEKIT_MODEL``, else the only installed one)."""
    from vsekit import checkpoint

    models = installed_models()
    if ref is None or str(ref) == "":
        ref = os.environ.get(ENV_MODEL) or None
        if ref is None:
            if len(models) == 1:
                name = next(iter(models))
                return ModelRef(installed_model_path(name, models[name]), name)
            if not models:
                raise CheckpointError("no MODEL given and no installed model: pass a run folder or checkpoint, "
                                      "or `pip install vsekit-f8k` for a pretrained Flickr8K model")
            raise CheckpointError(f"no MODEL given and several models are installed ({', '.join(models)}): "
                                  f"name one, or set {ENV_MODEL}")
    p = Path(ref).expanduser()
    if p.exists() or p.with_name(p.name + ".json").exists():
        return ModelRef(checkpoint.find(p))
    if str(ref) in models:
        return ModelRef(installed_model_path(str(ref), models[str(ref)]), str(ref))
    known = f" — installed models: {', '.join(models)}" if models else ""
    raise CheckpointError(f"{ref}: no such run folder, checkpoint or installed model{known}")


def load_model(ref: str | Path | None = None) -> tuple[JointModel, ModelRef, dict[str, Any]]:
    """Load a model for retrieval; returns (model, where it is, its checkpoint metadata)."""
    from vsekit import checkpoint

    where = resolve_model(ref)
    model, meta, _ = checkpoint.load(where.path)
    model.set_origin(weights_sha256=meta["weights_sha256"])
    return model, where, meta


def cache_dir() -> Path:
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "vsekit"


# --------------------------------------------------------------------------
# the retriever: a model with its default banks


class Retriever:
    """A model plus its banks and image feature extractor, loaded once for many queries."""

    def __init__(self, model: JointModel, meta: dict[str, Any] | None = None, ref: ModelRef | None = None, *,
                 caption_bank: CaptionBank | None = None, image_bank: ImageBank | None = None,
                 extractor: str | None = None) -> None:
        self.model = model
        self.meta = meta or {}
        self.ref = ref
        self._banks: dict[str, Bank | None] = {"captions": caption_bank, "images": image_bank}
        self._extractor_name = extractor
        self._extractor: Any = None

    @classmethod
    def load(cls, model: str | Path | None = None, *, caption_bank: str | Path | None = None,
             image_bank: str | Path | None = None, extractor: str | None = None) -> "Retriever":
        """Load a model (path, installed name, or the default) and, if given, bank files."""
        m, ref, meta = load_model(model)
        return cls(m, meta, ref, caption_bank=load_bank(caption_bank, m) if caption_bank else None,
                   image_bank=load_bank(image_bank, m) if image_bank else None, extractor=extractor)

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

    def _save_target(self, kind: str) -> Path | None:
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
        for path in self.default_bank_paths(kind):
            if bank_files(path)[0].is_file():
                try:
                    b = load_bank(path)
                except DataError as exc:
                    log.warning("ignoring unreadable bank %s: %s", path, exc)
                    continue
                if b.kind == kind and b.dim == self.model.dim and same_model(b, self.model):
                    self._banks[kind] = b
                    return b
                log.info("%s was built by other weights: rebuilding it", b.path)
        b = self.build_default_bank(kind, verbose=verbose)
        target = self._save_target(kind)
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
        return self.bank("captions")  # type: ignore[return-value]

    @property
    def image_bank(self) -> ImageBank:
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

    def _split(self, split: str) -> tuple[Any, list[str] | None, Path | None]:
        """(Split, image ids, image folder) of the model's own spec."""
        from vsekit import spec as spec_mod
        from vsekit.data.readers import Flickr8kReader, PrecompReader

        spec = self.meta.get("spec") or getattr(self.model, "spec", None)
        if not spec:
            raise DataError("this model records no data spec")
        base = self.ref.path.parent if self.ref else Path.cwd()
        reader = spec_mod.from_dict(spec, source=str(self.ref.path if self.ref else "<model>"), base=base).data.build()
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

    def _default_captions(self) -> tuple[list[str], list[str] | None, str]:
        sidecar = self._sidecar(".captions.csv") or self._sidecar(".captions.txt")
        if sidecar is not None:
            texts, ids = read_captions(sidecar)
            return texts, ids, str(sidecar)
        try:
            data, img_ids, _ = self._split("train")
        except VsekitError as exc:
            raise VsekitError(f"no caption bank for this model and none can be built from its training data ({exc}): "
                              f"build one with `vsekit bank MODEL --captions FILE`, or pass --bank") from None
        ids = [img_ids[i] for i in data.cap2img] if img_ids else None
        return list(data.captions), ids, f"{data.source} (train split)"

    def _default_images(self) -> tuple[np.ndarray, list[str], Path | None, str]:
        try:
            data, ids, root = self._split("test")
        except VsekitError as exc:
            raise VsekitError(f"no image bank for this model and none can be built from its test data ({exc}): "
                              f"build one with `vsekit bank MODEL --images DIR` (or --features F --ids IDS), "
                              f"or pass --bank") from None
        return data.images, ids or [str(i) for i in range(data.n_images)], root, f"{data.source} (test split)"

    # -- images ----------------------------------------------------------------

    @property
    def extractor(self) -> Any:
        if self._extractor is None:
            bank = self._banks.get("images")
            table = extractor_table(self.meta, self.model.dim_image, self._extractor_name, bank)
            self._extractor = build_extractor(table)
        return self._extractor

    def image_features(self, paths: Sequence[str | Path]) -> np.ndarray:
        return extract_features(self.extractor, paths, self.model.dim_image)

    def embed_image(self, image: str | Path | np.ndarray) -> np.ndarray:
        """The embedding (dim,) of an image file or of one feature row."""
        if isinstance(image, (str, Path)):
            return embed_features(self.model, self.image_features([image])[0])
        return embed_features(self.model, image)

    def embed_text(self, text: str) -> np.ndarray:
        return embed_text(self.model, text)

    # -- queries -----------------------------------------------------------------

    def query_vector(self, *, image: str | Path | np.ndarray | None = None, text: str | None = None,
                     minus: Sequence[str] = (), plus: Sequence[str] = ()) -> np.ndarray:
        if (image is None) == (text is None):
            raise VsekitError("give one query: an image or a text")
        v = self.embed_image(image) if image is not None else self.embed_text(text)  # type: ignore[arg-type]
        return arithmetic(self.model, v, minus, plus) if (minus or plus) else v

    def captions_for_image(self, image: str | Path | np.ndarray, k: int = 5, *, minus: Sequence[str] = (),
                           plus: Sequence[str] = ()) -> list[Hit]:
        return self.caption_bank.search(self.query_vector(image=image, minus=minus, plus=plus), k)  # type: ignore[return-value]

    def images_for_caption(self, text: str, k: int = 5) -> list[Hit]:
        return self.image_bank.search(self.query_vector(text=text), k)  # type: ignore[return-value]

    def images_for_image(self, image: str | Path | np.ndarray, k: int = 5, *, minus: Sequence[str] = (),
                         plus: Sequence[str] = ()) -> list[Hit]:
        """Images near an image, e.g. after arithmetic (``minus=["blue"], plus=["red"]``)."""
        return self.image_bank.search(self.query_vector(image=image, minus=minus, plus=plus), k)  # type: ignore[return-value]


def retrieve(model: JointModel | str | Path | None = None, *, image: str | Path | np.ndarray | None = None,
             text: str | None = None, k: int = 5, bank: Bank | str | Path | None = None,
             minus: Sequence[str] = (), plus: Sequence[str] = (), extractor: str | None = None) -> list[Hit]:
    """One query: captions for an ``image`` (a file or a feature row), or images for a ``text``.

    With ``minus``/``plus`` words the query is moved by vector arithmetic and
    an image query searches images. ``bank`` is a bank or its path; by default
    the model's default bank of the searched kind.
    """
    if isinstance(model, JointModel):
        r = Retriever(model, extractor=extractor)
    else:
        r = Retriever.load(model, extractor=extractor)
    if bank is not None and not isinstance(bank, Bank):
        bank = load_bank(bank, r.model)
    q = r.query_vector(image=image, text=text, minus=minus, plus=plus)
    if bank is None:
        bank = r.bank("images" if text is not None or minus or plus else "captions")
    return bank.search(q, k)  # type: ignore[return-value]
