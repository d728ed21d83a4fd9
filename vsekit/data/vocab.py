"""The word vocabulary: ``<eos>`` = 0, ``<unk>`` = 1, then words by descending count."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from vsekit.errors import DataError
from vsekit.limits import read_json

EOS, UNK = 0, 1
SPECIALS = ("<eos>", "<unk>")
FORMAT = "vsekit-vocab/1"


class Vocab:
    """Maps tokens to indices. Index 0 is ``<eos>`` (also the padding index), 1 is ``<unk>``."""

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        if tuple(words[:2]) != SPECIALS:
            words = list(SPECIALS) + [w for w in words if w not in SPECIALS]
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}
        if len(self.index) != len(words):
            raise DataError("vocabulary has duplicate words")

    @classmethod
    def build(cls, captions: Iterable[Sequence[str]], min_count: int = 1, max_size: int | None = None) -> Vocab:
        """Words seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
        counts = Counter(w for cap in captions for w in cap)
        ranked = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIALS),
                        key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(SPECIALS))]
        return cls(list(SPECIALS) + ranked)

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.words == other.words

    def encode(self, tokens: Sequence[str], n_words: int | None = None) -> list[int]:
        """Indices of ``tokens``; unknown words (or indices >= ``n_words``) become ``<unk>``."""
        get = self.index.get
        ids = [get(t, UNK) for t in tokens]
        if n_words is not None:
            ids = [i if i < n_words else UNK for i in ids]
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The words of the indices ``ids`` (``IndexError`` for an index outside the vocabulary)."""
        return [self.words[i] for i in ids]

    def to_json(self) -> dict:
        """The vocabulary as JSON data: ``{'format': FORMAT, 'words': [...]}`` (index order)."""
        return {"format": FORMAT, "words": self.words}

    @classmethod
    def from_json(cls, data: dict, source: str = "vocab") -> Vocab:
        """The vocabulary in JSON data ``data`` as :meth:`to_json` writes it; ``source`` names it in errors.

        Raises:
            DataError: ``data`` is not a vsekit vocabulary, or has duplicate words.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("words"), list):
            raise DataError(f"{source}: not a vsekit vocabulary (expected {{'format': {FORMAT!r}, 'words': [...]}})")
        return cls(data["words"])

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON (UTF-8) to ``path``, atomically."""
        from vsekit.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_json(), ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        """The vocabulary in the JSON file ``path`` (as :meth:`save` writes it).

        Raises:
            DataError: the file is missing, unreadable or not a vsekit vocabulary.
        """
        try:
            data = read_json(path, what="vocabulary")  # size and nesting bounded (vsekit.limits)
        except OSError as exc:
            raise DataError(f"{path}: cannot read vocabulary: {exc}") from None
        return cls.from_json(data, str(path))


def encode_all(vocab: Vocab, captions: Sequence[Sequence[str]], append_eos: bool = False,
               n_words: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All captions as one flat int64 array plus lengths (for fast batching)."""
    ids = [vocab.encode(c, n_words) + ([EOS] if append_eos else []) for c in captions]
    lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter((t for i in ids for t in i), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths
