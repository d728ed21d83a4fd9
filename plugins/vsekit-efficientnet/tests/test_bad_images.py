"""Bad inputs never stop a batch: unusable files are reported by name, odd-but-valid ones are converted and used.

Every file is built in ``tmp_path`` with Pillow. One extraction runs over all
of them mixed with good images (module fixture ``mixed``); each test then
checks one input.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from vsekit_efficientnet.pixels import load_rgb

from vsekit import testing

# Pillow warns about the 10000x10000 image before vsekit-efficientnet refuses it
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def photo(w: int = 320, h: int = 240, seed: int = 0) -> Image.Image:
    """A smooth RGB test picture (gradients and a few blobs): the network sees structure, not noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    chans = [np.sin(6 * x + 2 * c + rng.uniform(0, 3)) * np.cos(5 * y + rng.uniform(0, 3)) for c in range(3)]
    arr = (np.stack(chans, axis=-1) * 0.5 + 0.5) * 255
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def png_with_size(path: Path, w: int, h: int) -> Path:
    """A PNG whose header claims ``w`` x ``h`` pixels (valid CRC), without the pixels: a decompression bomb."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    ihdr = bytes(data[16:29])
    ihdr = struct.pack(">II", w, h) + ihdr[8:]
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


GOOD = ["good1.jpg", "alpha.png", "cmyk.jpg", "one_pixel.png", "strip.png", "palette.gif", "grey16.png",
        "good2.webp"]
BAD = ["corrupt.jpg", "truncated.jpg", "empty.jpg", "huge.png", "bomb_warning_zone.png", "missing.jpg",
       "folder.jpg", "dangling.jpg"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad_images")
    f = {n: d / n for n in GOOD + BAD}
    photo(seed=1).save(f["good1.jpg"], quality=95)
    photo(seed=2).save(f["good2.webp"], quality=95)
    # alpha: left half opaque picture, right half fully transparent green (which must not show)
    rgba = photo(seed=3).convert("RGBA")
    a = np.asarray(rgba).copy()
    a[:, 160:, :] = (0, 255, 0, 0)
    Image.fromarray(a, "RGBA").save(f["alpha.png"])
    photo(seed=4).convert("CMYK").save(f["cmyk.jpg"], quality=95)
    Image.new("RGB", (1, 1), (200, 40, 90)).save(f["one_pixel.png"])
    Image.fromarray(np.tile(np.arange(20000) % 256, (1, 1)).astype(np.uint8), "L").save(f["strip.png"])  # 20000x1
    pal = photo(seed=5).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    pal.save(f["palette.gif"], transparency=0)
    grey16 = (np.asarray(photo(seed=6).convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(grey16).save(f["grey16.png"])  # mode I;16
    f["corrupt.jpg"].write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    full = d / "full.jpg"
    photo(seed=7).save(full, quality=95)
    f["truncated.jpg"].write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    f["empty.jpg"].write_bytes(b"")
    png_with_size(f["huge.png"], 20000, 20000)
    png_with_size(f["bomb_warning_zone.png"], 10000, 10000)  # over the limit, under Pillow's own 2x error
    f["folder.jpg"].mkdir()
    os.symlink(d / "nowhere.jpg", f["dangling.jpg"])
    # references for the converted images
    comp = np.asarray(photo(seed=3)).copy()
    comp[:, 160:] = 255
    Image.fromarray(comp, "RGB").save(d / "alpha_expected.png")
    Image.new("RGB", (300, 300), (200, 40, 90)).save(d / "one_pixel_expected.png")
    f["_dir"] = d
    return f


@pytest.fixture(scope="module")
def mixed(files, extractor):
    """One extraction over good and bad files interleaved; returns (result, names in order, seconds)."""
    order = [n for pair in zip(GOOD, BAD, strict=True) for n in pair]
    start = time.perf_counter()
    res = extractor.extract([files[n] for n in order])
    return res, order, time.perf_counter() - start


def row(mixed, name: str) -> np.ndarray:
    res, order, _ = mixed
    i = order.index(name)
    assert res.ok[i], res.errors.get(name)
    return res.features[int(res.ok[:i].sum())]


def expected(files, extractor, name: str) -> np.ndarray:
    got = extractor.extract([files["_dir"] / name])
    assert got.ok.all(), got.errors
    return got.features[0]


def test_the_batch_goes_on(mixed):
    res, order, _ = mixed
    assert res.ok.tolist() == [n in GOOD for n in order]
    assert sorted(res.errors) == sorted(BAD)
    assert res.features.shape == (len(GOOD), 1280) and np.isfinite(res.features).all()
    np.testing.assert_allclose(np.linalg.norm(res.features, axis=1), 1.0, atol=1e-5)


def test_contract_of_vsekit_testing(files):
    testing.check_image_feature_extractor("efficientnet_lite0", {"progress": False, "workers": 0},
                                          [files["good1.jpg"], files["one_pixel.png"]],
                                          bad=[files["corrupt.jpg"], files["empty.jpg"]])


def test_corrupt_file(mixed):
    assert "not an image file Pillow can read" in mixed[0].errors["corrupt.jpg"]


def test_truncated_file(mixed):
    assert "truncated" in mixed[0].errors["truncated.jpg"]


def test_zero_byte_file(mixed):
    assert mixed[0].errors["empty.jpg"] == "empty file (0 bytes)"


def test_huge_image_refused_before_decoding(mixed):
    msg = mixed[0].errors["huge.png"]
    assert msg.startswith("too large") and "decompression-bomb guard" in msg
    assert mixed[2] < 120  # nothing tried to decode 400 million pixels


def test_image_just_over_the_limit_refused(mixed):
    msg = mixed[0].errors["bomb_warning_zone.png"]
    assert "10000x10000 = 100,000,000 pixels" in msg and "decompression-bomb guard" in msg


def test_bomb_guard_stays_pillows(files, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    with pytest.raises(Exception, match="decompression-bomb"):
        load_rgb(files["good1.jpg"])


@pytest.mark.parametrize("name, why", [("missing.jpg", "no such file"), ("dangling.jpg", "no such file"),
                                       ("folder.jpg", "is a folder")])
def test_unreadable_files(mixed, name, why):
    assert why in mixed[0].errors[name]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_file_without_read_permission(tmp_path, extractor):
    p = tmp_path / "locked.jpg"
    photo().save(p)
    p.chmod(0)
    res = extractor.extract([p])
    assert not res.ok[0] and "permission denied" in res.errors["locked.jpg"]


def test_alpha_is_composited_onto_white(mixed, files, extractor):
    assert cos(row(mixed, "alpha.png"), expected(files, extractor, "alpha_expected.png")) > 0.999


def test_cmyk_jpeg_is_converted(mixed, files):
    with Image.open(files["cmyk.jpg"]) as im:
        assert im.mode == "CMYK"
    assert np.isfinite(row(mixed, "cmyk.jpg")).all()
    rgb = np.asarray(load_rgb(files["cmyk.jpg"]), dtype=float)  # colours kept, not inverted
    assert np.abs(rgb - np.asarray(photo(seed=4), dtype=float)).mean() < 3


def test_one_pixel_image_is_enlarged(mixed, files, extractor):
    assert cos(row(mixed, "one_pixel.png"), expected(files, extractor, "one_pixel_expected.png")) > 0.999


def test_other_modes_are_used(mixed):
    for name in ("strip.png", "palette.gif", "grey16.png", "good2.webp"):
        assert np.isfinite(row(mixed, name)).all()


def test_grey16_scaled_not_clipped(files):
    im = load_rgb(files["grey16.png"])
    assert im.mode == "RGB" and 20 < np.asarray(im).mean() < 235
