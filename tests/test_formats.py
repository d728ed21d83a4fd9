"""The dataset formats: ``karpathy``, ``coco``, ``csv`` (and ``flickr8k`` as its preset), precomp, the
Karpathy JSON presets; every caption kept in file order; one ``error:`` line for bad input in each format."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from test_cli import assert_user_error, invoke

from vsekit import spec as spec_mod
from vsekit.data.karpathy import KarpathyReader
from vsekit.data.presets import ENV_ROOT, preset_table, resolve_preset
from vsekit.data.readers import PrecompReader
from vsekit.data.tokenize import tokenize
from vsekit.errors import DataError

SPLITS = {"train": 20, "dev": 5, "test": 5}
KARPATHY_NAME = {"train": "train", "dev": "val", "test": "test"}


# --------------------------------------------------------------------------- writers (one per format)


def write_karpathy(path: Path, images: list[dict]) -> Path:
    """``images``: ``{"name", "split" (vsekit's), "captions"}`` -> a Karpathy split JSON at ``path``."""
    doc = {"images": [{"filename": im["name"], "filepath": "", "imgid": i, "split": KARPATHY_NAME[im["split"]],
                       "sentences": [{"raw": c, "tokens": tokenize(c)} for c in im["captions"]]}
                      for i, im in enumerate(images)], "dataset": "flickr8k"}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def coco_doc(images: list[dict], first_id: int = 1000) -> dict:
    """A COCO captions document; image ids are ``first_id + index``; annotations interleaved across images
    (COCO files are not grouped by image), each image's captions in order."""
    ids = {im["name"]: first_id + i for i, im in enumerate(images)}
    anns = [{"id": len(images) * j + i, "image_id": ids[im["name"]], "caption": im["captions"][j]}
            for j in range(max(len(im["captions"]) for im in images)) for i, im in enumerate(images)
            if j < len(im["captions"])]
    return {"info": {}, "images": [{"id": ids[im["name"]], "file_name": im["name"], "width": 1, "height": 1}
                                   for im in images], "annotations": anns}


def write_csv(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return path


def write_lists(folder: Path, images: list[dict], key=lambda im: im["name"], suffix: str = ".txt") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        (folder / f"{split}{suffix}").write_text("".join(f"{key(im)}\n" for im in images if im["split"] == split))


def write_features(folder: Path, names: list[str], feats: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "all_ims.npy", feats)
    (folder / "all_ids.txt").write_text("".join(n + "\n" for n in names))
    return folder


def write_all_formats(root: Path, images: list[dict], feats: np.ndarray) -> dict[str, dict]:
    """The same images in every layout; returns ``{variant: [data] table}`` (features as precomputed)."""
    names = [im["name"] for im in images]
    features = {"type": "precomputed", "dir": str(write_features(root / "feats", names, feats))}
    tables: dict[str, dict] = {}
    f8k = root / "f8k"
    (f8k / "splits").mkdir(parents=True)
    write_csv(f8k / "captions.txt", [["image", "caption"]] + [[im["name"], c] for im in images for c in im["captions"]])
    write_lists(f8k / "splits", images)
    tables["flickr8k"] = {"type": "flickr8k", "root": str(f8k)}
    tables["karpathy"] = {"type": "karpathy", "json": str(write_karpathy(root / "dataset.json", images))}
    (root / "coco_one.json").write_text(json.dumps(coco_doc(images)))
    write_lists(root / "coco_ids", images, key=lambda im: 1000 + names.index(im["name"]), suffix="_ids.txt")
    tables["coco_one_file"] = {"type": "coco", "json": str(root / "coco_one.json"),
                               "splits": str(root / "coco_ids" / "{split}_ids.txt")}
    for split in SPLITS:
        part = [im for im in images if im["split"] == split]
        (root / f"captions_{split}.json").write_text(json.dumps(coco_doc(part, first_id=7 * len(split))))
    tables["coco_per_split"] = {"type": "coco", "json": str(root / "captions_{split}.json")}
    tsv = write_csv(root / "caps.tsv", [["sentence", "file"]] + [[c, im["name"]] for im in images
                                                                 for c in im["captions"]], "\t")
    write_lists(root / "lists", images)
    tables["csv_tab_lists"] = {"type": "csv", "path": str(tsv), "delimiter": "\t", "image_column": "file",
                               "caption_column": "sentence", "splits": str(root / "lists" / "{split}.txt")}
    col = write_csv(root / "caps_split.csv", [[im["split"].replace("dev", "val"), im["name"], c] for im in images
                                              for c in im["captions"]], ";")
    tables["csv_split_column"] = {"type": "csv", "path": str(col), "delimiter": ";", "header": False,
                                  "image_column": 1, "caption_column": 2, "split_column": 0}
    for split in SPLITS:
        part = [im for im in images if im["split"] == split]
        (root / "precomp").mkdir(exist_ok=True)
        (root / "precomp" / f"{split}_caps.txt").write_text("".join(c + "\n" for im in part for c in im["captions"]))
        np.save(root / "precomp" / f"{split}_ims.npy", feats[[names.index(im["name"]) for im in part]])
    out = {k: {**v, "features": features} for k, v in tables.items()}
    out["precomp"] = {"type": "precomp", "dir": str(root / "precomp")}
    return out


def read_all(table: dict, base: Path) -> dict:
    reader = spec_mod.build_component("dataset_reader", table, "data", base).build()
    return {s: reader.read(s) for s in SPLITS}


# --------------------------------------------------------------------------- the same 30 real Flickr8K images


@pytest.fixture(scope="module")
def real30(tmp_path_factory) -> tuple[Path, dict[str, dict], list[dict]]:
    """20 train / 5 dev / 5 test images of the real Flickr8K (the first of each split list), every layout."""
    from vsekit import testing

    shared = testing.shared_data("flickr8k/captions.txt", "flickr8k-effnet-lite0/test_ims.npy")
    caps: dict[str, list[str]] = {}
    with open(shared / "flickr8k" / "captions.txt", encoding="utf-8", newline="") as fh:
        for row in list(csv.reader(fh))[1:]:
            caps.setdefault(row[0], []).append(row[1])
    images, rows = [], []
    ref = shared / "flickr8k-effnet-lite0"
    for split, n in SPLITS.items():
        ids = (ref / f"{split}_ids.txt").read_text().split()[:n]
        listed = (shared / "flickr8k" / "splits" / f"{split}.txt").read_text().split()[:n]
        assert ids == listed  # the reference features are in split-list order
        rows.append(np.load(ref / f"{split}_ims.npy", mmap_mode="r")[:n])
        images += [{"name": name, "split": split, "captions": caps[name]} for name in ids]
    root = tmp_path_factory.mktemp("real30")
    return root, write_all_formats(root, images, np.concatenate(rows).astype(np.float32)), images


def test_every_format_reads_the_same_splits(real30):
    root, tables, images = real30
    assert {len(im["captions"]) for im in images} == {5}
    reads = {name: read_all(t, root) for name, t in tables.items()}
    for split, n in SPLITS.items():
        expected = [im for im in images if im["split"] == split]
        want_caps = [c for im in expected for c in im["captions"]]
        for name, got in reads.items():
            s = got[split]
            assert s.captions == want_caps, (name, split)
            np.testing.assert_array_equal(s.cap2img, np.repeat(np.arange(n), 5), err_msg=name)
            np.testing.assert_array_equal(s.images, reads["precomp"][split].images, err_msg=name)
            if name != "precomp":
                assert s.image_ids == [im["name"] for im in expected], (name, split)


def test_every_format_trains_to_bit_identical_weights(real30, tmp_path):
    """1 epoch of the tiny model from each layout: the same vocabulary and bit-identical weights."""
    from safetensors.numpy import load_file

    import vsekit

    _root, tables, _ = real30
    outcome = {}
    for name, table in tables.items():
        raw = {"name": "tiny", "data": table, "model": {"dim": 32, "sentence_encoder": {"type": "gru", "dim_word": 16}},
               "loss": {"type": "contrastive", "margin": 0.2},
               "train": {"max_epochs": 1, "batch_size": 16, "lr": 0.002, "seed": 0, "threads": 1}}
        run = Path(vsekit.train(raw, tmp_path / name, quiet=True)["run_dir"])
        outcome[name] = (json.loads((run / "vocab.json").read_text()), load_file(run / "best.safetensors"))
    vocab, weights = outcome.pop("flickr8k")
    assert len(vocab["words"]) > 50
    for name, (v, w) in outcome.items():
        assert v == vocab, name
        assert w.keys() == weights.keys()
        for k in w:
            assert np.array_equal(w[k], weights[k]), (name, k)


# --------------------------------------------------------------------------- captions per image vary


def varying(n_images: int = 6, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    """Images with 3, 4, 5, 6, 7, 3 ... captions (split train/dev/test by index mod 3), 4-d features."""
    images = [{"name": f"im{i}.jpg", "split": ("train", "dev", "test")[i % 3],
               "captions": [f"caption {j} of image {i}" for j in range(3 + i % 5)]} for i in range(n_images)]
    return images, np.random.default_rng(seed).standard_normal((n_images, 4)).astype(np.float32)


@pytest.mark.parametrize("variant", ["karpathy", "coco_one_file", "coco_per_split", "csv_tab_lists",
                                     "csv_split_column"])
def test_new_readers_keep_every_caption_in_file_order(tmp_path, variant):
    images, feats = varying(9)
    table = write_all_formats(tmp_path, images, feats)[variant]
    train = read_all(table, tmp_path)["train"]
    expected = [im for im in images if im["split"] == "train"]
    assert [len(im["captions"]) for im in expected] == [3, 6, 4]  # derived from varying(): 3 + i % 5, i = 0, 3, 6
    assert train.image_ids == ["im0.jpg", "im3.jpg", "im6.jpg"]
    assert train.captions == [c for im in expected for c in im["captions"]]
    assert train.cap2img.tolist() == [0] * 3 + [1] * 6 + [2] * 4
    np.testing.assert_array_equal(train.images, feats[[0, 3, 6]])
    assert "fewer_than_5_captions" not in train.report and train.report["images"] == 3


def test_caps_per_image_keeps_the_first_k(tmp_path, caplog):
    images, feats = varying(9)
    table = {**write_all_formats(tmp_path, images, feats)["karpathy"], "caps_per_image": 5}
    with caplog.at_level(logging.WARNING):
        train = read_all(table, tmp_path)["train"]
    # im0 (3 captions) and im6 (4) are left out; im3 (6) keeps its first 5
    assert train.image_ids == ["im3.jpg"] and train.captions == images[3]["captions"][:5]
    assert train.report["fewer_than_5_captions"] == ["im0.jpg", "im6.jpg"]
    assert train.report["more_than_5_captions_truncated"] == ["im3.jpg"]
    assert "fewer than 5 captions" in caplog.text


def test_flickr8k_keeps_its_default_of_five(tmp_path):
    images, feats = varying(9)
    table = write_all_formats(tmp_path, images, feats)["flickr8k"]
    assert read_all(table, tmp_path)["train"].image_ids == ["im3.jpg"]
    every = read_all({**table, "caps_per_image": None}, tmp_path)["train"]
    assert every.image_ids == ["im0.jpg", "im3.jpg", "im6.jpg"] and len(every.captions) == 13


def test_karpathy_restval(tmp_path):
    images, feats = varying(3)
    path = write_karpathy(tmp_path / "d.json", images)
    doc = json.loads(path.read_text())
    doc["images"].append({"filename": "extra.jpg", "split": "restval", "sentences": [{"raw": "an extra one"}]})
    path.write_text(json.dumps(doc))
    feats_dir = write_features(tmp_path / "f", [*(im["name"] for im in images), "extra.jpg"],
                               np.vstack([feats, np.ones((1, 4), np.float32)]))
    table = {"type": "karpathy", "json": str(path), "features": {"type": "precomputed", "dir": str(feats_dir)}}
    assert read_all(table, tmp_path)["train"].image_ids == ["im0.jpg", "extra.jpg"]
    assert read_all({**table, "restval": "skip"}, tmp_path)["train"].image_ids == ["im0.jpg"]
    assert read_all(table, tmp_path)["dev"].image_ids == ["im1.jpg"]  # "val" is vsekit's dev


# --------------------------------------------------------------------------- presets


def test_presets_find_the_karpathy_json(tmp_path, monkeypatch):
    images, feats = varying(6)
    root = tmp_path / "root"
    write_features(root / "f30k", [im["name"] for im in images], feats)
    write_karpathy(root / "f30k" / "dataset_flickr30k.json", images)
    write_features(root / "coco", [im["name"] for im in images], feats)
    write_karpathy(root / "dataset_coco.json", images)  # beside the folder
    monkeypatch.setenv(ENV_ROOT, str(root))
    for name, json_path in (("f30k", root / "f30k" / "dataset_flickr30k.json"), ("coco", root / "dataset_coco.json")):
        reader = resolve_preset(name)
        assert isinstance(reader, KarpathyReader) and reader.path == json_path.resolve()
        test = reader.read("test")
        assert test.image_ids == ["im2.jpg", "im5.jpg"] and len(test.captions) == 5 + 3  # 3 + i % 5
        assert preset_table(name)["type"] == "karpathy"
        built = spec_mod.build_component("dataset_reader", preset_table(name), "data", tmp_path).build()
        assert built.read("test").captions == test.captions
    # the precomp folder comes first
    (root / "f30k" / "f30k_train_caps.txt").write_text("a\n")
    assert isinstance(resolve_preset("f30k"), PrecompReader) and preset_table("f30k")["type"] == "precomp"
    with pytest.raises(DataError, match=r"'f8k': no such folder"):
        resolve_preset("f8k")


# --------------------------------------------------------------------------- bad input: one error line, exit 2


def run_data(tmp_path: Path, table: dict, command: str = "run") -> list[str]:
    """A tiny spec whose [data] is ``table``; the argv of ``vsekit run`` (or ``validate``)."""
    raw = {"name": "bad", "data": table, "model": {"dim": 8}, "loss": {"type": "contrastive"},
           "train": {"max_epochs": 1, "threads": 1}}
    path = tmp_path / "spec.toml"
    path.write_text(spec_mod.dumps_toml(raw), encoding="utf-8")
    return ["run", path, "--out", tmp_path / "out", "-q"] if command == "run" else ["validate", path]


def karpathy_case(tmp_path: Path, change) -> tuple[list[str], Path]:
    images, feats = varying(6)
    path = write_karpathy(tmp_path / "dataset.json", images)
    doc = json.loads(path.read_text())
    change(doc["images"])
    path.write_text(json.dumps(doc))
    feats_dir = write_features(tmp_path / "f", [im["name"] for im in images], feats)
    table = {"type": "karpathy", "json": str(path), "features": {"type": "precomputed", "dir": str(feats_dir)}}
    return run_data(tmp_path, table), path


KARPATHY_BAD = {
    "missing key": (lambda ims: ims[2].pop("sentences"), 'images[2] ("im2.jpg"): missing key "sentences"'),
    "listed twice": (lambda ims: ims.append(dict(ims[1])), 'images[6] ("im1.jpg"): listed twice (also images[1])'),
    "empty caption": (lambda ims: ims[4]["sentences"][1].update(raw="  "), 'images[4] ("im4.jpg"): sentences[1]: '
                                                                           "empty caption"),
    "unknown split": (lambda ims: ims[3].update(split="validation"), "images[3] (\"im3.jpg\"): unknown split "
                                                                     "'validation'"),
    "no filename": (lambda ims: ims[0].pop("filename"), 'images[0]: missing key "filename"'),
}


@pytest.mark.parametrize("case", list(KARPATHY_BAD))
def test_karpathy_bad_input(tmp_path, case):
    change, needle = KARPATHY_BAD[case]
    argv, path = karpathy_case(tmp_path, change)
    assert_user_error(invoke(*argv), f"{path}: {needle}")
    assert not (tmp_path / "out").exists()


def coco_case(tmp_path: Path, change, per_split: bool = False) -> tuple[list[str], Path]:
    images, feats = varying(6)
    doc = coco_doc(images)
    change(doc)
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(doc))
    write_lists(tmp_path / "ids", images, key=lambda im: im["name"])
    feats_dir = write_features(tmp_path / "f", [im["name"] for im in images], feats)
    table = {"type": "coco", "json": str(path), "splits": str(tmp_path / "ids" / "{split}.txt"),
             "features": {"type": "precomputed", "dir": str(feats_dir)}}
    return run_data(tmp_path, table), path


COCO_BAD = {
    "missing key": (lambda d: d["images"][1].pop("file_name"), 'images[1]: missing key "file_name"'),
    "listed twice": (lambda d: d["images"].append({"id": 1002, "file_name": "x.jpg"}),
                     "images[6] (\"x.jpg\"): image id 1002 listed twice (also images[2])"),
    "unknown image id": (lambda d: d["annotations"][7].update(image_id=99), "annotations[7] (image_id 99): unknown "
                                                                           "image id"),
    "empty caption": (lambda d: d["annotations"][3].update(caption=""), "annotations[3] (image_id 1003): empty "
                                                                       "caption"),
    "no annotations": (lambda d: d.pop("annotations"), 'missing key "annotations"'),
}


@pytest.mark.parametrize("case", list(COCO_BAD))
def test_coco_bad_input(tmp_path, case):
    change, needle = COCO_BAD[case]
    argv, path = coco_case(tmp_path, change)
    assert_user_error(invoke(*argv), f"{path}: {needle}")


def test_coco_split_lists(tmp_path):
    argv, _ = coco_case(tmp_path, lambda d: None)
    (tmp_path / "ids" / "dev.txt").write_text("im1.jpg\nnope.jpg\n")
    assert_user_error(invoke(*argv), f"{tmp_path / 'ids' / 'dev.txt'}: line 2: unknown image id 'nope.jpg'")
    (tmp_path / "ids" / "dev.txt").unlink()
    validate = ["validate", argv[1]]
    assert_user_error(invoke(*validate), f"{tmp_path / 'ids' / 'dev.txt'}: no such file")


def csv_case(tmp_path: Path, rows: list[list[str]], **options) -> tuple[list[str], Path]:
    images, feats = varying(6)
    path = write_csv(tmp_path / "caps.csv", rows)
    write_lists(tmp_path / "lists", images)
    feats_dir = write_features(tmp_path / "f", [im["name"] for im in images], feats)
    table = {"type": "csv", "path": str(path), "features": {"type": "precomputed", "dir": str(feats_dir)}, **options}
    if "splits" not in options:
        table["splits"] = str(tmp_path / "lists" / "{split}.txt")
    return run_data(tmp_path, {k: v for k, v in table.items() if v is not None}), path


def csv_rows(header=("image", "caption"), split: bool = False) -> list[list[str]]:
    images, _ = varying(6)
    rows = [[im["name"], c] + ([im["split"]] if split else []) for im in images for c in im["captions"]]
    return [[*header, *(["split"] if split else [])], *rows]


def test_csv_bad_input(tmp_path):
    argv, path = csv_case(tmp_path, csv_rows(header=("image", "text")))
    assert_user_error(invoke(*argv), f"{path}: line 1: expected a CSV header 'image,caption'", "'image,text'")
    rows = csv_rows()
    rows[4][1] = " "
    argv, path = csv_case(tmp_path, rows)
    assert_user_error(invoke(*argv), f"{path}: line 5: empty caption for 'im1.jpg'")  # im0 has rows 2-4
    argv, path = csv_case(tmp_path, csv_rows())
    (tmp_path / "lists" / "train.txt").write_text("im0.jpg\nim3.jpg\nim0.jpg\n")
    assert_user_error(invoke(*argv), f"{tmp_path / 'lists' / 'train.txt'}: duplicate image ids, e.g. 'im0.jpg'")


def test_csv_split_column_bad_input(tmp_path):
    rows = csv_rows(split=True)
    rows[6][2] = "validation"
    argv, path = csv_case(tmp_path, rows, split_column="split", splits=None)
    assert_user_error(invoke(*argv), f"{path}: line 7: unknown split 'validation' for 'im1.jpg'")
    rows = csv_rows(split=True)
    rows[5][2] = "test"  # im1.jpg (dev) once in test
    argv, path = csv_case(tmp_path, rows, split_column="split", splits=None)
    assert_user_error(invoke(*argv), f"{path}: line 6: image 'im1.jpg' is in split 'dev' and 'test'")
    argv, path = csv_case(tmp_path, csv_rows(split=True), split_column="split")
    assert_user_error(invoke("validate", argv[1]), "give either split_column or splits")
