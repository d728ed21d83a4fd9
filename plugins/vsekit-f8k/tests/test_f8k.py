"""vsekit-f8k: the packaged model is installed, small, loads, and retrieves sensibly."""

from __future__ import annotations

import json

import numpy as np
import vsekit_f8k
from safetensors import safe_open

from vsekit import retrieval
from vsekit.io import read_lines

DATA = vsekit_f8k.DATA


def test_installed_as_a_model():
    models = retrieval.installed_models()
    assert "f8k" in models, "pip install -e plugins/vsekit-f8k registers the vsekit.models entry point"
    assert retrieval.installed_model_path("f8k") == vsekit_f8k.model_path()


def test_package_data_is_small_and_float16():
    files = sorted(DATA.iterdir())
    total = sum(f.stat().st_size for f in files)
    assert total < 25e6, f"{total / 1e6:.1f} MB"
    with safe_open(DATA / "model.safetensors", "pt") as f:
        # safe_open is not a dict: it has keys() but is not iterable, so f.keys() it must be
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"F16"}  # noqa: SIM118
    meta = json.loads((DATA / "model.json").read_text())
    assert meta["image_feature_extractor"] == {"type": "efficientnet_lite0"}
    assert meta["built_from"]["spec_file"] == "examples/flickr8k.toml"
    assert meta["test_metrics"]["rsum"] > 150
    texts, ids = retrieval.read_captions(DATA / "model.captions.csv")
    assert len(texts) == 30_000 and len(set(ids)) == 6_000
    readme = (DATA.parents[2] / "README.md").read_text()
    assert "research use only" in readme and "Hodosh" in readme


def test_text_query_over_the_shipped_test_images():
    r = retrieval.Retriever.load("f8k")
    bank = r.image_bank
    assert len(bank) == 1000 and bank.path.parent == DATA
    hits = r.images_for_caption("a dog runs on the beach", k=5)
    assert len(hits) == 5 and all(h.id.endswith(".jpg") for h in hits)


def test_both_directions_on_test_images():
    from vsekit import testing

    features = testing.shared_data("flickr8k-effnet-lite0/test_ims.npy") / "flickr8k-effnet-lite0"
    r = retrieval.Retriever.load("f8k")
    ids = retrieval.read_ids(features / "test_ids.txt")[:100]
    feats = np.load(features / "test_ims.npy")[:100]
    caps = read_lines(features / "test_caps.txt", "caption")[:500]  # the one record rule, as the readers
    cbank = retrieval.build_caption_bank(r.model, caps, [ids[i // 5] for i in range(500)])
    i2t = [next(h.rank for h in cbank.search(retrieval.embed_features(r.model, feats[i]), k=500) if h.id == ids[i])
           for i in range(0, 100, 5)]
    assert np.median(i2t) <= 10, i2t  # chance: about 50
    index = {name: n for n, name in enumerate(r.image_bank.ids)}
    t2i = [next(h.rank for h in r.images_for_caption(caps[5 * i], k=1000) if h.id == ids[i]) for i in range(0, 100, 5)]
    assert all(ids[i] in index for i in range(100))
    assert np.median(t2i) <= 50, t2i  # chance: 500
