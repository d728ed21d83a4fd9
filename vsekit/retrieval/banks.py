"""Banks: unit-norm embeddings (N, dim) with an id per row, their files, and which model made them.

A bank is saved as ``NAME.safetensors`` (the embeddings, float16 or float32) plus ``NAME.json`` (format, ids,
texts, the model's identity, the sha256 of the embeddings file and of the file the bank was built from); nothing is
pickled. The two are committed as one change (:meth:`Bank.save`) and every load checks that the embeddings are the
ones the JSON names (:func:`load_bank`). :func:`build_caption_bank` and :func:`build_image_bank` encode once;
:meth:`Bank.search` is one ``torch.topk`` over ``bank @ q``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vsekit._version import __version__
from vsekit.data.files import find_image
from vsekit.errors import DataError, VsekitError
from vsekit.io import (
    check_feature_values,
    commit_parts,
    committed_part,
    lock_beside,
    pending_path,
    record_text,
    sha256_file,
    sibling,
)
from vsekit.limits import read_json
from vsekit.model import JointModel
from vsekit.training.manifest import record_written

log = logging.getLogger(__name__)

FORMAT = "vsekit-bank/1"
DTYPES = {"float16": torch.float16, "float32": torch.float32}
KINDS = ("captions", "images")


@attrs.frozen
class Hit:
    """One search result: 1-based ``rank``, cosine ``score``, bank row ``index``, its ``id`` and (captions) ``text``."""

    rank: int
    score: float
    index: int
    id: str | None = None
    text: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"rank", "score", "index", "id", "text"}`` (JSON-ready)."""
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
    """Unit-norm embeddings (N, dim), float16 or float32, with an id per row.

    See :class:`CaptionBank`, :class:`ImageBank`. Raises :class:`DataError` for a matrix that is not 2-D, or ids or
    texts that do not match its rows.
    """

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
        """The embedding size (columns)."""
        return int(self.embeddings.shape[1])

    @property
    def dtype(self) -> str:
        """``"float16"`` or ``"float32"``."""
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
            return self.hits(values.tolist(), indices.tolist())
        return [self.hits(v, i) for v, i in zip(values.tolist(), indices.tolist(), strict=True)]

    def hits(self, values: Sequence[float], indices: Sequence[int]) -> list[Hit]:
        """The :class:`Hit` list for scores ``values`` of rows ``indices``, best first (rank 1 is the first pair).

        For a search done elsewhere (e.g. an index over this bank's rows); ``indices`` are 0-based rows of the
        bank, ``values`` their cosine scores. Raises ``IndexError`` for a row outside the bank.
        """
        texts = self.texts
        return [Hit(r, float(s), int(i), self.ids[i], texts[i] if texts is not None else None)
                for r, (s, i) in enumerate(zip(values, indices, strict=True), 1)]

    # -- files ---------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Commit ``NAME.safetensors`` and ``NAME.json`` (recording its sha256) as one change
        (:func:`vsekit.io.commit_parts`) under the lock ``.NAME.json.lock``: an interrupted save leaves the old
        pair or the new one; concurrent saves do not interleave. Returns the JSON path.

        Raises:
            DataError: a text or id that cannot be one line (a line break, a U+FEFF, an empty text): a bank's
                texts and ids are shown and exported one a line (:func:`vsekit.io.record_text`); nothing is written.
            OSError: the files cannot be written.
        """
        meta_path, weights = bank_files(path)
        record_text(self.texts or [], "caption", str(meta_path))
        record_text((i or "" for i in self.ids), "id", str(meta_path), allow_empty=True)
        record_written(weights, meta_path)  # listed when written into a run folder (--force clears them)
        tensors = {"embeddings": self.embeddings.detach().contiguous().cpu()}
        check_feature_values(tensors["embeddings"].float().numpy(), f"{meta_path} (bank embeddings)")  # none written
        with lock_beside(meta_path):
            commit_parts(meta_path, {weights: lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT})},
                         lambda digests: self._record(weights, digests[weights]))
        self.path = meta_path
        return meta_path

    def _record(self, weights: Path, digest: str) -> str:
        """The bank's JSON text, naming ``weights`` (a file name beside it) and its sha256 ``digest``."""
        meta = {
            "format": FORMAT,
            "kind": self.kind,
            "count": len(self),
            "dim": self.dim,
            "dtype": self.dtype,
            "vsekit_version": __version__,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            **{k: v for k, v in self.meta.items() if k not in ("ids", "texts")},
            "weights": weights.name,
            "weights_sha256": digest,
            "ids": self.ids,
        }
        if self.texts is not None:
            meta["texts"] = self.texts
        return json.dumps(meta, ensure_ascii=False, separators=(",", ":"))


class CaptionBank(Bank):
    """Caption embeddings with their texts; ``ids`` are the captions' image ids where known."""

    kind = "captions"

    def __init__(self, embeddings: Any, texts: Sequence[str], ids: Sequence[str | None] | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        super().__init__(embeddings, ids, texts, meta)


class ImageBank(Bank):
    """Image embeddings with their ids (file names or paths); ``meta['image_root']`` is where the files lie, if
    known."""

    kind = "images"

    def __init__(self, embeddings: Any, ids: Sequence[str], meta: dict[str, Any] | None = None) -> None:
        super().__init__(embeddings, ids, None, meta)

    @property
    def image_root(self) -> Path | None:
        """The folder the image files lie in, if the bank records one."""
        root = self.meta.get("image_root")
        return Path(root) if root else None

    def image_path(self, index: int, images_dir: str | Path | None = None) -> Path | None:
        """The image file of row ``index`` (looked up in ``images_dir``, the bank's image root, or the id as a path)."""
        return find_image(self.ids[index], images_dir, self.image_root)


def read_bank_meta(meta_path: Path, weights: Path) -> dict[str, Any]:
    """The bank JSON ``meta_path`` as a dict, checked to be a vsekit bank (``weights``: the default data file,
    for the message). Raises DataError: missing, unreadable or not a bank's."""
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: no such bank (expected {meta_path.name} and {weights.name}; "
                        f"build one with `vsekit bank`)")
    try:
        meta = read_json(meta_path, what="bank JSON")  # size and nesting bounded (vsekit.limits)
    except OSError as exc:
        raise DataError(f"{meta_path}: not a readable bank JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("kind") not in KINDS:
        raise DataError(f"{meta_path}: not a vsekit bank (expected format {FORMAT!r})")
    return meta


def _embeddings_file(meta_path: Path, meta: dict[str, Any], default: Path, verify: bool) -> Path:
    """The embeddings file the JSON names (a bare name beside it) with the sha256 it records: the file, or its
    ``.pending`` copy (a save stopped after its commit point). Raises DataError naming both files."""
    weights = sibling(meta_path, meta.get("weights", default.name), "weights")
    if not weights.is_file() and not pending_path(weights).is_file():
        raise DataError(f"{weights}: bank embeddings missing (named by {meta_path})")
    if not verify:
        return weights if weights.is_file() else pending_path(weights)
    digest = meta.get("weights_sha256")
    found = committed_part(weights, digest) if isinstance(digest, str) else None
    if found is None:
        raise DataError(f"{weights}: checksum mismatch: not the embeddings {meta_path} was saved with (one of "
                        f"the two files was changed, replaced or cut short): rebuild the bank with `vsekit bank`")
    return found


def load_bank(path: str | Path, model: JointModel | None = None, verify: bool = True) -> CaptionBank | ImageBank:
    """Read a bank saved by :meth:`Bank.save`.

    With ``model`` the bank must have been built by the same weights (else a
    :class:`VsekitError`). ``verify`` (the default) checks that the embeddings file's sha256 is the one the JSON
    records; ``verify=False`` skips reading the file twice, for files known to be intact.

    Raises:
        DataError: no bank there, an unreadable or foreign JSON, a bad ``weights`` name, a missing, changed or
            unreadable embeddings file, or ids, texts and rows that do not match.
        VsekitError: another model's bank (with ``model``).
    """
    meta_path, default = bank_files(path)
    meta = read_bank_meta(meta_path, default)
    weights = _embeddings_file(meta_path, meta, default, verify)
    try:
        emb = load_file(weights)["embeddings"]
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise DataError(f"{weights}: cannot read bank embeddings: {exc}") from None
    ids = meta.get("ids")
    if not isinstance(ids, list) or len(ids) != len(emb) or (emb.ndim == 2 and emb.shape[1] != meta.get("dim")):
        raise DataError(f"{meta_path}: {weights.name} holds {tuple(emb.shape)} embeddings, but the JSON lists "
                        f"{len(ids) if isinstance(ids, list) else 'no'} ids of dim {meta.get('dim')}: rebuild the bank")
    check_feature_values(emb.float().numpy(), f"{weights} (bank embeddings)")  # no NaN bank is searched
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


def source_digest(source: str | Path | None) -> str | None:
    """The sha256 of the file a bank is built from (its ``source_sha256``); None when ``source`` names no file."""
    return sha256_file(source) if source is not None and Path(source).is_file() else None


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
    """Refuse a bank ``model`` cannot search: another embedding size, or built by other weights.

    Raises:
        VsekitError: the message says how to rebuild the bank.
    """
    if bank.dim != model.dim:
        raise VsekitError(f"{bank._where()}: {bank.dim}-d embeddings, but the model embeds in {model.dim}-d")
    if bank.meta.get("model") and not same_model(bank, model):  # a bank made by hand records no model
        name = bank_files(bank.path)[0].with_suffix("") if bank.path else "BANK"
        raise VsekitError(f"{bank._where()} was built by another model's weights: rebuild it with "
                          f"`vsekit bank MODEL ... -o {name}`")


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
    meta = {"model": _model_info(model), "source": source, "source_sha256": source_digest(source)}
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
    if twice := [i for i, c in Counter(ids).items() if c > 1]:  # a result and /thumbs/ID name one image each
        raise DataError(f"{source or 'image ids'}: id {twice[0]!r} names more than one row; ids name one image each")
    emb = torch.from_numpy(encode_images(model, features)).to(_as_dtype(dtype))
    meta = {"model": _model_info(model), "source": source, "source_sha256": source_digest(source),
            "image_root": str(Path(image_root).resolve()) if image_root else None,
            "image_feature_extractor": extractor}
    return ImageBank(emb, [str(i) for i in ids], meta)

