"""Pretrained word vectors in the common text format, to initialise a sentence encoder's word embeddings.

One word a line, then its ``dim`` numbers, separated by spaces (GloVe's files; word2vec's text files, whose
first line ``COUNT DIM`` is skipped). Only the words asked for are kept, so a large file costs one pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from vsekit.errors import DataError

__all__ = ["read_word_vectors"]


def read_word_vectors(path: str | Path, wanted: Iterable[str], dim: int) -> dict[str, np.ndarray]:
    """The vectors ((dim,) float32 each) of the ``wanted`` words that ``path`` holds, by word.

    Raises:
        DataError: a missing file, or a line that is not a word followed by ``dim`` finite numbers (naming
            the line, 1-based); a word2vec header naming another width.
    """
    path = Path(path)
    want = set(wanted)
    found: dict[str, np.ndarray] = {}
    try:
        fh = path.open(encoding="utf-8", newline="\n")
    except OSError as exc:
        raise DataError(f"{path}: cannot read word vectors: {exc.strerror or exc}") from None
    with fh:
        for n, line in enumerate(fh, start=1):
            parts = line.rstrip("\n").rstrip("\r").split(" ")
            if n == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):  # word2vec's header
                if int(parts[1]) != dim:
                    raise DataError(f"{path}: line 1: {parts[1]}-d vectors, expected {dim} (the word embedding size)")
                continue
            if not line.strip():
                continue
            if len(parts) != dim + 1:
                raise DataError(f"{path}: line {n}: expected a word and {dim} numbers separated by spaces, got "
                                f"{len(parts) - 1} values")
            if parts[0] not in want:
                continue
            try:
                vec = np.array(parts[1:], dtype=np.float32)
            except ValueError:
                raise DataError(f"{path}: line {n}: the values of {parts[0]!r} are not all numbers") from None
            if not np.isfinite(vec).all():
                raise DataError(f"{path}: line {n}: the vector of {parts[0]!r} is not finite")
            found[parts[0]] = vec
    return found
