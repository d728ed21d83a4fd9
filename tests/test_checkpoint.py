"""Checkpoints: safetensors + JSON round trip, corruption detection, no pickle."""

from __future__ import annotations

import json
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_spec_text

import vsekit
from vsekit import checkpoint
from vsekit.errors import CheckpointError
from vsekit.evaluate import evaluate_split
from vsekit.io import sha256_file
from vsekit.model import encode_images, encode_sentences
from vsekit.spec import load as load_spec

SENTENCES = ["a dog runs on the beach", "two children play in the snow .", "zebra unknownword"]


def build_model(tmp_path: Path, data_dir: Path, **sections):
    path = tmp_path / "spec.toml"
    path.write_text(tiny_spec_text(data_dir, **sections))
    s = load_spec(path)
    from vsekit.data.vocab import Vocab
    from vsekit.model import JointModel

    torch.manual_seed(1)
    vocab = Vocab.build([c.split() for c in SENTENCES])
    model = JointModel.build(s.model.sentence_encoder, s.model.image_encoder, vocab, s.model.dim, 20)
    return model.eval(), s


@pytest.fixture
def saved(tmp_path, small_data):
    model, s = build_model(tmp_path, small_data)
    folder = tmp_path / "ckpt"
    meta_path = checkpoint.save(folder, "best", model, s.to_dict(), step=7, epoch=1.5, metrics={"rsum": 12.5},
                                extra_tensors={"loss.log_scale": torch.tensor(2.0)})
    return model, meta_path


FEATS = np.random.default_rng(0).standard_normal((5, 20)).astype(np.float32)


@pytest.mark.parametrize("encoder", [{"type": "gru", "dim_word": 16, "bidirectional": True},
                                     {"type": "bow", "dim_word": 32}])
def test_round_trip_identical_embeddings(tmp_path, small_data, encoder):
    model, s = build_model(tmp_path, small_data, model__sentence_encoder=encoder)
    if encoder["type"] == "bow":
        assert s.model.sentence_encoder.type == "bow"
    meta_path = checkpoint.save(tmp_path / "c", "m", model, s.to_dict(), step=3)
    assert meta_path == tmp_path / "c" / "m.json" and (tmp_path / "c" / "m.safetensors").is_file()
    loaded, meta, rest = checkpoint.load(meta_path)
    assert not loaded.training
    assert loaded.vocab == model.vocab and loaded.dim == model.dim and loaded.dim_image == 20
    np.testing.assert_array_equal(encode_sentences(loaded, SENTENCES), encode_sentences(model, SENTENCES))
    np.testing.assert_array_equal(encode_images(loaded, FEATS), encode_images(model, FEATS))
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert meta["step"] == 3 and rest == {}


def test_meta_and_extra_tensors(saved):
    model, meta_path = saved
    loaded, meta, rest = checkpoint.load(meta_path)
    assert meta["format"] == checkpoint.FORMAT and meta["vsekit_version"] == vsekit.__version__
    assert meta["step"] == 7 and meta["epoch"] == 1.5 and meta["metrics"] == {"rsum": 12.5}
    assert meta["vocab"] == model.vocab.words
    assert meta["weights_sha256"] == sha256_file(meta_path.with_suffix(".safetensors"))
    assert set(rest) == {"loss.log_scale"} and rest["loss.log_scale"].item() == 2.0
    assert loaded.spec == meta["spec"]


def test_find_accepts_folder_json_safetensors_and_stem(saved):
    _, meta_path = saved
    folder = meta_path.parent
    for p in (folder, meta_path, meta_path.with_suffix(".safetensors"), folder / "best"):
        assert checkpoint.find(p) == meta_path
    with pytest.raises(CheckpointError, match="no vsekit checkpoint here"):
        checkpoint.find(folder / "other")


def test_flipped_byte_is_a_checksum_mismatch(saved):
    _, meta_path = saved
    weights = meta_path.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0x01  # inside the tensor data: still a readable safetensors file
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch") as info:
        checkpoint.load(meta_path)
    assert str(weights) in str(info.value)


def test_truncated_safetensors(saved):
    _, meta_path = saved
    weights = meta_path.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        checkpoint.load(meta_path)
    # even with a matching checksum, the reader refuses it cleanly
    meta = json.loads(meta_path.read_text())
    meta["weights_sha256"] = sha256_file(weights)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="cannot read safetensors") as info:
        checkpoint.load(meta_path)
    assert str(weights) in str(info.value)


def test_missing_weights_file(saved):
    _, meta_path = saved
    meta_path.with_suffix(".safetensors").unlink()
    with pytest.raises(CheckpointError, match="weights file missing"):
        checkpoint.load(meta_path)


@pytest.mark.parametrize("key", checkpoint.REQUIRED[1:])
def test_json_missing_keys(saved, key):
    _, meta_path = saved
    meta = json.loads(meta_path.read_text())
    del meta[key]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"missing key\\(s\\) {key}") as info:
        checkpoint.load(meta_path)
    assert str(meta_path) in str(info.value)


def test_json_not_json_or_not_ours(saved):
    _, meta_path = saved
    meta_path.write_text("{broken")
    with pytest.raises(CheckpointError, match="not a readable JSON checkpoint"):
        checkpoint.load(meta_path)
    meta_path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a vsekit checkpoint"):
        checkpoint.load(meta_path)


def test_weights_that_do_not_fit_the_model(saved):
    _, meta_path = saved
    meta = json.loads(meta_path.read_text())
    meta["dim"] = 64  # the stored tensors are 32-d
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit"):
        checkpoint.load(meta_path)


def test_no_pickle_used(tmp_path, small_data, monkeypatch):
    model, s = build_model(tmp_path, small_data)

    def refuse(*a, **k):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "dump", "dumps"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(pickle, "Pickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch, "save", refuse)
    meta_path = checkpoint.save(tmp_path / "c", "m", model, s.to_dict())
    loaded, _, _ = checkpoint.load(meta_path)
    np.testing.assert_array_equal(encode_images(loaded, FEATS), encode_images(model, FEATS))
    # the weights file is a safetensors file: 8-byte little-endian header size, then a JSON header
    raw = (tmp_path / "c" / "m.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    assert set(header) - {"__metadata__"} == set(model.state_dict())
    assert b"\x80\x04" not in raw[:2] and not raw.startswith(b"PK")  # not a pickle, not a torch zip


def test_run_folder_best_checkpoint_reproduces_test_metrics(trained_run, small_data):
    results = json.loads((trained_run / "results.json").read_text())
    model = vsekit.load_model(trained_run)
    from vsekit.data.readers import PrecompReader

    split = PrecompReader(PrecompReader.Config(dir=str(small_data))).read("test")
    m = evaluate_split(model, split)
    for k in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"):
        assert m[k] == pytest.approx(results["test"][k], abs=1e-9), k


def test_checkpoint_moved_with_its_folder(trained_run, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(trained_run, moved)
    a = vsekit.load_model(trained_run)
    b = vsekit.load_model(moved / "best.safetensors")
    np.testing.assert_array_equal(encode_sentences(a, SENTENCES), encode_sentences(b, SENTENCES))
