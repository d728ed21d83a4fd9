"""The colorhist extractor: synthetic images of every Pillow mode, real Flickr8K images, the cache, the plugin."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from vsekit_myfeatures.colorhist import ColorHistExtractor

from vsekit import registry, testing
from vsekit import spec as spec_mod

PLUGIN_DIR = Path(__file__).resolve().parent.parent


def make(config=None) -> ColorHistExtractor:
    return ColorHistExtractor(testing.make_config(ColorHistExtractor, config or {}))


def stripes(horizontal: bool, size: int = 64) -> Image.Image:
    a = np.zeros((size, size), dtype=np.uint8)
    if horizontal:
        a[(np.arange(size) // 4) % 2 == 0, :] = 255
    else:
        a[:, (np.arange(size) // 4) % 2 == 0] = 255
    return Image.fromarray(a, mode="L")


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    """One file per Pillow mode the extractor must accept, plus files it must refuse."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), mode="RGB")
    out = {}

    def save(name, im, **kw):
        out[name] = tmp_path / name
        im.save(out[name], **kw)

    save("rgb.png", rgb)
    save("rgb.jpg", rgb, quality=95)
    save("gray.png", rgb.convert("L"))
    save("bw.png", rgb.convert("1"))
    save("palette.png", rgb.convert("P"))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    save("rgba.png", rgba)
    save("la.png", rgb.convert("LA"))
    save("cmyk.jpg", rgb.convert("CMYK"))
    save("gray16.png", Image.fromarray((rng.integers(0, 65535, (40, 40))).astype(np.uint16)))
    save("tiny.png", rgb.resize((3, 2)))
    save("red.png", Image.new("RGB", (32, 32), (220, 20, 20)))
    save("blue.png", Image.new("RGB", (32, 32), (20, 20, 220)))
    save("hstripes.png", stripes(True))
    save("vstripes.png", stripes(False))
    bad = tmp_path / "not_an_image.jpg"
    bad.write_bytes(b"this is text, not a JPEG")
    out["not_an_image.jpg"] = bad
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG")
    (tmp_path / "truncated.jpg").write_bytes(buf.getvalue()[:200])
    out["truncated.jpg"] = tmp_path / "truncated.jpg"
    out["missing.jpg"] = tmp_path / "missing.jpg"
    return out


BAD = ("not_an_image.jpg", "truncated.jpg", "missing.jpg")


def test_every_mode_works_and_bad_files_are_reported(images):
    good = [p for n, p in images.items() if n not in BAD]
    res = testing.check_image_feature_extractor(ColorHistExtractor, {}, good, [images[n] for n in BAD])
    assert res.features.shape == (len(good), 8 * 4 * 4 + 9 * 16)
    assert np.allclose(np.linalg.norm(res.features, axis=1), 1.0, atol=1e-5)
    assert sorted(res.errors) == sorted(BAD)
    assert "FileNotFoundError" in res.errors["missing.jpg"]
    assert all("\n" not in msg for msg in res.errors.values())


def test_colour_block_sees_colour(images):
    ext = make({"hsv_bins": [8, 2, 2], "grid": 1})
    red, blue = ext.extract([images["red.png"], images["blue.png"]]).features
    n_color = 8 * 2 * 2
    assert red[:n_color] @ blue[:n_color] < 0.05  # different hue bins
    same = ext.extract([images["red.png"], images["red.png"]]).features
    assert np.allclose(same[0], same[1])


def test_gradient_block_sees_orientation(images):
    ext = make({"orientations": 8, "grid": 1, "power": 1.0})
    h, v = ext.extract([images["hstripes.png"], images["vstripes.png"]]).features
    n_color = 8 * 4 * 4
    # horizontal stripes: vertical gradients (90 degrees, bin 3/4 boundary of 8); vertical ones: 0 degrees
    assert set(np.argsort(h[n_color:])[-2:]) == {3, 4}
    assert set(np.argsort(v[n_color:])[-2:]) == {0, 7}


def test_transparency_is_laid_over_white(tmp_path):
    clear = Image.new("RGBA", (32, 32), (255, 0, 0, 0))  # fully transparent red
    clear.save(tmp_path / "clear.png")
    Image.new("RGB", (32, 32), (255, 255, 255)).save(tmp_path / "white.png")
    a, b = make().extract([tmp_path / "clear.png", tmp_path / "white.png"]).features
    assert np.allclose(a, b)


def test_dim_follows_the_config_and_bad_configs_are_spec_errors(tmp_path):
    ext = make({"hsv_bins": [4, 4, 4], "color_grid": 2, "orientations": 6, "grid": 3})
    assert ext.dim == 64 * 4 + 6 * 9
    table = {"type": "colorhist", "hsv_bins": [8, 4], "grid": 40, "size": 64, "sise": 1}
    with (testing.registered("image_feature_extractor", "colorhist_t", ColorHistExtractor),
          pytest.raises(spec_mod.SpecProblems) as err):
        spec_mod.build_component("image_feature_extractor", {**table, "type": "colorhist_t"}, "data.features", tmp_path)
    text = str(err.value.problems)
    assert "sise" in text and "did you mean 'size'" in text


def test_config_validators():
    with pytest.raises(AssertionError, match=r"hsv_bins: expected .*Not enough values"):
        make({"hsv_bins": [8, 4]})
    with pytest.raises(AssertionError, match=r"hsv_bins: expected three bin counts in 1..32"):
        make({"hsv_bins": [8, 4, 0]})
    with pytest.raises(AssertionError, match="grid: a 40 x 40 grid needs size >= 160"):
        make({"grid": 40, "size": 64})


def test_cache_reuses_rows_and_notices_changed_files(images, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    ext = make({"cache": str(cache)})
    first = ext.extract([images["rgb.png"], images["red.png"], images["missing.jpg"]])
    files = list(cache.glob("colorhist-*.npz"))
    assert len(files) == 1 and first.files == files
    monkeypatch.setattr(ColorHistExtractor, "features", lambda self, rgb: (_ for _ in ()).throw(AssertionError()))
    again = make({"cache": str(cache)}).extract([images["rgb.png"], images["red.png"]])
    assert np.array_equal(again.features, first.features) and again.ok.all()
    Image.new("RGB", (32, 32), (0, 200, 0)).save(images["red.png"])  # changed: must be recomputed
    os.utime(images["red.png"], ns=(1, 1))
    changed = make({"cache": str(cache)}).extract([images["red.png"]])
    assert not changed.ok.any() and "AssertionError" in changed.errors["red.png"]
    monkeypatch.undo()
    other = make({"cache": str(cache), "size": 64})  # another config: another file
    other.extract([images["rgb.png"]])
    assert len(list(cache.glob("colorhist-*.npz"))) == 2


def test_a_damaged_cache_is_rebuilt(images, tmp_path, caplog):
    cache = tmp_path / "cache"
    ext = make({"cache": str(cache)})
    cache.mkdir()
    (cache / f"colorhist-{ext.config_hash()}.npz").write_bytes(b"garbage")
    res = ext.extract([images["rgb.png"]])
    assert res.ok.all() and "ignoring unreadable cache" in caplog.text


def test_the_plugin_is_found_through_its_entry_point():
    with testing.installed_plugin(PLUGIN_DIR):
        mgr = registry.manager()
        info = mgr.plugins["myfeatures"]
        assert info.components == {"image_feature_extractor": ["colorhist"]} and info.version == "0.1.0"
        assert registry.get("image_feature_extractor", "colorhist").__name__ == "ColorHistExtractor"


def flickr_folder(tmp_path: Path, image_dir: Path, names: dict[str, list[str]]) -> Path:
    """A Flickr8K-layout folder (captions.txt, splits/) over images in ``image_dir``."""
    root = tmp_path / "f8k"
    (root / "splits").mkdir(parents=True)
    words = ["a", "dog", "runs", "on", "grass", "the", "man", "red", "blue", "sky", "child", "water"]
    rng = np.random.default_rng(0)
    lines = ["image,caption"]
    for split, files in names.items():
        (root / "splits" / f"{split}.txt").write_text("\n".join(files) + "\n", encoding="utf-8")
        for f in files:
            for _ in range(5):
                lines.append(f"{f},{' '.join(rng.choice(words, 6))} .")
    (root / "captions.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


SPEC = """
[data]
type = "flickr8k"
root = "{root}"
images_dir = "{images}"
features = {{type = "colorhist", size = 64, cache = "cache"}}

[model]
dim = 16

[model.sentence_encoder]
type = "gru"
dim_word = 16

[loss]
type = "infonce"

[train]
batch_size = 10
"""


def test_flickr8k_reader_trains_on_colorhist_features(images, tmp_path):
    """The whole path: spec -> flickr8k reader -> extract(paths) -> training, with one unreadable image."""
    img_dir = images["rgb.png"].parent
    good = [n for n in images if n not in BAD]
    root = flickr_folder(tmp_path, img_dir, {"train": [*good[:8], "not_an_image.jpg"], "dev": good[8:11],
                                             "test": good[11:14]})
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(root=root.as_posix(), images=img_dir.as_posix()), encoding="utf-8")
    with testing.installed_plugin(PLUGIN_DIR):
        results = testing.run_quick(spec, tmp_path / "run")
    assert results["train_captions"] == 8 * 5
    assert (tmp_path / "cache").is_dir()  # relative to the spec's folder
    import json

    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["data_report"]["train"]["without_features"] == ["not_an_image.jpg"]


def test_real_flickr8k_images():
    files = sorted((testing.shared_data("flickr8k/images") / "flickr8k" / "images").glob("*.jpg"))[:12]
    res = testing.check_image_feature_extractor("vsekit_myfeatures.colorhist:ColorHistExtractor", {}, files)
    f = res.features
    sims = f @ f.T
    assert np.allclose(np.diag(sims), 1, atol=1e-5) and (sims < 0.999).sum() == 12 * 11  # no two alike


def test_example_spec_validates():
    if not (PLUGIN_DIR.parents[2] / "shared" / "data" / "flickr8k" / "images").is_dir():  # the example's own path
        testing.missing_test_input("the example names ../shared/data beside the checkout, which is absent here")
    with testing.installed_plugin(PLUGIN_DIR):
        s = spec_mod.load(PLUGIN_DIR / "examples" / "flickr8k_colorhist.toml")
        assert s.data.config.features.type == "colorhist"
        assert not [p for p in s.data.build().check() if "no such" in p]


def test_a_phone_photo_is_read_upright(tmp_path):
    """EXIF orientation 6 (stored turned 90 degrees anticlockwise): the pixels read are the upright photo's."""
    upright = Image.new("RGB", (40, 80), (200, 30, 30))
    upright.paste((30, 30, 200), (0, 0, 40, 20))  # blue across the top of the upright photo
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote; the tag says how to undo it
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.png", exif=exif)
    upright.save(tmp_path / "upright.png")
    ex = make()
    assert np.array_equal(ex.load_rgb(tmp_path / "phone.png"), ex.load_rgb(tmp_path / "upright.png"))
