"""Per-view training features (``[data] train_views``): rows matched by id, one view drawn per image per epoch."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_spec_text
from test_cli import assert_user_error, invoke

import vsekit
from vsekit.checkpoint import read_tensors
from vsekit.data.readers import PrecompReader
from vsekit.data.views import draw_views, read_views
from vsekit.errors import DataError


def write_view(path: Path, ids: list[str], rows: np.ndarray) -> Path:
    np.save(path, rows.astype(np.float32))
    path.with_name(path.name[: -len("_ims.npy")] + "_ids.txt").write_text("".join(i + "\n" for i in ids))
    return path


@pytest.fixture
def viewed_data(small_data, tmp_path) -> tuple[Path, list[str], np.ndarray]:
    """small_data with train_ids.txt, and a view file holding other rows, in reverse order plus one extra image."""
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    own = np.load(data / "train_ims.npy")
    ids = [f"img{i:03d}.jpg" for i in range(len(own))]
    (data / "train_ids.txt").write_text("".join(i + "\n" for i in ids))
    other = np.random.default_rng(7).standard_normal(own.shape).astype(np.float32)
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    write_view(tmp_path / "flip_ims.npy", ["extra.jpg", *ids[::-1]],
               np.concatenate([other[:1] * 0 + 1 / np.sqrt(own.shape[1]), other[::-1]]))
    return data, ids, other


def test_views_are_matched_by_id(viewed_data, tmp_path):
    data, ids, other = viewed_data
    reader = PrecompReader(PrecompReader.Config(dir=str(data), train_views=(str(tmp_path / "flip_ims.npy"),)))
    train = reader.read("train")
    assert train.views.shape == (len(ids), 2, other.shape[1])
    np.testing.assert_array_equal(train.views[:, 0], train.images)  # view 0: the split's own rows
    np.testing.assert_allclose(train.views[:, 1], other)  # row i of the view file is image i, whatever its order
    assert reader.read("dev").views is None  # evaluation splits keep their own rows


def test_view_problems_are_named(viewed_data, tmp_path):
    _, ids, other = viewed_data
    with pytest.raises(DataError, match=r"no row for 1 of the 200 images.*'img000.jpg'"):
        read_views(np.zeros((200, other.shape[1]), np.float32), ids,
                   [write_view(tmp_path / "short_ims.npy", ids[1:], other[1:])], "train_ids.txt")
    with pytest.raises(DataError, match=r"8-d rows, but the split's features"):
        read_views(np.zeros((200, other.shape[1]), np.float32), ids,
                   [write_view(tmp_path / "narrow_ims.npy", ids, other[:, :8])], "train_ids.txt")
    twice = write_view(tmp_path / "twice_ims.npy", [*ids, ids[5]], np.concatenate([other, other[:1]]))
    with pytest.raises(DataError, match=r"image id 'img005.jpg' appears twice"):
        read_views(np.zeros((200, other.shape[1]), np.float32), ids, [twice], "train_ids.txt")
    np.save(tmp_path / "noids_ims.npy", other)
    with pytest.raises(DataError, match=r"no ids file noids_ids.txt"):
        read_views(np.zeros((200, other.shape[1]), np.float32), ids, [tmp_path / "noids_ims.npy"], "train_ids.txt")


def test_draws_depend_on_seed_and_epoch_only():
    a = draw_views(1000, 2, seed=0, epoch=3)
    np.testing.assert_array_equal(a, draw_views(1000, 2, seed=0, epoch=3))
    assert not np.array_equal(a, draw_views(1000, 2, seed=0, epoch=4))
    assert not np.array_equal(a, draw_views(1000, 2, seed=1, epoch=3))
    counts = np.bincount(draw_views(10000, 4, seed=0, epoch=0), minlength=4)
    assert counts.min() > 2300 and counts.max() < 2700  # uniform over the views


def test_training_draws_the_views(viewed_data, tmp_path):
    """The views reach the optimiser: the same run without them ends with other weights, and each epoch's
    images are the drawn views."""
    from vsekit.training import setup as setup_mod

    data, ids, other = viewed_data
    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(data, data={"train_views": [str(tmp_path / "flip_ims.npy")]}))
    plain = tmp_path / "plain.toml"
    plain.write_text(tiny_spec_text(data))
    with_views = vsekit.train(spec, tmp_path / "v", quiet=True)
    without = vsekit.train(plain, tmp_path / "p", quiet=True)
    wv = read_tensors(Path(with_views["run_dir"]) / "last.json")[2]
    wp = read_tensors(Path(without["run_dir"]) / "last.json")[2]
    assert wv.keys() == wp.keys() and not all(torch.equal(wv[k], wp[k]) for k in wv)

    own = torch.from_numpy(np.load(data / "train_ims.npy"))
    views = torch.stack([own, torch.from_numpy(other)], 1)
    fake = type("S", (), {"views": views, "images": own})()
    setup_mod.epoch_views(fake, seed=0, epoch=1)
    pick = draw_views(len(ids), 2, 0, 1)
    torch.testing.assert_close(fake.images, views[torch.arange(len(ids)), torch.from_numpy(pick)])
    assert 0 < pick.sum() < len(ids)


def test_missing_view_file_is_one_line(viewed_data, tmp_path):
    data, _, _ = viewed_data
    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(data, data={"train_views": ["nothing_ims.npy"]}))
    assert_user_error(invoke("validate", spec), "nothing_ims.npy: no such file (train_views)")
    assert_user_error(invoke("run", spec, "--out", tmp_path / "run", "-q"), "nothing_ims.npy")
    assert not (tmp_path / "run").exists()


def test_views_of_other_crops_do_not_set_the_models_extractor(viewed_data, tmp_path):
    """View files record their crop (``view = K``): they differ from each other and from the split's own
    features by design, so they neither clash as "different extractors" nor become the model's extractor;
    provenance still hashes them."""
    import json

    data, ids, other = viewed_data
    second = write_view(tmp_path / "corner_ims.npy", ids, other[::-1].copy())
    for path, view in ((tmp_path / "flip_ims.npy", 9), (second, 0)):
        record = {"extractor": {"type": "efficientnet_lite0", "ten_crop": True, "view": view}, "dim": other.shape[1]}
        path.with_name(path.name[: -len("_ims.npy")] + "_extractor.json").write_text(json.dumps(record))
    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(data, data={"train_views": [str(tmp_path / "flip_ims.npy"), str(second)]}))
    run = Path(vsekit.train(spec, tmp_path / "v", quiet=True)["run_dir"])
    meta = json.loads((run / "best.json").read_text())
    assert "image_feature_extractor" not in meta
    hashed = json.loads((run / "provenance.json").read_text())["data_files"]
    assert any(name.endswith("flip_ims.npy") for name in hashed) and any(n.endswith("corner_ims.npy") for n in hashed)
