"""Feature files (``vsekit.extract``), ``vsekit extract`` and the ``flickr8k`` reader's cache, with a fake extractor.

The fake extractor reads bytes, not pixels (vsekit itself does not depend on
Pillow): a file starting with ``BAD`` is unreadable, others get a byte
histogram. The real extractor is tested in plugins/vsekit-efficientnet.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np
import pytest
from click.testing import CliRunner

from vsekit import spec as spec_mod
from vsekit import testing
from vsekit.cli import cli
from vsekit.errors import DataError, SpecError
from vsekit.extract import (
    FeatureFile,
    extract_cached,
    extract_folder,
    ids_path,
    list_images,
    meta_path,
    recorded_extractor,
)
from vsekit.image.base import Extracted, ImageFeatureExtractor


class Fake(ImageFeatureExtractor):
    """8-d byte histograms; files starting with BAD are unreadable; counts what it extracts."""

    @attrs.frozen
    class Config:
        bins: int = 8
        batch_size: int = 4

    calls: ClassVar[list[list[str]]] = []  # shared: every instance's calls, for the tests to read
    stop_after = 0  # raise KeyboardInterrupt once this many images were extracted (0: never)

    def __init__(self, config):
        super().__init__(config)
        self.progress = True
        self.done = 0

    @property
    def dim(self):
        return self.config.bins

    def extract(self, paths):
        Fake.calls.append([Path(p).name for p in paths])
        rows, ok, errors = [], [], {}
        for p in map(Path, paths):
            if self.stop_after and self.done >= self.stop_after:
                raise KeyboardInterrupt
            try:
                data = p.read_bytes()
            except OSError as exc:
                data, why = b"BAD", exc.strerror
            else:
                why = "starts with BAD"
            if data.startswith(b"BAD"):
                ok.append(False)
                errors[p.name] = why
                continue
            h = np.bincount(np.frombuffer(data, np.uint8) % self.config.bins, minlength=self.config.bins)
            rows.append(h / np.linalg.norm(h))
            ok.append(True)
            self.done += 1
        feats = np.array(rows, np.float32).reshape(len(rows), self.config.bins)
        return Extracted(feats, np.array(ok, bool), errors, [])


@pytest.fixture(autouse=True)
def fake():
    Fake.calls = []
    Fake.stop_after = 0
    with testing.registered("image_feature_extractor", "fake", Fake):
        yield Fake


def images(folder: Path, *names: str, bad: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(f"image {n} ".encode() * 7)
    for n in bad:
        (folder / n).write_bytes(b"BAD")
    return folder


def invoke(*args, cwd=None):
    return CliRunner().invoke(cli, [str(a) for a in args], obj={}, catch_exceptions=False)


# --------------------------------------------------------------------------- names and inputs


@pytest.mark.parametrize("out, ids, meta", [
    ("features.npy", "features_ids.txt", "features_extractor.json"),
    ("test_ims.npy", "test_ids.txt", "test_extractor.json"),
    ("_ims.npy", "_ims_ids.txt", "_ims_extractor.json"),
])
def test_sidecar_names(tmp_path, out, ids, meta):
    assert ids_path(tmp_path / out) == tmp_path / ids
    assert meta_path(tmp_path / out) == tmp_path / meta


def test_list_images_folders_and_files(tmp_path):
    d = images(tmp_path / "d", "b.JPG", "a.png", "c.webp", "e.jpeg")
    (d / "notes.txt").write_text("x")
    images(d / "sub", "deep.jpg")
    other = images(tmp_path / "o", "z.gif")
    got = list_images([d, other / "z.gif"])
    assert [p.name for p in got] == ["a.png", "b.JPG", "c.webp", "e.jpeg", "z.gif"]


def test_list_images_refusals(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="empty: no images in this folder"):
        list_images([tmp_path / "empty"])
    with pytest.raises(DataError, match=re.escape("nope.jpg: no such file or folder")):
        list_images([tmp_path / "nope.jpg"])
    images(tmp_path / "a", "x.jpg")
    images(tmp_path / "b", "x.jpg")
    with pytest.raises(DataError, match=re.escape("two images named 'x.jpg'")):
        list_images([tmp_path / "a", tmp_path / "b"])


# --------------------------------------------------------------------------- the feature file


def test_extract_resume_and_report(tmp_path):
    d = images(tmp_path / "imgs", "a.jpg", "b.jpg", bad=("c.jpg",))
    out = tmp_path / "f.npy"
    r = extract_folder("fake", [d], out, progress=False)
    assert (r.rows, r.added, r.skipped, list(r.errors)) == (2, 2, 0, ["c.jpg"])
    assert ids_path(out).read_text() == "a.jpg\nb.jpg\n"
    first = np.load(out)
    assert first.shape == (2, 8) and first.dtype == np.float32
    assert json.loads(meta_path(out).read_text())["extractor"] == {"type": "fake", "bins": 8, "batch_size": 4}
    images(d, "d.jpg")
    Fake.calls = []
    r = extract_folder("fake", [d], out, progress=False)
    assert (r.rows, r.added, r.skipped, list(r.errors)) == (3, 1, 2, ["c.jpg"])
    assert Fake.calls == [["c.jpg", "d.jpg"]]  # the unreadable one is tried again
    assert ids_path(out).read_text().split() == ["a.jpg", "b.jpg", "d.jpg"]
    np.testing.assert_array_equal(np.load(out)[:2], first)


def test_interrupted_run_keeps_saved_chunks_and_resumes(tmp_path):
    d = images(tmp_path / "imgs", *[f"{i}.jpg" for i in range(7)])
    out = tmp_path / "f.npy"
    Fake.stop_after = 5
    with pytest.raises(KeyboardInterrupt):
        extract_folder("fake", [d], out, progress=False, chunk=2)
    assert ids_path(out).read_text().split() == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]  # two chunks saved
    Fake.stop_after = 0
    r = extract_folder("fake", [d], out, progress=False, chunk=2)
    assert r.added == 3 and r.rows == 7 and not list(tmp_path.glob(".*.tmp"))


def test_rows_without_ids_are_dropped(tmp_path, caplog):
    """A file of vsekit < 0.2 (no checksums in the record; test_artefact_pairs.py tests the checked ones)."""
    d = images(tmp_path / "imgs", "a.jpg", "b.jpg")
    out = tmp_path / "f.npy"
    extract_folder("fake", [d], out, progress=False)
    record = json.loads(meta_path(out).read_text())
    meta_path(out).write_text(json.dumps({k: v for k, v in record.items() if not k.endswith("_sha256")}))
    np.save(out, np.concatenate([np.load(out), np.ones((1, 8), np.float32)]))  # stopped between the writes
    ids_path(out).write_text("a.jpg\n")
    with caplog.at_level(logging.WARNING):
        r = extract_folder("fake", [d], out, progress=False)
    assert "row(s) without an id" in caplog.text
    assert r.added == 1 and r.rows == 2 and np.load(out).shape == (2, 8)


def test_another_extractor_is_refused_runtime_options_are_not(tmp_path):
    d = images(tmp_path / "imgs", "a.jpg")
    out = tmp_path / "f.npy"
    extract_folder("fake", [d], out, progress=False)
    images(d, "b.jpg")
    with pytest.raises(DataError, match="made by another extractor"):
        extract_folder(spec_mod.build_component("image_feature_extractor", {"type": "fake", "bins": 4}, "x", tmp_path),
                       [d], out, progress=False)
    r = extract_folder(spec_mod.build_component("image_feature_extractor", {"type": "fake", "batch_size": 64}, "x",
                                                tmp_path), [d], out, progress=False)
    assert r.added == 1
    r = extract_folder(spec_mod.build_component("image_feature_extractor", {"type": "fake", "bins": 4}, "x", tmp_path),
                       [d], out, progress=False, force=True)
    assert r.added == 2 and np.load(out).shape == (2, 4)


def test_registered_name_and_class_path_are_the_same_extractor(tmp_path):
    d = images(tmp_path / "imgs", "a.jpg")
    out = tmp_path / "f.npy"
    extract_folder(Fake(Fake.Config()), [d], out, progress=False)  # recorded as module:Class
    assert json.loads(meta_path(out).read_text())["extractor"]["type"] == f"{__name__}:Fake"
    images(d, "b.jpg")
    assert extract_folder("fake", [d], out, progress=False).added == 1


def test_float16_and_dtype_mismatch(tmp_path):
    d = images(tmp_path / "imgs", "a.jpg")
    out = tmp_path / "f.npy"
    extract_folder("fake", [d], out, dtype="float16", progress=False)
    assert np.load(out).dtype == np.float16
    images(d, "b.jpg")
    extract_folder("fake", [d], out, progress=False)  # no dtype: the file's
    assert np.load(out).dtype == np.float16 and len(np.load(out)) == 2
    with pytest.raises(DataError, match="holds float16 rows, not float32"):
        extract_folder("fake", [d], out, dtype="float32", progress=False)


def test_unreadable_feature_file(tmp_path):
    d = images(tmp_path / "imgs", "a.jpg")
    (tmp_path / "f.npy").write_bytes(b"garbage")  # a user's file: never grown nor replaced, even with force
    for force in (False, True):
        with pytest.raises(DataError, match="was not written by vsekit extract"):
            extract_folder("fake", [d], tmp_path / "f.npy", progress=False, force=force)
    assert (tmp_path / "f.npy").read_bytes() == b"garbage" and not (tmp_path / "f_ids.txt").exists()
    (tmp_path / "f_extractor.json").write_text('{"extractor": {"type": "fake"}}')  # vsekit's, damaged
    with pytest.raises(DataError, match=re.escape("not a readable .npy array")):
        extract_folder("fake", [d], tmp_path / "f.npy", progress=False)
    assert extract_folder("fake", [d], tmp_path / "f.npy", progress=False, force=True).rows == 1


def test_side_files_of_a_user_are_not_overwritten(tmp_path):
    d = images(tmp_path / "imgs", "a.jpg")
    (tmp_path / "u_ids.txt").write_text("mine\n")
    with pytest.raises(DataError, match=r"u_ids\.txt: exists and was not written by vsekit extract"):
        extract_folder("fake", [d], tmp_path / "u.npy", progress=False)
    assert (tmp_path / "u_ids.txt").read_text() == "mine\n" and not (tmp_path / "u.npy").exists()


def test_extract_cached_returns_rows_in_the_asked_order(tmp_path):
    d = images(tmp_path / "imgs", "a.jpg", "b.jpg", bad=("c.jpg",))
    ext = Fake(Fake.Config())
    out = tmp_path / "cache" / "test_ims.npy"
    first = extract_cached(ext, [d / "b.jpg", d / "c.jpg", d / "a.jpg"], out)
    assert first.ok.tolist() == [True, False, True] and first.errors == {"c.jpg": "starts with BAD"}
    again = extract_cached(ext, [d / "a.jpg", d / "b.jpg"], out)
    np.testing.assert_array_equal(again.features, first.features[::-1])
    assert FeatureFile.read(out).ids == ["b.jpg", "a.jpg"]


# --------------------------------------------------------------------------- the command


def test_cli_extract(tmp_path):
    d = images(tmp_path / "imgs", "a.jpg", "b.png", bad=("c.jpg",))
    r = invoke("extract", "fake", d, "-o", tmp_path / "out" / "feats.npy", "--set", "bins=4", "-q")
    assert r.exit_code == 0, r.output
    assert "2 rows of 4-d features" in r.stdout and "c.jpg: starts with BAD" in r.stderr
    assert (tmp_path / "out" / "feats_ids.txt").read_text() == "a.jpg\nb.png\n"
    r = invoke("extract", "fake", d, "-o", tmp_path / "out" / "feats.npy", "--set", "bins=4", "-q")
    assert r.exit_code == 0 and "0 added" in r.stdout and "2 already there" in r.stdout


def test_cli_extract_from_a_spec_or_component_file(tmp_path):
    d = images(tmp_path / "imgs", "a.jpg")
    (tmp_path / "spec.toml").write_text('[data]\ntype = "flickr8k"\nroot = "x"\n[data.features]\ntype = "fake"\n'
                                        'bins = 3\n[model]\n[loss]\ntype = "infonce"\n')
    r = invoke("extract", tmp_path / "spec.toml", d, "-o", tmp_path / "a.npy", "-q")
    assert r.exit_code == 0 and np.load(tmp_path / "a.npy").shape == (1, 3), r.output
    (tmp_path / "comp.toml").write_text('type = "fake"\nbins = 5\n')
    r = invoke("extract", tmp_path / "comp.toml", d, "-o", tmp_path / "b.npy", "-q")
    assert r.exit_code == 0 and np.load(tmp_path / "b.npy").shape == (1, 5), r.output


@pytest.mark.parametrize("setup, args, needle", [
    ("empty", ["fake", "{d}"], "no images in this folder"),
    ("bad", ["fake", "{d}"], "none of the 1 image(s) could be read"),
    ("ok", ["nosuch", "{d}"], "nosuch"),
    ("ok", ["{t}/nothing.toml", "{d}"], "no such spec file"),
    ("notype", ["{t}/c.toml", "{d}"], "no image feature extractor"),
    ("ok", ["fake", "{d}", "--set", "bins=x"], "bins"),
    ("ok", ["fake", "{d}", "--set", "a.b=1"], "expected an option of the extractor"),
])
def test_cli_extract_errors(tmp_path, setup, args, needle):
    d = tmp_path / "imgs"
    d.mkdir()
    if setup == "bad":
        images(d, bad=("x.jpg",))
    elif setup != "empty":
        images(d, "a.jpg")
    (tmp_path / "c.toml").write_text("bins = 3\n")
    r = invoke("extract", *[a.format(d=d, t=tmp_path) for a in args], "-o", tmp_path / "f.npy", "-q")
    assert r.exit_code == 2, r.output
    assert r.stderr.count("error: ") == 1 and needle in r.stderr and "Traceback" not in r.output


# --------------------------------------------------------------------------- the flickr8k reader's cache


def make_f8k(root: Path, names: list[str], bad: tuple[str, ...] = ()) -> Path:
    images(root / "images", *names, bad=bad)
    (root / "splits").mkdir(parents=True, exist_ok=True)
    with open(root / "captions.txt", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "caption"])
        for n in [*names, *bad]:
            w.writerows([[n, f"A dog number {j}."] for j in range(5)])
    for split in ("train", "dev", "test"):
        (root / "splits" / f"{split}.txt").write_text("".join(n + "\n" for n in [*names, *bad]))
    return root


def reader(base: Path, **data):
    raw = {"data": {"type": "flickr8k", "root": "f8k", "features": {"type": "fake"}, **data},
           "model": {"dim": 8}, "loss": {"type": "infonce"}}
    return spec_mod.from_dict(raw, base=base).data.build()


def test_flickr8k_cache_extracts_once(tmp_path):
    make_f8k(tmp_path / "f8k", ["a.jpg", "b.jpg", "c.jpg"], bad=("z.jpg",))
    first = reader(tmp_path, cache="cache").read("test")
    assert first.image_ids == ["a.jpg", "b.jpg", "c.jpg"] and first.report["without_features"] == ["z.jpg"]
    assert Fake.calls == [["a.jpg", "b.jpg", "c.jpg", "z.jpg"]]
    assert (tmp_path / "cache" / "test_ids.txt").read_text() == "a.jpg\nb.jpg\nc.jpg\n"
    Fake.calls = []
    again = reader(tmp_path, cache="cache").read("test")
    np.testing.assert_array_equal(again.images, first.images)
    assert Fake.calls == [["z.jpg"]]  # only what is missing
    # the cache folder is a precomputed-features folder as it stands
    pre = reader(tmp_path, features={"type": "precomputed", "dir": "cache"}).read("test")
    np.testing.assert_array_equal(pre.images, first.images)


def test_flickr8k_without_cache_extracts_every_time(tmp_path):
    make_f8k(tmp_path / "f8k", ["a.jpg"])
    reader(tmp_path).read("test")
    reader(tmp_path).read("test")
    assert Fake.calls == [["a.jpg"], ["a.jpg"]] and not (tmp_path / "cache").exists()


def test_resolve_extractor_refuses_a_spec_without_features(tmp_path):
    from vsekit.extract import resolve_extractor

    (tmp_path / "s.toml").write_text('[data]\ntype = "precomp"\ndir = "x"\n')
    with pytest.raises(SpecError, match="no image feature extractor"):
        resolve_extractor(tmp_path / "s.toml")


# --------------------------------------------------------------------------- the record travels with the features


def test_recorded_extractor_is_what_vsekit_extract_wrote(tmp_path):
    d = images(tmp_path / "imgs", "a.jpg", "b.jpg")
    for split in ("train", "dev"):
        res = invoke("extract", "fake", d, "-o", tmp_path / f"{split}_ims.npy", "--set", "batch_size=2", "-q")
        assert res.exit_code == 0, res.output
    (tmp_path / "train_caps.txt").write_text("a\n")
    # the options that change the numbers, not batch_size (RUNTIME_OPTIONS); files other than .npy are ignored
    expected = {"type": "fake", "bins": 8}
    assert recorded_extractor([tmp_path / "train_caps.txt", tmp_path / "train_ims.npy"]) == expected
    assert recorded_extractor([tmp_path / "train_ims.npy", tmp_path / "dev_ims.npy"]) == expected
    assert recorded_extractor([tmp_path / "train_caps.txt", tmp_path / "none_ims.npy"]) is None


def test_features_of_two_extractors_do_not_mix(tmp_path):
    d = images(tmp_path / "imgs", "a.jpg")
    assert invoke("extract", "fake", d, "-o", tmp_path / "train_ims.npy", "-q").exit_code == 0
    assert invoke("extract", "fake", d, "-o", tmp_path / "test_ims.npy", "--set", "bins=4", "-q").exit_code == 0
    with pytest.raises(DataError, match=r"test_extractor.json names another image feature extractor"):
        recorded_extractor([tmp_path / "train_ims.npy", tmp_path / "test_ims.npy"])
    meta_path(tmp_path / "test_ims.npy").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"test_extractor.json: not a readable extractor record"):
        recorded_extractor([tmp_path / "test_ims.npy"])
    meta_path(tmp_path / "test_ims.npy").write_text('{"extractor": {"bins": 4}}')
    with pytest.raises(DataError, match=r"test_extractor.json: expected"):
        recorded_extractor([tmp_path / "test_ims.npy"])


def test_every_flickr8k_path_names_its_extractor(tmp_path):
    """What the trainer records (Setup.build): the cache's record, the record of a precomputed folder,
    or the reader's own [data.features]."""
    from vsekit.training.setup import spec_extractor

    make_f8k(tmp_path / "f8k", ["a.jpg", "b.jpg"])
    fake_table = {"type": "fake", "bins": 8}
    cached = reader(tmp_path, cache="cache").read("test")
    assert recorded_extractor(cached.files) == fake_table
    pre = reader(tmp_path, features={"type": "precomputed", "dir": "cache"}).read("test")
    assert recorded_extractor(pre.files) == fake_table  # the record beside the cache's features travels on

    def spec(**data):
        raw = {"data": {"type": "flickr8k", "root": "f8k", "features": {"type": "fake"}, **data},
               "model": {"dim": 8}, "loss": {"type": "infonce"}}
        return spec_mod.from_dict(raw, base=tmp_path)

    assert recorded_extractor(reader(tmp_path).read("test").files) is None  # no cache, no record ...
    assert spec_extractor(spec()) == fake_table  # ... but the spec names it
    assert spec_extractor(spec(features={"type": "precomputed", "dir": "cache"})) is None
