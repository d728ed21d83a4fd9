"""Images shared between splits are reported (issue 16, kind 7): a warning, ``provenance.json``
``split_overlap`` and ``results.json`` ``warnings``; by image id where the format has ids, else by identical
feature rows. Expected overlaps are built into the data and counted here by brute force (ids by set
membership, rows by comparing every pair of rows), never by the code under test.
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
from bad_input_harness import invoke
from conftest import tiny_spec_text
from test_bad_input_lines import flickr, lines_of, run_flickr, write_lines

from vsekit.data.overlap import overlap_warnings, split_overlap
from vsekit.data.readers import Split


def split(name, images, ids=None):
    images = np.asarray(images, np.float32)
    return Split(name, [f"caption {i}" for i in range(len(images))], images, np.arange(len(images)), ids)


def brute_force_rows(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """(first row of a, row of b) for every row of b equal to some row of a."""
    out = []
    for j in range(len(b)):
        same = [i for i in range(len(a)) if np.array_equal(a[i], b[j])]
        if same:
            out.append((same[0], j))
    return out


def test_by_id_exactly():
    rng = np.random.default_rng(0)
    train_ids = [f"{c}.jpg" for c in "abcdefghij"]
    test_ids = ["c.jpg", "x.jpg", "j.jpg", "C.jpg", " a.jpg", "y/a.jpg"]  # only c.jpg and j.jpg are the same ids
    found = split_overlap([split("train", rng.random((10, 3)), train_ids), split("test", rng.random((6, 3)), test_ids)])
    want = [i for i in test_ids if i in set(train_ids)]
    assert found == {"train/test": {"images": {"train": 10, "test": 6},
                                    "by_id": {"shared": len(want), "examples": want},
                                    "by_rows": {"shared": 0, "examples": []}}}
    (w,) = overlap_warnings(found)
    assert w.startswith("splits 'train' and 'test' overlap: 2 of the 6 'test' images are also in 'train' "
                        "(same image id, e.g. 'c.jpg')")


def test_one_picture_under_two_ids_is_found_by_rows():
    rng = np.random.default_rng(3)
    train, test = rng.random((4, 3)), rng.random((3, 3))
    test[1] = train[2]  # 'B.jpg' in test is 'x/B.jpg' of train: the ids differ, the features do not
    found = split_overlap([split("train", train, ["a", "x/B.jpg", "c", "d"]), split("test", test, ["e", "B.jpg", "f"])])
    rec = found["train/test"]
    assert rec["by_id"]["shared"] == 0 and rec["by_rows"] == {"shared": 1, "examples": [{"train": 2, "test": 1}]}
    (w,) = overlap_warnings(found)
    assert "1 of the 3 'test' images have the feature row of an image of 'train'" in w
    assert "test row 1 = train row 2" in w


def test_by_rows_when_a_split_has_no_ids():
    rng = np.random.default_rng(1)
    train = rng.random((12, 5)).astype(np.float32)
    test = rng.random((6, 5)).astype(np.float32)
    test[1], test[4] = train[7], train[2]
    test[5] = np.nextafter(train[3], np.float32(2))  # one ulp away: another image
    dev = train[[0, 0, 9]]  # no ids here, ids on train: matched by rows only
    found = split_overlap([split("train", train, [f"{i}" for i in range(12)]), split("dev", dev), split("test", test)])
    for pair, (a, b) in {"train/dev": (train, dev), "train/test": (train, test), "dev/test": (dev, test)}.items():
        want = brute_force_rows(a, b)
        name_a, name_b = pair.split("/")
        assert found[pair]["by_id"] is None
        examples = [{name_a: i, name_b: j} for i, j in want][:5]
        assert found[pair]["by_rows"] == {"shared": len(want), "examples": examples}
    assert found["train/test"]["by_rows"]["shared"] == 2 and found["dev/test"]["by_rows"]["shared"] == 0
    assert len(overlap_warnings(found)) == 2


def test_region_features_and_a_split_given_twice():
    rng = np.random.default_rng(2)
    train = rng.random((4, 3, 2)).astype(np.float32)
    test = rng.random((3, 3, 2)).astype(np.float32)
    test[2] = train[1]
    dev = split("dev", test)
    found = split_overlap([split("train", train), dev, dev])  # the dev split evaluated: compared once
    assert list(found) == ["train/dev"]
    assert found["train/dev"]["by_rows"] == {"shared": 1, "examples": [{"train": 1, "dev": 2}]}


def test_run_warns_and_records_rows_shared(tmp_path, tiny_data, caplog):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    train_ims = np.load(data / "train_ims.npy")
    test_ims = train_ims[10:20].copy()  # every test image also a train image...
    test_ims[0] += 1.0  # ...but one
    np.save(data / "test_ims.npy", test_ims)
    write_lines(data / "test_caps.txt", lines_of(data / "train_caps.txt")[50:100])
    want = len(brute_force_rows(train_ims, test_ims))
    assert want == 9
    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(data), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="vsekit.training.setup"):
        r = invoke(["run", str(spec), "--out", str(tmp_path / "out"), "-q"], tmp_path)
    assert r.exit_code == 0, r.output
    sentence = f"splits 'train' and 'test' overlap: {want} of the 10 'test' images have the feature row of an image"
    assert sum(sentence in rec.getMessage() and rec.levelname == "WARNING" for rec in caplog.records) == 1
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())["split_overlap"]
    assert prov["train/test"]["by_id"] is None and prov["train/test"]["by_rows"]["shared"] == want
    assert prov["train/dev"]["by_rows"]["shared"] == prov["dev/test"]["by_rows"]["shared"] == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert sum(w.startswith(sentence) for w in results["warnings"]) == 1


def test_flickr8k_overlap_by_id(env, caplog):
    from vsekit.spec import load
    from vsekit.training.setup import load_data

    root = flickr(env)
    train_names = lines_of(root / "splits" / "train.txt")
    test_list = root / "splits" / "test.txt"
    write_lines(test_list, lines_of(test_list)[:7] + train_names[4:7])  # 3 train images listed in test too
    run_flickr(env, root)
    with caplog.at_level(logging.WARNING, logger="vsekit.training.setup"):
        data = load_data(load(env.spec))
    test_names = lines_of(test_list)
    want = [n for n in test_names if n in set(train_names)]
    rows = brute_force_rows(data.train.images, data.test.images)
    assert len(want) == len(rows) == 3  # listed under the same ids: the same rows
    assert data.overlap["train/test"] == {"images": {"train": 20, "test": 10},
                                          "by_id": {"shared": len(want), "examples": want},
                                          "by_rows": {"shared": 3,
                                                      "examples": [{"train": i, "test": j} for i, j in rows]}}
    assert all(data.overlap[p]["by_id"]["shared"] == data.overlap[p]["by_rows"]["shared"] == 0
               for p in ("train/dev", "dev/test"))
    assert [r.getMessage() for r in caplog.records] == overlap_warnings(data.overlap)  # one: the rows add nothing
    assert "3 of the 10 'test' images are also in 'train' (same image id, e.g. 'train4.jpg')" in \
        caplog.records[0].getMessage()


def test_no_overlap_no_warning(tiny_data, tmp_path, caplog):
    from vsekit.spec import load
    from vsekit.training.setup import load_data

    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(tiny_data), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="vsekit.training.setup"):
        data = load_data(load(spec))
    assert {k: v["by_rows"]["shared"] for k, v in data.overlap.items()} == {"train/dev": 0, "train/test": 0,
                                                                             "dev/test": 0}
    assert caplog.records == []
