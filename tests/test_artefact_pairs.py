"""Two-file artefacts (issue 16): a bank (``NAME.json`` + ``NAME.safetensors``), a feature file (``X.npy`` +
``X_ids.txt`` + ``X_extractor.json``) and a checkpoint are committed as one change and checked on every load.

An interrupted save is simulated by raising between the writes (monkeypatch); a tampered pair is made by
copying another pair's data file over one's own. Expected texts and rows come from what the test wrote, never
from the code under test.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
from bad_input_harness import assert_refused, invoke, snapshot
from conftest import tiny_spec_text

import vsekit.io
from vsekit import checkpoint
from vsekit.data.vocab import Vocab
from vsekit.errors import CheckpointError, DataError
from vsekit.image import cache
from vsekit.image.base import Extracted, ImageFeatureExtractor
from vsekit.model import JointModel
from vsekit.retrieval import CaptionBank, Retriever, load_bank
from vsekit.retrieval import banks as banks_mod
from vsekit.spec import load as load_spec

WORDS = ["a", "dog", "runs", "cat", "sleeps", "on", "the", "grass", "red", "ball", "man", "rides", "bike"]
OLD_CAPTIONS = ["a dog runs on the grass", "a cat sleeps", "a red ball"]
NEW_CAPTIONS = ["a man rides a bike", "the bike is red"]


def unit_rows(n: int, dim: int, seed: int) -> torch.Tensor:
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32))
    return x / x.norm(dim=1, keepdim=True)


def dies(*args, **kwargs):
    raise KeyboardInterrupt  # the process stops here


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, small_data) -> Path:
    """An untrained 32-d checkpoint ``best.json`` (built from the tiny spec, saved with checkpoint.save)."""
    root = tmp_path_factory.mktemp("pairs")
    (root / "spec.toml").write_text(tiny_spec_text(small_data), encoding="utf-8")
    s = load_spec(root / "spec.toml")
    torch.manual_seed(0)
    dim_image = int(np.load(small_data / "test_ims.npy").shape[1])
    model = JointModel.build(s.model.sentence_encoder, s.model.image_encoder, Vocab(WORDS), 32, dim_image)
    checkpoint.save(root / "m", "best", model, s.to_dict())
    return root / "m"


@pytest.fixture
def model(tmp_path, model_dir) -> Path:
    """A copy of the checkpoint folder with ``best.captions.csv`` (OLD_CAPTIONS) beside it; returns best.json."""
    folder = shutil.copytree(model_dir, tmp_path / "m")
    write_csv(folder / "best.captions.csv", OLD_CAPTIONS)
    return folder / "best.json"


def write_csv(path: Path, captions: list[str]) -> None:
    path.write_text("image,caption\n" + "".join(f"{i}.jpg,{c}\n" for i, c in enumerate(captions)), encoding="utf-8")


def feature_row(model_json: Path) -> np.ndarray:
    return np.ones(json.loads(model_json.read_text())["dim_image"], np.float32)


# --------------------------------------------------------------------------- banks: save and load


def test_a_bank_save_stopped_between_its_two_writes_leaves_the_old_pair(tmp_path, monkeypatch):
    old = CaptionBank(unit_rows(3, 4, 0), ["a", "b", "c"])
    old.save(tmp_path / "b")
    new = CaptionBank(unit_rows(3, 4, 1), ["x", "y", "z"])
    monkeypatch.setattr(vsekit.io, "atomic_write_text", dies)  # the JSON, written after the embeddings
    monkeypatch.setattr(banks_mod, "atomic_write_text", dies, raising=False)  # (where 0.1 looked it up)
    with pytest.raises(KeyboardInterrupt):
        new.save(tmp_path / "b")
    monkeypatch.undo()
    back = load_bank(tmp_path / "b")
    assert back.texts == ["a", "b", "c"] and torch.equal(back.embeddings, unit_rows(3, 4, 0))


def test_a_bank_save_stopped_after_its_json_loads_the_new_pair_and_the_next_save_completes(tmp_path, monkeypatch):
    CaptionBank(unit_rows(3, 4, 0), ["a", "b", "c"]).save(tmp_path / "b")
    replace = vsekit.io.os.replace
    monkeypatch.setattr(vsekit.io.os, "replace",
                        lambda src, dst: dies() if str(src).endswith(".pending") else replace(src, dst))
    with pytest.raises(KeyboardInterrupt):
        CaptionBank(unit_rows(3, 4, 1), ["x", "y", "z"]).save(tmp_path / "b")
    monkeypatch.undo()
    back = load_bank(tmp_path / "b")
    assert back.texts == ["x", "y", "z"] and torch.equal(back.embeddings, unit_rows(3, 4, 1))
    CaptionBank(unit_rows(2, 4, 2), ["p", "q"]).save(tmp_path / "b")
    back = load_bank(tmp_path / "b")
    assert back.texts == ["p", "q"] and torch.equal(back.embeddings, unit_rows(2, 4, 2))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["b.json", "b.safetensors"]


def test_a_bank_with_another_banks_embeddings_is_refused_naming_both_files(tmp_path):
    CaptionBank(unit_rows(3, 4, 0), ["a", "b", "c"]).save(tmp_path / "b")
    CaptionBank(unit_rows(3, 4, 1), ["x", "y", "z"]).save(tmp_path / "c")
    shutil.copy(tmp_path / "c.safetensors", tmp_path / "b.safetensors")
    with pytest.raises(DataError, match="checksum mismatch") as exc:
        load_bank(tmp_path / "b")
    assert str(tmp_path / "b.safetensors") in str(exc.value) and str(tmp_path / "b.json") in str(exc.value)


def test_a_tampered_checksum_is_refused(tmp_path):
    CaptionBank(unit_rows(3, 4, 0), ["a", "b", "c"]).save(tmp_path / "b")
    meta = json.loads((tmp_path / "b.json").read_text())
    (tmp_path / "b.json").write_text(json.dumps({**meta, "weights_sha256": "0" * 64}))
    with pytest.raises(DataError, match="checksum mismatch"):
        load_bank(tmp_path / "b")


@pytest.mark.parametrize("name", ["../x.safetensors", "/tmp/x.safetensors", "..", "sub/b.safetensors", 7])
def test_a_weights_name_that_is_not_a_bare_file_name_is_refused(tmp_path, name):
    (tmp_path / "in").mkdir()
    CaptionBank(unit_rows(3, 4, 0), ["a", "b", "c"]).save(tmp_path / "in" / "b")
    shutil.copy(tmp_path / "in" / "b.safetensors", tmp_path / "x.safetensors")
    meta = json.loads((tmp_path / "in" / "b.json").read_text())
    (tmp_path / "in" / "b.json").write_text(json.dumps({**meta, "weights": name}))
    with pytest.raises(DataError, match="'weights' must be a file name in the same folder") as exc:
        load_bank(tmp_path / "in" / "b")
    assert len(str(exc.value).splitlines()) == 1


def test_the_cli_refuses_a_user_bank_pair_that_disagrees(tmp_path, model):
    CaptionBank(unit_rows(3, 32, 0), ["a", "b", "c"]).save(tmp_path / "b")
    CaptionBank(unit_rows(3, 32, 1), ["x", "y", "z"]).save(tmp_path / "c")
    shutil.copy(tmp_path / "c.safetensors", tmp_path / "b.safetensors")
    np.save(tmp_path / "q.npy", feature_row(model)[None])
    before = snapshot(tmp_path)
    r = invoke(["retrieve", str(model), "--features", str(tmp_path / "q.npy"), "--bank", str(tmp_path / "b")],
               tmp_path)
    assert_refused(r, [tmp_path / "b.safetensors", tmp_path / "b.json", "checksum mismatch"])
    assert snapshot(tmp_path) == before  # a user's bank is refused, never rebuilt


# --------------------------------------------------------------------------- default banks: rebuilt, not broken


def caption_texts(model: Path) -> set[str]:
    hits = Retriever.load(model).captions_for_image(feature_row(model), k=10)
    return {h.text for h in hits}


def rebuild_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]


def test_a_caption_bank_is_rebuilt_with_one_line_when_its_captions_file_is_replaced(model, caplog):
    assert caption_texts(model) == set(OLD_CAPTIONS)
    write_csv(model.with_name("best.captions.csv"), NEW_CAPTIONS)
    with caplog.at_level(logging.INFO):
        assert caption_texts(model) == set(NEW_CAPTIONS)
    lines = rebuild_lines(caplog)
    assert len(lines) == 1 and "best.captions.csv changed" in lines[0], lines
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert caption_texts(model) == set(NEW_CAPTIONS)
    assert rebuild_lines(caplog) == []  # the rebuilt bank is used as it is


@pytest.mark.parametrize("spoil", ["swap", "weights_outside", "truncate"])
def test_a_broken_default_bank_is_rebuilt_with_one_line(model, tmp_path, caplog, spoil):
    assert caption_texts(model) == set(OLD_CAPTIONS)
    bank_json = model.with_name("best.captions_bank.json")
    weights = bank_json.with_suffix(".safetensors")
    outside = tmp_path / "x.safetensors"
    outside.write_bytes(b"not mine")
    if spoil == "swap":
        CaptionBank(unit_rows(3, 32, 1), ["x", "y", "z"]).save(tmp_path / "other")
        shutil.copy(tmp_path / "other.safetensors", weights)
    elif spoil == "weights_outside":
        meta = json.loads(bank_json.read_text())
        bank_json.write_text(json.dumps({**meta, "weights": "../x.safetensors"}))
    else:
        weights.write_bytes(weights.read_bytes()[:-16])
    with caplog.at_level(logging.INFO):
        assert caption_texts(model) == set(OLD_CAPTIONS)
    assert len(rebuild_lines(caplog)) == 1, rebuild_lines(caplog)
    assert outside.read_bytes() == b"not mine"
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert caption_texts(model) == set(OLD_CAPTIONS)
    assert rebuild_lines(caplog) == []


# --------------------------------------------------------------------------- checkpoints


def test_a_checkpoint_naming_weights_outside_its_folder_is_refused(tmp_path, model_dir):
    folder = shutil.copytree(model_dir, tmp_path / "m")
    meta = json.loads((folder / "best.json").read_text())
    (folder / "best.json").write_text(json.dumps({**meta, "weights": ".."}))
    with pytest.raises(CheckpointError, match="'weights' must be a file name in the same folder"):
        checkpoint.load(folder / "best.json")


# --------------------------------------------------------------------------- feature files


class Hist(ImageFeatureExtractor):
    """4-d byte histograms of the files (no pixels needed)."""

    @attrs.frozen
    class Config:
        bins: int = 4

    @property
    def dim(self) -> int:
        return self.config.bins

    def extract(self, paths) -> Extracted:
        rows = [hist(Path(p).read_bytes(), self.config.bins) for p in paths]
        return Extracted(np.array(rows, np.float32), np.ones(len(rows), bool), {}, [])


def hist(data: bytes, bins: int) -> np.ndarray:
    return np.bincount(np.frombuffer(data, np.uint8) % bins, minlength=bins).astype(np.float32)


def image_files(folder: Path, *names: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(f"pixels of {n} ".encode() * (3 + len(n)))
    return [folder / n for n in names]


def extract(paths: list[Path], out: Path) -> cache.ExtractReport:
    return cache.update(Hist(Hist.Config()), paths, out, spec={"type": "hist", "bins": 4}, progress=False)[1]


def expected_rows(paths: list[Path]) -> np.ndarray:
    return np.array([hist(p.read_bytes(), 4) for p in paths], np.float32)


def test_a_feature_commit_stopped_before_its_record_leaves_the_old_rows_and_ids(tmp_path, monkeypatch):
    first = image_files(tmp_path / "imgs", "a.jpg", "b.jpg")
    out = tmp_path / "f.npy"
    extract(first, out)
    more = image_files(tmp_path / "imgs", "c.jpg")
    monkeypatch.setattr(vsekit.io, "atomic_write_text", dies)  # rows and ids written, the record not
    monkeypatch.setattr(cache, "atomic_write_text", dies, raising=False)
    with pytest.raises(KeyboardInterrupt):
        extract(first + more, out)
    monkeypatch.undo()
    got = cache.FeatureFile.read(out)
    assert got.ids == ["a.jpg", "b.jpg"]
    np.testing.assert_array_equal(got.features, expected_rows(first))
    assert extract(first + more, out).added == 1
    np.testing.assert_array_equal(np.load(out), expected_rows(first + more))


def test_rows_that_are_not_the_ones_the_record_names_are_extracted_again_with_one_line(tmp_path, caplog):
    paths = image_files(tmp_path / "imgs", "a.jpg", "b.jpg", "c.jpg")
    out = tmp_path / "f.npy"
    extract(paths, out)
    np.save(out, np.load(out)[::-1].copy())  # rows in another order: each id would get another image's row
    with caplog.at_level(logging.WARNING):
        report = extract(paths, out)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "extracting its images again" in lines[0], lines
    assert report.added == 3
    got = cache.FeatureFile.read(out)
    assert got.ids == ["a.jpg", "b.jpg", "c.jpg"]
    np.testing.assert_array_equal(got.features, expected_rows(paths))


# --------------------------------------------------------------------------- the faiss plugin's index pair


def test_a_faiss_index_with_another_index_file_is_refused(tmp_path):
    pytest.importorskip("faiss")
    vsekit_faiss = pytest.importorskip("vsekit_faiss")
    a = vsekit_faiss.save(vsekit_faiss.build_index(unit_rows(50, 8, 0).numpy(), "flat"), tmp_path / "a.flat.faiss")
    b = vsekit_faiss.save(vsekit_faiss.build_index(unit_rows(50, 8, 1).numpy(), "flat"), tmp_path / "b.flat.faiss")
    assert len(vsekit_faiss.load(a)) == 50
    shutil.copy(b, a)  # same count and dim: only the checksum tells them apart
    with pytest.raises(DataError, match="checksum mismatch") as exc:
        vsekit_faiss.load(a)
    assert str(a) in str(exc.value) and f"{a}.json" in str(exc.value)
