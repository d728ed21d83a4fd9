"""The short Python API: ``vsekit.load_model`` (run folders, checkpoints, installed names) returning the one model
type, whose ``encode_sentences`` / ``encode_images`` / ``similarity`` agree with every other path; the device
default."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from bad_input_harness import invoke
from PIL import Image

import vsekit
from vsekit import registry, testing
from vsekit.errors import CheckpointError, DataError, VsekitError
from vsekit.model import JointModel
from vsekit.retrieval import Retriever, build_caption_bank, encode_file
from vsekit.spec.sections import TrainSpec

CAPTIONS = ["a dog runs on the grass", "Two men play chess in the park .", "a", "",
            "a very long caption " + "about a child on a red bicycle " * 12]
EXTRACTOR = "efficientnet_lite0"


def test_the_same_caption_gives_the_same_embedding_on_every_path(trained_run, tmp_path):
    model = vsekit.load_model(trained_run)
    assert type(model) is JointModel
    rows = model.encode_sentences(CAPTIONS)
    assert rows.shape == (len(CAPTIONS), model.dim) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows[:3], axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(rows, vsekit.encode_sentences(model, CAPTIONS))
    one_by_one = np.stack([model.encode_sentences([c])[0] for c in CAPTIONS])
    bank = build_caption_bank(model, CAPTIONS, dtype="float32").embeddings.numpy()
    retriever = Retriever(model)
    queries = np.stack([retriever.embed_text(c) for c in CAPTIONS if c.strip()])
    captions = tmp_path / "caps.txt"
    captions.write_text("".join(c + "\n" for c in CAPTIONS if c), encoding="utf-8")
    encode_file(trained_run, captions=captions, output=tmp_path / "caps.npy")
    written = np.load(tmp_path / "caps.npy")
    for other in (one_by_one, bank):
        np.testing.assert_allclose(other, rows, atol=1e-6)
    np.testing.assert_allclose(queries, rows[[i for i, c in enumerate(CAPTIONS) if c.strip()]], atol=1e-6)
    np.testing.assert_allclose(written, rows[[i for i, c in enumerate(CAPTIONS) if c]], atol=1e-6)
    assert not np.allclose(rows[0], rows[1])  # the captions differ, so must their rows


def test_similarity_is_the_cosine_matrix():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 8)) * 5, rng.normal(size=(4, 8))
    expected = np.array([[x @ y / np.sqrt((x @ x) * (y @ y)) for y in b] for x in a])
    got = JointModel.similarity(a, b)
    assert got.shape == (3, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(JointModel.similarity(torch.as_tensor(a), b), expected, atol=1e-6)
    with pytest.raises(DataError, match=r"\(3, 8\) and \(4, 7\)"):
        JointModel.similarity(a, b[:, :7])


def _extractor_or_skip() -> None:
    if EXTRACTOR not in registry.registry("image_feature_extractor").names():
        testing.missing_test_input(f"the image feature extractor {EXTRACTOR!r} (pip install -e "
                                   f"plugins/vsekit-efficientnet)")


def _photo(seed: int, size: tuple[int, int] = (300, 200)) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(size[1] // 20, size[0] // 20, 3), dtype=np.uint8)
    return Image.fromarray(base).resize(size, Image.Resampling.BILINEAR)  # smooth: survives JPEG


def test_encode_images_takes_files_pil_images_and_feature_rows(trained_run, tmp_path):
    _extractor_or_skip()
    model = vsekit.load_model(trained_run)
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for i, p in enumerate(paths):
        _photo(i).save(p)
    from_files = model.encode_images(paths, extractor=EXTRACTOR)
    assert from_files.shape == (2, model.dim) and from_files.dtype == np.float32
    with Image.open(paths[1]) as im:
        mixed = model.encode_images([str(paths[0]), im], extractor=EXTRACTOR)
    np.testing.assert_array_equal(mixed, from_files)
    feats = registry.get("image_feature_extractor", EXTRACTOR)(
        testing.make_config(registry.get("image_feature_extractor", EXTRACTOR), {"progress": False})
    ).extract(paths).features
    np.testing.assert_allclose(model.encode_images(feats), from_files, atol=1e-6)
    np.testing.assert_allclose(vsekit.encode_images(model, feats), from_files, atol=1e-6)
    assert not np.allclose(from_files[0], from_files[1])


def test_an_exif_rotated_photo_is_embedded_upright(trained_run, tmp_path):
    _extractor_or_skip()
    model = vsekit.load_model(trained_run)
    stored = _photo(3)  # 300 x 200 as stored; orientation 6: shown rotated 90 degrees clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    with Image.open(tmp_path / "phone.jpg") as im:
        decoded = im.convert("RGB")
        rotated = im.copy()
    decoded.transpose(Image.Transpose.ROTATE_270).save(tmp_path / "upright.png")
    decoded.save(tmp_path / "sideways.png")
    got = model.encode_images([tmp_path / "phone.jpg", rotated, tmp_path / "upright.png", tmp_path / "sideways.png"],
                              extractor=EXTRACTOR)
    np.testing.assert_allclose(got[0], got[2], atol=1e-5)   # the file: upright
    np.testing.assert_allclose(got[1], got[2], atol=1e-5)   # the opened PIL image: upright too
    assert not np.allclose(got[0], got[3], atol=1e-3)       # and not as stored


def test_encode_images_refuses_what_it_cannot_read(trained_run, tmp_path):
    model = vsekit.load_model(trained_run)
    with pytest.raises(DataError, match=r"one str; pass \[image\]"):
        model.encode_images("photo.jpg")
    with pytest.raises(DataError, match=r"images\[1\]: expected an image file path, its bytes or a PIL image, got int"):
        model.encode_images(["photo.jpg", 3])
    with pytest.raises(DataError, match="expected shape"):
        model.encode_images(np.zeros((2, model.dim_image + 1), np.float32))
    assert model.encode_images([]).shape == (0, model.dim)
    _photo(0).save(tmp_path / "a.png")
    with pytest.raises(VsekitError, match=r"records no image feature extractor.*extractor=NAME"):
        model.encode_images([tmp_path / "a.png"])  # trained on precomputed features: which CNN is unknown
    with pytest.raises(DataError, match="pass"):
        model.encode_sentences("a dog")


def test_load_model_takes_an_installed_name(trained_run):
    from vsekit.retrieval.models import installed_models

    with pytest.raises(CheckpointError, match="no vsekit checkpoint here"):
        vsekit.load_model(trained_run.parent / "no-such-run")
    if "f8k" not in installed_models():
        testing.missing_test_input("the installed model f8k (pip install -e plugins/vsekit-f8k)")
    model = vsekit.load_model("f8k")
    assert type(model) is JointModel
    assert model.image_feature_extractor == {"type": EXTRACTOR}
    assert (model.spec_base / "model.json").is_file()
    rows = model.encode_sentences(["a dog runs on the grass"])
    np.testing.assert_array_equal(rows, Retriever.load("f8k").embed_text("a dog runs on the grass")[None])


def test_train_device_defaults_to_auto_and_results_record_the_device(trained_run):
    assert TrainSpec().device == "auto"
    results = json.loads((trained_run / "results.json").read_text(encoding="utf-8"))
    assert results["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


def test_the_first_caption_bank_build_shows_progress_unless_quiet(trained_run, tmp_path):
    feats = tmp_path / "q.npy"  # a feature-row query searches the default caption bank (the training captions)
    np.save(feats, np.random.default_rng(0).normal(size=(1, vsekit.load_model(trained_run).dim_image)).astype("f4"))
    outputs = {}
    for quiet in (False, True):
        run = tmp_path / f"run{int(quiet)}"
        shutil.copytree(trained_run, run)  # the default bank is saved beside the model
        result = invoke(["retrieve", str(run), "--features", str(feats), "-k", "2", *(["-q"] if quiet else [])],
                        tmp_path)
        assert result.exit_code == 0, result.output
        outputs[quiet] = result
    assert "encode captions" in outputs[False].stderr and "caption" in outputs[False].stderr
    assert "encode captions" not in outputs[True].stderr and "building the caption bank" not in outputs[True].stderr
    assert outputs[True].stdout.replace("run1", "run0") == outputs[False].stdout


def test_a_folder_named_like_an_installed_model_wins_and_says_so(trained_run, tmp_path, monkeypatch, caplog):
    from vsekit import retrieval

    if "f8k" not in retrieval.installed_models():
        testing.missing_test_input("the vsekit-f8k plugin is not installed")
    shutil.copytree(trained_run, tmp_path / "f8k")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("WARNING"):
        ref = retrieval.resolve_model("f8k")
    assert ref.path.resolve() == (tmp_path / "f8k" / "best.json").resolve()
    assert "both a path here" in caplog.text and "installed model" in caplog.text
    caplog.clear()
    assert retrieval.resolve_model("./f8k").path.resolve() == (tmp_path / "f8k" / "best.json").resolve()
    assert "both a path here" not in caplog.text
