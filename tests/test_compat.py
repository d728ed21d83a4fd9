"""A checkpoint written by vsekit 0.1.0 still loads and gives the same embeddings and test numbers.

``tests/data/compat-0.1.0/`` holds ``best.json`` + ``best.safetensors`` of a small GRU run trained by
vsekit 0.1.0 (commit 5a21dac: ``vsekit run examples/quickstart.toml --set train.max_epochs=3
--set model.dim=64 --set model.sentence_encoder.dim_word=32 --set train.lr=0.005``), and what that
version computed from it: the embeddings of the first ten test captions and images (``expected.npz``)
and the test-split metrics (``expected_test_metrics.json``). The test split's trained scores hold no
ties, so the 0.2.0 tie rule gives the same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vsekit.api import load_model, resolve_split
from vsekit.evaluate import evaluate_split
from vsekit.model import encode_images, encode_sentences

DATA = Path(__file__).parent / "data" / "compat-0.1.0"


@pytest.fixture(scope="module")
def model():
    return load_model(DATA / "best.json")


def test_embeddings_match_0_1_0(model):
    expected = np.load(DATA / "expected.npz")
    split = resolve_split(model, None, "test")
    captions = [str(c) for c in expected["captions"]]
    np.testing.assert_allclose(encode_sentences(model, captions), expected["caption_emb"], atol=1e-6)
    np.testing.assert_allclose(encode_images(model, split.images[:10]), expected["image_emb"], atol=1e-6)


def test_test_metrics_match_0_1_0(model):
    expected = json.loads((DATA / "expected_test_metrics.json").read_text())
    got = evaluate_split(model, resolve_split(model, None, "test"))
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
