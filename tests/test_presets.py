"""Dataset presets (f8k, f30k, coco under a data root) and evalrank on them."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import vsekit
from vsekit import spec as spec_mod
from vsekit.data.presets import ENV_ROOT, resolve_preset
from vsekit.data.readers import PrecompReader
from vsekit.data.vocab import Vocab
from vsekit.errors import DataError
from vsekit.metrics import recall

DIM_IMAGE = 6
WORDS = ["a", "dog", "cat", "runs", "sits", "on", "grass", "red", "ball", "man"]


def fabricate(root: Path, name: str, n_images: dict[str, int], layout: str, seed: int = 0) -> Path:
    """``root/name/name_SPLIT_{caps.txt,ims.npy}`` with 5 captions per image, in the given layout."""
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True)
    for split, n in n_images.items():
        ims = rng.normal(size=(n, DIM_IMAGE)).astype(np.float32)
        ims /= np.linalg.norm(ims, axis=1, keepdims=True)
        caps = [" ".join(rng.choice(WORDS, size=rng.integers(2, 6))) for _ in range(5 * n)]
        (folder / f"{name}_{split}_caps.txt").write_text("\n".join(caps) + "\n")
        rows = np.repeat(ims, 5, axis=0) if layout == "row-per-caption" else ims
        np.save(folder / f"{name}_{split}_ims.npy", rows)
    return folder


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    fabricate(root, "f8k", {"train": 4, "dev": 4, "test": 10}, "row-per-caption", seed=1)
    fabricate(root, "f30k", {"train": 4, "dev": 4, "test": 10}, "row-per-image", seed=1)  # same numbers
    fabricate(root, "coco", {"train": 4, "dev": 4, "test": 50}, "row-per-caption", seed=2)
    monkeypatch.setenv(ENV_ROOT, str(root))
    return root


def small_model(encoder: str = "gru") -> vsekit.JointModel:
    torch.manual_seed(0)
    senc = spec_mod.build_component("sentence_encoder", {"type": encoder, "dim_word": 8}, "s", Path("."))
    ienc = spec_mod.build_component("image_encoder", {"type": "linear"}, "i", Path("."))
    return vsekit.JointModel.build(senc, ienc, Vocab(["<eos>", "<unk>", *WORDS]), 8, DIM_IMAGE)


def test_resolve_preset(data_root, tmp_path, monkeypatch):
    reader = resolve_preset("f8k")
    assert isinstance(reader, PrecompReader)
    assert reader.config.name == "f8k" and Path(reader.config.dir) == (data_root / "f8k").resolve()
    assert reader.paths("test")[0].name == "f8k_test_caps.txt"
    assert resolve_preset("my_spec.toml") is None and resolve_preset("F8K") is None
    # an explicit root wins over the environment
    other = tmp_path / "other"
    fabricate(other, "coco", {"test": 5}, "row-per-image")
    assert Path(resolve_preset("coco", root=other).config.dir) == (other / "coco").resolve()
    with pytest.raises(DataError, match=r"'f30k': no such folder"):
        resolve_preset("f30k", root=other)
    monkeypatch.delenv(ENV_ROOT)
    with pytest.raises(DataError, match=f"no data root.*{ENV_ROOT}"):
        resolve_preset("f8k")


def test_both_layouts_read_alike(data_root):
    a, b = resolve_preset("f8k").read("test"), resolve_preset("f30k").read("test")
    assert a.report["layout"] == "row-per-caption" and b.report["layout"] == "row-per-image"
    np.testing.assert_array_equal(a.images, b.images)
    assert a.captions == b.captions and a.n_images == 10 and len(a.captions) == 50
    np.testing.assert_array_equal(a.cap2img, np.arange(50) // 5)


def test_other_caption_to_row_ratios_are_refused(data_root):
    folder = data_root / "f8k"
    np.save(folder / "f8k_dev_ims.npy", np.ones((7, DIM_IMAGE), dtype=np.float32))  # 20 captions, 7 rows
    with pytest.raises(DataError, match=r"20 captions.*7 feature rows"):
        resolve_preset("f8k").read("dev")
    rows = np.random.default_rng(0).normal(size=(20, DIM_IMAGE)).astype(np.float32)  # one row per caption,
    np.save(folder / "f8k_dev_ims.npy", rows)  # but the 5 rows of an image differ
    with pytest.raises(DataError, match="not copies of one image row"):
        resolve_preset("f8k").read("dev")


def test_evalrank_on_a_preset_prints_the_reference_lines(data_root, capsys):
    model = small_model()
    metrics = vsekit.evalrank(model, data="f8k", split="test", verbose=False)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    num = r"\d+\.\d"
    assert re.fullmatch(rf"Image to text: {num}, {num}, {num}, {num}", lines[0])
    assert re.fullmatch(rf"Text to image: {num}, {num}, {num}, {num}", lines[1])
    assert lines[0] == "Image to text: {:.1f}, {:.1f}, {:.1f}, {:.1f}".format(
        *(metrics[k] for k in ("i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr")))
    assert lines[1] == "Text to image: {:.1f}, {:.1f}, {:.1f}, {:.1f}".format(
        *(metrics[k] for k in ("t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr")))
    same = vsekit.evalrank(model, data="f30k", split="test", verbose=False, print_table=False)
    assert same == metrics  # the same numbers in the other layout
    with pytest.raises(DataError, match="unknown split"):
        vsekit.evalrank(model, data="f8k", split="val", verbose=False)


def test_coco_5_fold(data_root):
    model = small_model("bow")
    split = resolve_preset("coco").read("test")
    assert split.n_images == 50  # 5 folds of 10 images, the smallest fold vsekit accepts
    got = vsekit.evalrank(model, data="coco", split="test", folds=5, verbose=False, print_table=False)
    ims, caps = vsekit.encode_images(model, split.images), vsekit.encode_sentences(model, split.captions)
    per_fold = [recall(ims[10 * f:10 * f + 10], caps[50 * f:50 * f + 50], split.cap2img[50 * f:50 * f + 50] - 10 * f)
                for f in range(5)]
    assert len(got["folds"]) == 5
    for key in ("i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "rsum"):
        assert got[key] == pytest.approx(np.mean([f[key] for f in per_fold]))
    whole = vsekit.evalrank(model, data="coco", split="test", verbose=False, print_table=False)
    assert "folds" not in whole


def test_an_imported_reference_model_finds_its_preset(data_root, tmp_path, capsys):
    rng = np.random.default_rng(0)
    worddict = {"<eos>": 0, "UNK": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    n = len(worddict)
    params = {"Wemb": rng.normal(size=(n, 4)).astype(np.float32),
              "ff_image_W": rng.normal(size=(DIM_IMAGE, 4)).astype(np.float32), "ff_image_b": np.zeros(4, np.float32)}
    np.savez(tmp_path / "f8k_bow.npz", **params)
    options = {"data": "f8k", "encoder": "bow", "dim": 4, "dim_word": 4, "dim_image": DIM_IMAGE, "n_words": n}
    (tmp_path / "f8k_bow.npz.pkl").write_bytes(pickle.dumps(options, protocol=2))
    (tmp_path / "f8k_bow.npz.dictionary.pkl").write_bytes(pickle.dumps(worddict, protocol=2))
    by_path = vsekit.evalrank(str(tmp_path / "f8k_bow.npz"), data="f8k", verbose=False)
    by_spec = vsekit.evalrank(vsekit.load_model(tmp_path / "f8k_bow.npz"), verbose=False)  # data from its options
    assert by_path == by_spec
    assert capsys.readouterr().out.count("Image to text:") == 2
