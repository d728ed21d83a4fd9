"""Images shared between splits (train, dev, test), found in one place for every reader.

A test image that is also a training image makes the test scores measure memory, not retrieval (every
Flickr8K test image also listed in train lifts the test rsum from about 290 to 360), and nothing else in a
run would say so. Two splits are compared:

- by image id where both have ids (``flickr8k``, ``csv``, ``karpathy``, ``coco``: :attr:`Split.image_ids`),
  matched exactly as written (no case, space or folder folding);
- always by identical feature rows, the only way where a format has no ids (``precomp``), and a second one
  where it has (one picture under two names, ``x/B.jpg`` and ``B.jpg``, is one image): each image's row
  bytes are hashed (BLAKE2b, 16 bytes); for region features (N, K, dim) the first region stands for it.

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


def _digests(split: Split, cache: dict[str, list[bytes]]) -> list[bytes]:
    if split.name not in cache:
        cache[split.name] = row_digests(split.images)
    return cache[split.name]


def _shared(keys_a: Sequence[Any], keys_b: Sequence[Any]) -> list[tuple[int, int]]:
    """``(first index in keys_a, index in keys_b)`` for every key of ``keys_b`` also in ``keys_a``."""
    first: dict[Any, int] = {}
    for i, k in enumerate(keys_a):
        first.setdefault(k, i)
    return [(first[k], j) for j, k in enumerate(keys_b) if k in first]


def _pair(a: Split, b: Split, cache: dict[str, list[bytes]]) -> dict[str, Any]:
    """The record of one pair (see :func:`split_overlap`)."""
    record: dict[str, Any] = {"images": {a.name: a.n_images, b.name: b.n_images}, "by_id": None}
    if a.image_ids and b.image_ids:
        ids = _shared(a.image_ids, b.image_ids)
        record["by_id"] = {"shared": len(ids), "examples": [b.image_ids[j] for _, j in ids[:EXAMPLES]]}
    rows = _shared(_digests(a, cache), _digests(b, cache))
    record["by_rows"] = {"shared": len(rows), "examples": [{a.name: i, b.name: j} for i, j in rows[:EXAMPLES]]}
    return record


def split_overlap(splits: Sequence[Split]) -> dict[str, dict[str, Any]]:
    """Every pair of distinctly named ``splits`` compared: ``{"train/test": record, ...}`` in the given order.

    A record is ``{"images": {name: image count}, "by_id": None (a split without ids) or {"shared": number of
    the second split's ids also in the first, "examples": up to 5 of them}, "by_rows": {"shared": number of the
    second split's images whose feature row is also one of the first's, "examples": up to 5 {name: 0-based
    row} pairs}}``. Rows are compared even where ids are (``x.jpg`` and ``copy of x.jpg`` are one image). A
    split given twice (the dev split evaluated) is compared once.
    """
    unique = list({s.name: s for s in splits}.values())
    cache: dict[str, list[bytes]] = {}
    return {f"{a.name}/{b.name}": _pair(a, b, cache) for n, a in enumerate(unique) for b in unique[n + 1:]}


def overlap_warnings(found: dict[str, dict[str, Any]]) -> list[str]:
    """The sentences for :func:`split_overlap`'s result: per pair, one for shared ids and one for shared feature
    rows when they find more images than the ids do (none when the splits share nothing)."""
    out = []
    for pair, rec in found.items():
        a, b = pair.split("/", 1)
        n_b, by_id, by_rows = rec["images"][b], rec["by_id"], rec["by_rows"]
        if by_id and by_id["shared"]:
            out.append(f"splits {a!r} and {b!r} overlap: {by_id['shared']} of the {n_b} {b!r} images are also in "
                       f"{a!r} (same image id, e.g. {by_id['examples'][0]!r}); scores on {b!r} are not measured on "
                       f"unseen images")
        if by_rows["shared"] > (by_id["shared"] if by_id else 0):
            e = by_rows["examples"][0]
            out.append(f"splits {a!r} and {b!r} overlap: {by_rows['shared']} of the {n_b} {b!r} images have the "
                       f"feature row of an image of {a!r} (identical rows, e.g. {b} row {e[b]} = {a} row {e[a]}); "
                       f"scores on {b!r} are not measured on unseen images")
    return out
