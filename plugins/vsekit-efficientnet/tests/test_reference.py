"""Agreement with the reference features ``flickr8k-effnet-lite0`` (same preprocessing, cosine > 0.999)."""

from __future__ import annotations

import numpy as np
import pytest

THRESHOLD = 0.999


def _agreement(reference, extractor, n: int | None) -> tuple[np.ndarray, list[str]]:
    ids = (reference / "flickr8k-effnet-lite0" / "test_ids.txt").read_text().split()
    ref = np.load(reference / "flickr8k-effnet-lite0" / "test_ims.npy").astype(np.float32)
    if n is not None:  # every 50th image: originals and squashed copies alike
        step = len(ids) // n
        ids, ref = ids[::step][:n], ref[::step][:n]
    got = extractor.extract([reference / "flickr8k" / "images" / i for i in ids])
    assert got.ok.all(), got.errors
    assert got.features.shape == ref.shape
    np.testing.assert_allclose(np.linalg.norm(got.features, axis=1), 1.0, atol=1e-5)
    return (got.features * ref).sum(axis=1), ids


def _check(cos: np.ndarray, ids: list[str]) -> None:
    worst = int(cos.argmin())
    assert (cos > THRESHOLD).all(), \
        f"{int((cos <= THRESHOLD).sum())} image(s) below {THRESHOLD}, worst {ids[worst]}: {cos[worst]:.6f}"


def test_reference_agreement_20_images(reference, extractor):
    cos, ids = _agreement(reference, extractor, 20)
    _check(cos, ids)


@pytest.mark.slow
def test_reference_agreement_all_1000_test_images(reference, extractor):
    cos, ids = _agreement(reference, extractor, None)
    assert len(cos) == 1000
    _check(cos, ids)
