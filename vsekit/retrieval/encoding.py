"""Embeddings of a captions file or a feature file written to ``.npy`` / ``.npz`` (``vsekit encode``): row i for
input i."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs
import numpy as np

from vsekit.errors import VsekitError
from vsekit.io import atomic_write
from vsekit.retrieval.files import read_captions, read_features
from vsekit.retrieval.models import open_model
from vsekit.retrieval.queries import unreadable_captions
from vsekit.training.manifest import refuse_foreign

ENCODE_SUFFIXES = (".npy", ".npz")


@attrs.frozen
class Encoded:
    """What :func:`encode_file` wrote: ``output``, the embeddings' ``shape`` (N, dim) and ``dtype``, and the 1-based
    line numbers of captions with no word the model knows (``unread_lines``; their rows say nothing about them)."""

    output: Path
    shape: tuple[int, int]
    dtype: str
    unread_lines: list[int] = attrs.Factory(list)


def is_encoding(path: Path) -> bool:
    """Whether ``path`` holds what :func:`encode_file` writes: an ``.npz`` of ``embeddings`` with ``texts`` or
    ``rows``, or an ``.npy`` of unit-norm float rows (N, dim)."""
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return "embeddings" in z.files and ("texts" in z.files or "rows" in z.files)
    rows = np.load(path, allow_pickle=False, mmap_mode="r")
    if rows.ndim != 2 or rows.dtype.kind != "f":
        return False
    return bool(np.allclose(np.linalg.norm(np.asarray(rows[:1000], dtype=np.float32), axis=1), 1.0, atol=1e-2))


def _writer(output: Path, emb: np.ndarray, texts: list[str] | None, ids: list[str] | None) -> Callable[[str], None]:
    """A writer for :func:`vsekit.io.atomic_write`: ``.npy`` the embeddings, ``.npz`` with texts/ids or rows."""
    suffix = output.suffix.lower()

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            if suffix == ".npy":
                np.save(fh, emb, allow_pickle=False)
            elif texts is not None:
                extra = {"ids": np.array(ids, dtype=str)} if ids is not None else {}
                np.savez(fh, embeddings=emb, texts=np.array(texts, dtype=str), **extra)
            else:
                np.savez(fh, embeddings=emb, rows=np.arange(len(emb), dtype=np.int64))

    return write


def encode_file(model: str | Path | None, *, captions: Path | None = None, features: Path | None = None,
                output: Path, dtype: str = "float32", trust_code: bool = False) -> Encoded:
    """Write the unit-norm embeddings of ``captions`` (a captions file) or ``features`` (a ``.npy`` of feature rows)
    to ``output``: ``.npy`` (the embeddings, (N, dim)) or ``.npz`` (``embeddings`` plus ``texts`` and, for an
    ``image,caption`` CSV, ``ids``; or ``rows``, the feature row numbers). ``dtype`` is ``float32`` or ``float16``.
    ``trust_code``: as :func:`vsekit.load_model`.

    The input is read before the model loads, so a missing file fails fast.
    Raises :class:`VsekitError` for no or two inputs, another suffix, or any input or model problem.
    """
    from vsekit.model import encode_images, encode_sentences

    if (captions is None) == (features is None):
        raise VsekitError("give one input: --captions FILE or --features FILE.npy")
    suffix = output.suffix.lower()
    if suffix not in ENCODE_SUFFIXES:
        raise VsekitError(f"{output}: cannot write {suffix or 'a file without a suffix'!r}: -o takes "
                          f"{' or '.join(ENCODE_SUFFIXES)} (.npz: embeddings with their texts/ids)")
    refuse_foreign(output, is_encoding, "vsekit encode")  # before any work: a user's file is never replaced
    texts = ids = None
    unread: list[int] = []
    if captions is not None:
        texts, ids = read_captions(captions)
    else:
        feats = read_features(features)  # type: ignore[arg-type]
    m, _, _ = open_model(model, trust_code=trust_code)
    if texts is not None:
        emb = encode_sentences(m, texts, verbose=True)
        unread = [i + (2 if ids is not None else 1) for i in unreadable_captions(m, texts)]
    else:
        emb = encode_images(m, feats)
    emb = emb.astype(dtype)
    atomic_write(output, _writer(output, emb, texts, ids))
    return Encoded(output, (int(emb.shape[0]), int(emb.shape[1])), dtype, unread)
