"""``vsekit extract`` with ``efficientnet_lite0``, and the ``flickr8k`` reader's feature cache, end to end."""

from __future__ import annotations

import csv

import numpy as np
from click.testing import CliRunner
from test_bad_images import photo

from vsekit import spec
from vsekit.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], obj={}, catch_exceptions=False)


def test_extract_a_folder_then_resume(tmp_path, extractor):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    photo(seed=1).save(imgs / "b.jpg")
    photo(seed=2).convert("RGBA").save(imgs / "a.png")
    (imgs / "broken.jpg").write_bytes(b"not a jpeg")
    (imgs / "notes.txt").write_text("not an image")
    out = tmp_path / "feats" / "features.npy"
    r = invoke("extract", "efficientnet_lite0", imgs, "-o", out, "-q")
    assert r.exit_code == 0, r.output
    assert "broken.jpg: not an image file" in r.stderr and "2 added" in r.stdout
    assert (tmp_path / "feats" / "features_ids.txt").read_text().split() == ["a.png", "b.jpg"]
    feats = np.load(out)
    assert feats.shape == (2, 1280) and feats.dtype == np.float32
    ref = extractor.extract([imgs / "a.png", imgs / "b.jpg"]).features
    np.testing.assert_allclose(feats, ref, atol=1e-5)

    photo(seed=3).save(imgs / "c.webp")
    r = invoke("extract", "efficientnet_lite0", imgs, "-o", out, "-q")
    assert r.exit_code == 0 and "1 added" in r.stdout and "2 already there" in r.stdout, r.output
    assert (tmp_path / "feats" / "features_ids.txt").read_text().split() == ["a.png", "b.jpg", "c.webp"]
    np.testing.assert_array_equal(np.load(out)[:2], feats)


def test_extract_with_a_component_file_options_and_float16(tmp_path):
    photo().save(tmp_path / "x.jpg")
    (tmp_path / "ext.toml").write_text('type = "efficientnet_lite0"\nbatch_size = 4\nprogress = false\n')
    out = tmp_path / "test_ims.npy"
    r = invoke("extract", tmp_path / "ext.toml", tmp_path / "x.jpg", "-o", out, "--dtype", "float16",
               "--set", "workers=0")
    assert r.exit_code == 0, r.output
    assert np.load(out).dtype == np.float16 and (tmp_path / "test_ids.txt").read_text() == "x.jpg\n"
    r = invoke("extract", tmp_path / "ext.toml", tmp_path / "x.jpg", "-o", out, "--set", "ten_crop=true")
    assert r.exit_code == 2 and "made by another extractor" in r.stderr


def test_flickr8k_reader_extracts_once_into_the_cache(tmp_path, monkeypatch):
    root = tmp_path / "f8k"
    (root / "images").mkdir(parents=True)
    (root / "splits").mkdir()
    names = [f"{i}.jpg" for i in range(3)]
    for i, n in enumerate(names):
        photo(seed=i).save(root / "images" / n)
    with open(root / "captions.txt", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "caption"])
        for n in names:
            for j in range(5):
                w.writerow([n, f"A picture, number {j}."])
    for split in ("train", "dev", "test"):
        (root / "splits" / f"{split}.txt").write_text("".join(n + "\n" for n in names))
    raw = {"data": {"type": "flickr8k", "root": "f8k", "cache": "cache",
                    "features": {"type": "efficientnet_lite0", "progress": False}},
           "model": {"dim": 8}, "loss": {"type": "infonce"}}
    first = spec.from_dict(raw, base=tmp_path).data.build().read("test")
    assert first.images.shape == (3, 1280) and (tmp_path / "cache" / "test_ids.txt").exists()

    from vsekit_efficientnet.extractor import EfficientNetLite0

    calls = []
    real = EfficientNetLite0.extract
    monkeypatch.setattr(EfficientNetLite0, "extract",
                        lambda self, paths: calls.append(list(paths)) or real(self, paths))
    again = spec.from_dict(raw, base=tmp_path).data.build().read("test")
    np.testing.assert_array_equal(again.images, first.images)
    assert calls == []
    photo(seed=9).save(root / "images" / "new.jpg")
    (root / "splits" / "test.txt").write_text("new.jpg\n" + "".join(n + "\n" for n in names))
    with open(root / "captions.txt", "a", newline="") as fh:
        csv.writer(fh).writerows([["new.jpg", f"A new one {j}."] for j in range(5)])
    third = spec.from_dict(raw, base=tmp_path).data.build().read("test")
    assert [[p.name for p in c] for c in calls] == [["new.jpg"]]
    assert third.image_ids == ["new.jpg", *names]
    np.testing.assert_array_equal(third.images[1:], first.images)
