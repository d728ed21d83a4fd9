"""Images shared between splits (train, dev, test), found in one place for every reader.

A test image that is also a training image makes the test scores measure memory, not retrieval (every
Flickr8K test image also listed in train lifts the test rsum from about 290 to 360), and nothing else in a
run would say so. Two splits are compared:

- by image id where both have ids (``flickr8k``, ``csv``, ``karpathy``, ``coco``: :attr:`Split.image_ids`),
  matched exactly as written (no case, space or folder folding);
- by identical feature rows otherwise (``precomp`` has no ids): each image's row bytes are hashed
  (BLAKE2b, 16 bytes); for region features (N, K, dim) the first region of each image stands for it.

The result is a plain dict for ``provenance.json``; :func:`overlap_warnings` turns it into the sentences a
run logs and lists in ``results.json`` ``warnings``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from vsekit.data.readers import Split
from vsekit.io import CHECK_CHUNK_BYTES

__all__ = ["overlap_warnings", "row_digests", "split_overlap"]

#: How many shared images a pair's record names.
EXAMPLES = 5


def row_digests(images: np.ndarray) -> list[bytes]:
    """One 16-byte BLAKE2b digest per image of ``images`` (N, dim) or (N, K, dim; the first region is hashed),
    of the row's bytes as stored; read in chunks of about :data:`vsekit.io.CHECK_CHUNK_BYTES` (a memory-mapped
    file is never read whole)."""
    rows = images[:, 0] if images.ndim == 3 else images
    step = max(1, CHECK_CHUNK_BYTES // max(1, rows[:1].nbytes))
    out: list[bytes] = []
    for start in range(0, len(rows), step):
        chunk = np.ascontiguousarray(rows[start: start + step])
        out += [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in chunk]
    return out


def _keys(split: Split, by_id: bool, cache: dict[str, list[Any]]) -> list[Any]:
    name = f"{split.name}:{'id' if by_id else 'rows'}"
    if name not in cache:
        cache[name] = list(split.image_ids or []) if by_id else row_digests(split.images)
    return cache[name]


def _pair(a: Split, b: Split, cache: dict[str, list[Any]]) -> dict[str, Any]:
    """The record of one pair: how matched, how many of ``b``'s images are in ``a``, examples."""
    by_id = bool(a.image_ids) and bool(b.image_ids)
    keys_a, keys_b = _keys(a, by_id, cache), _keys(b, by_id, cache)
    first = {}
    for i, k in enumerate(keys_a):
        first.setdefault(k, i)
    shared = [(first[k], j) for j, k in enumerate(keys_b) if k in first]
    record: dict[str, Any] = {"by": "image id" if by_id else "feature rows", "shared": len(shared),
                              "images": {a.name: len(keys_a), b.name: len(keys_b)}}
    if by_id:
        record["examples"] = [keys_b[j] for _, j in shared[:EXAMPLES]]
    else:
        record["examples"] = [{a.name: i, b.name: j} for i, j in shared[:EXAMPLES]]  # 0-based rows
    return record


def split_overlap(splits: Sequence[Split]) -> dict[str, dict[str, Any]]:
    """Every pair of distinctly named ``splits`` compared: ``{"train/test": record, ...}`` in the given order.

    A record is ``{"by": "image id" | "feature rows", "shared": number of the second split's images found in
    the first, "images": {name: image count}, "examples": up to 5 shared ids, or {name: 0-based row} pairs}``.
    A split given twice (the dev split evaluated) is compared once.
    """
    unique = list({s.name: s for s in splits}.values())
    cache: dict[str, list[Any]] = {}
    return {f"{a.name}/{b.name}": _pair(a, b, cache) for n, a in enumerate(unique) for b in unique[n + 1:]}


def overlap_warnings(found: dict[str, dict[str, Any]]) -> list[str]:
    """One sentence per pair of :func:`split_overlap`'s result that shares images (none when none does)."""
    out = []
    for pair, rec in found.items():
        if not rec["shared"]:
            continue
        a, b = pair.split("/", 1)
        e = rec["examples"][0]
        example = repr(e) if rec["by"] == "image id" else f"{b} row {e[b]} = {a} row {e[a]}"
        out.append(f"splits {a!r} and {b!r} overlap: {rec['shared']} of the {rec['images'][b]} {b!r} images are "
                   f"also in {a!r} (matched by {rec['by']}, e.g. {example}); scores on {b!r} are not measured on "
                   f"unseen images")
    return out
