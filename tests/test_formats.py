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
