"""``output = "trunk"`` features and the ``efficientnet_top`` image encoder that fine-tunes the last blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_bad_images import photo
from vsekit_efficientnet.extractor import EfficientNetLite0
from vsekit_efficientnet.network import side_of, trunk_dim
from vsekit_efficientnet.top import EfficientNetTop

from vsekit import registry
from vsekit.cli import cli
from vsekit.errors import DataError
from vsekit.training.setup import LR_SCALE


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], obj={})


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    paths = []
    for i in range(4):
        paths.append(folder / f"p{i}.jpg")
        photo(w=300 + 20 * i, h=240, seed=i).save(paths[-1])
    return paths


def trunk_rows(paths, top_blocks=1, crop=224):
    ext = EfficientNetLite0(EfficientNetLite0.Config(progress=False, output="trunk", top_blocks=top_blocks, crop=crop))
    got = ext.extract(paths)
    assert got.ok.all(), got.errors
    return got.features


def test_registered_through_the_entry_point():
    assert registry.get("image_encoder", "efficientnet_top") is EfficientNetTop


def test_trunk_sizes():
    assert trunk_dim(224) == 192 * 7 * 7 == 9408 and trunk_dim(256) == 192 * 8 * 8 and trunk_dim(225) == 192 * 64
    assert side_of(9408) == 7 and side_of(1280) is None and side_of(192 * 7 * 8) is None


@pytest.mark.parametrize("top_blocks", [1, 3])
def test_untrained_top_gives_the_pooled_features(pictures, extractor, top_blocks):
    """The trunk cut plus the encoder's top is the whole network: the pooled L2-normalized features of
    the plain extractor, for any cut (a block run twice or skipped would not be)."""
    rows = trunk_rows(pictures, top_blocks)
    assert rows.shape == (len(pictures), 9408)
    enc = EfficientNetTop(EfficientNetTop.Config(top_blocks=top_blocks), rows.shape[1], 16)
    with torch.no_grad():
        pooled = enc.pooled(torch.from_numpy(rows)).numpy()
    np.testing.assert_allclose(pooled, extractor.extract(pictures).features, atol=1e-5)
    wrong = EfficientNetTop(EfficientNetTop.Config(top_blocks=top_blocks + 1), rows.shape[1], 16)
    with torch.no_grad():
        assert not np.allclose(wrong.pooled(torch.from_numpy(rows)).numpy(), pooled, atol=1e-2)


def test_other_crop_sizes_work_too(pictures):
    rows = trunk_rows(pictures[:1], crop=256)
    assert rows.shape == (1, 192 * 8 * 8)
    enc = EfficientNetTop(EfficientNetTop.Config(), rows.shape[1], 8)
    assert enc(torch.from_numpy(rows)).shape == (1, 8)


def test_trunk_output_keeps_the_extractor_contract(pictures, tmp_path):
    from vsekit import testing

    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    res = testing.check_image_feature_extractor("efficientnet_lite0", {"progress": False, "output": "trunk"},
                                                pictures[:2], bad=[tmp_path / "broken.jpg"])
    assert res.features.shape == (2, 9408)


def test_pooled_features_are_refused():
    with pytest.raises(DataError, match=r"trunk activations .* got 1280-d image features"):
        EfficientNetTop(EfficientNetTop.Config(), 1280, 8)


def test_validate_refuses_pooled_features(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "dev", "test"):
        np.save(data / f"{split}_ims.npy", np.zeros((2, 1280), np.float32))
        (data / f"{split}_caps.txt").write_text("a b\n" * 10)
    (tmp_path / "spec.toml").write_text(SPEC.format(top=1))
    r = invoke("validate", tmp_path / "spec.toml")
    assert r.exit_code == 2 and "got 1280-d image features" in r.output, r.output


def test_the_extractor_record_is_checked():
    enc = EfficientNetTop(EfficientNetTop.Config(top_blocks=2), 9408, 8)
    assert enc.check_extractor({"type": "efficientnet_lite0", "output": "trunk", "top_blocks": 2}) == []
    assert "set top_blocks = 1" in enc.check_extractor({"type": "efficientnet_lite0", "output": "trunk",
                                                        "top_blocks": 1})[0]
    assert "output = 'pooled'" in enc.check_extractor({"type": "efficientnet_lite0"})[0]


def test_ten_crop_average_of_trunks_is_refused():
    from vsekit import spec

    with pytest.raises(spec.SpecProblems, match="set view = K too"):
        spec.build_component("image_feature_extractor", {"type": "efficientnet_lite0", "output": "trunk",
                                                         "ten_crop": True}, "data.features", ".")
    with pytest.raises(spec.SpecProblems, match="top_blocks"):
        spec.build_component("image_feature_extractor", {"type": "efficientnet_lite0", "output": "trunk",
                                                         "top_blocks": 5}, "data.features", ".")


def test_training_moves_the_network_weights_but_not_its_batch_norm_statistics(pictures):
    rows = torch.from_numpy(trunk_rows(pictures))
    enc = EfficientNetTop(EfficientNetTop.Config(lr_scale=0.5), rows.shape[1], 8)
    net = [p for n, p in enc.named_parameters() if not n.startswith("fc.")]
    assert net and all(getattr(p, LR_SCALE) == 0.5 for p in net)
    assert not any(hasattr(p, LR_SCALE) for p in enc.fc.parameters())  # the projection learns at [train] lr
    stats = {n: b.clone() for n, b in enc.named_buffers()}
    before = [p.detach().clone() for p in net]
    enc.train()
    assert enc.training and not enc.blocks.training and not enc.bn_head.training
    opt = torch.optim.SGD(enc.parameters(), lr=0.1)
    out = enc(rows)
    (out @ out.T).diagonal().sum().neg().backward()
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, net, strict=True))
    assert all(torch.equal(stats[n], b) for n, b in enc.named_buffers())


SPEC = """
name = "top"
[data]
type = "precomp"
dir = "data"
[model]
dim = 8
[model.sentence_encoder]
type = "gru"
dim_word = 8
[model.image_encoder]
type = "efficientnet_top"
top_blocks = {top}
[loss]
type = "infonce"
[train]
max_epochs = 1
batch_size = 8
[eval]
split = "test"
"""


def test_train_then_query_with_a_new_image(tmp_path, pictures):
    """vsekit extract --set output=trunk, vsekit run with efficientnet_top, then an image file query: the
    model records the trunk extractor, so a new image goes through the same cut and the trained top."""
    from vsekit.retrieval.retriever import Retriever

    data = tmp_path / "data"
    data.mkdir()
    words = ["a red ball", "two dogs", "the blue sky", "green grass"]
    for split in ("train", "dev", "test"):
        r = invoke("extract", "efficientnet_lite0", *pictures, "--set", "output=trunk", "--set", "progress=false",
                   "-o", data / f"{split}_ims.npy", "-q")
        assert r.exit_code == 0, r.output
        (data / f"{split}_caps.txt").write_text("".join(f"{w} {j}\n" for w in words for j in range(5)))
    (tmp_path / "spec.toml").write_text(SPEC.format(top=1))
    r = invoke("run", tmp_path / "spec.toml", "--out", tmp_path / "run", "-q")
    assert r.exit_code == 0, r.output
    retriever = Retriever.load(tmp_path / "run")
    row = np.load(data / "test_ims.npy")[2]
    np.testing.assert_allclose(retriever.embed_image(pictures[2]), retriever.embed_image(row), atol=1e-5)
    named = Retriever.load(tmp_path / "run", extractor="efficientnet_lite0")  # its recorded options, not defaults
    np.testing.assert_allclose(named.embed_image(pictures[2]), retriever.embed_image(row), atol=1e-5)

    (tmp_path / "spec.toml").write_text(SPEC.format(top=2))
    r = invoke("validate", tmp_path / "spec.toml")  # found before any training, as run refuses it
    assert r.exit_code == 2 and "set top_blocks = 1" in r.output, r.output
    r = invoke("run", tmp_path / "spec.toml", "--out", tmp_path / "run2", "-q")
    assert r.exit_code == 2 and "\n" not in r.output.strip(), r.output
    assert r.output.startswith("error: [model.image_encoder] efficientnet_top: top_blocks = 2") and \
        "set top_blocks = 1" in r.output
    assert not (tmp_path / "run2").exists()
