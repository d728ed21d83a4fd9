"""Registration, configuration and preprocessing of ``efficientnet_lite0``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps
from test_bad_images import photo
from vsekit_efficientnet.extractor import EfficientNetLite0
from vsekit_efficientnet.pixels import crops, resized_size

from vsekit import registry, spec
from vsekit.cli import cli
from vsekit.errors import SpecError


def test_registered_through_the_entry_point():
    assert registry.get("image_feature_extractor", "efficientnet_lite0") is EfficientNetLite0
    out = CliRunner().invoke(cli, ["plugins", "--json"], obj={})
    plugins = {p["name"]: p for p in json.loads(out.output)["plugins"]}
    assert plugins["efficientnet"]["components"]["image_feature_extractor"] == ["efficientnet_lite0"]


def component(tmp_path, **options):
    return spec.build_component("image_feature_extractor", {"type": "efficientnet_lite0", **options}, "data.features",
                                tmp_path)


def test_config_from_a_spec_table(tmp_path):
    c = component(tmp_path, ten_crop=True, batch_size=8, weights="w.pth")
    assert c.config.ten_crop and c.config.batch_size == 8 and c.config.weights == str(tmp_path / "w.pth")
    assert c.build().check() == [f"{tmp_path / 'w.pth'}: no such weights file"]
    assert component(tmp_path).build().check() == []


@pytest.mark.parametrize("options, needle", [({"resize": 200}, "resize"), ({"crop": 0}, "crop"),
                                             ({"ten_crops": True}, "ten_crops"), ({"batch_size": "8"}, "batch_size"),
                                             ({"view": 9}, "set ten_crop = true"),
                                             ({"ten_crop": True, "view": 10}, "expected a view 0..9")])
def test_bad_config_refused(tmp_path, options, needle):
    with pytest.raises(spec.SpecProblems) as exc:
        component(tmp_path, **options)
    assert any(needle in p for p, _ in exc.value.problems) or needle in str(exc.value.problems)


def test_bad_config_in_a_spec_is_one_readable_error(tmp_path):
    raw = {"data": {"type": "flickr8k", "root": ".", "features": {"type": "efficientnet_lite0", "resize": 100}},
           "model": {}, "loss": {"type": "infonce"}}
    with pytest.raises(SpecError, match=r"resize: expected 0 \(no resize\) or a size >= crop \(224\), got 100"):
        spec.from_dict(raw, base=tmp_path)


def test_resized_size_keeps_aspect():
    assert resized_size(500, 375, 256) == (341, 256)
    assert resized_size(224, 224, 256) == (256, 256)
    assert resized_size(1, 1, 256) == (256, 256)


def test_crops_match_resize_then_crop():
    im = photo(500, 375)
    got = crops(im, 256, 224)[0].astype(int)
    full = im.resize((341, 256), Image.Resampling.BILINEAR)
    want = np.asarray(full.crop((58, 16, 282, 240))).astype(int)
    assert got.shape == (224, 224, 3) and np.abs(got - want).max() <= 1


def test_no_resize_when_shorter_side_is_already_256():
    im = photo(256, 300)
    assert np.array_equal(crops(im, 256, 224)[0], np.asarray(im.crop((16, 38, 240, 262))))


def test_ten_crop_layout():
    im = photo(300, 256)
    c = crops(im, 256, 224, ten_crop=True)
    assert c.shape == (10, 224, 224, 3)
    a = np.asarray(im)
    assert np.array_equal(c[0], a[:224, :224]) and np.array_equal(c[3], a[-224:, -224:])
    assert np.array_equal(c[4], a[16:240, 38:262])  # centre
    assert np.array_equal(c[5], c[0][:, ::-1]) and np.array_equal(c[9], c[4][:, ::-1])  # mirrors


def test_resize_zero_keeps_size_and_enlarges_small_images():
    assert np.array_equal(crops(photo(400, 300), None, 224)[0], np.asarray(photo(400, 300).crop((88, 38, 312, 262))))
    assert crops(photo(100, 50), None, 224).shape == (1, 224, 224, 3)


def test_ten_crop_features(tmp_path, extractor):
    p = tmp_path / "a.jpg"
    photo(400, 300).save(p)
    ten = EfficientNetLite0(EfficientNetLite0.Config(ten_crop=True, progress=False, workers=0))
    ten._model = extractor.model()  # the same network: load it once
    f10, f1 = ten.extract([p]).features[0], extractor.extract([p]).features[0]
    assert abs(np.linalg.norm(f10) - 1) < 1e-5 and 0.8 < f10 @ f1 < 0.9999


def test_one_view_is_that_crops_row(tmp_path, extractor):
    p, m = tmp_path / "a.png", tmp_path / "mirrored.png"
    photo(300, 256).save(p)  # no resize, and the centre crop sits 38 px from either side
    ImageOps.mirror(Image.open(p)).save(m)
    net = extractor.model()
    rows = []
    for view in range(10):
        one = EfficientNetLite0(EfficientNetLite0.Config(ten_crop=True, view=view, progress=False, workers=0))
        one._model = net
        rows.append(one.extract([p]).features[0])
    centre, mirrored = extractor.extract([p, m]).features
    np.testing.assert_allclose(rows[4], centre, atol=1e-5)  # view 4: the centre crop
    np.testing.assert_allclose(rows[9], mirrored, atol=1e-5)  # view 9: the mirrored centre crop
    assert rows[9] @ rows[4] < 0.9999 and len({r.tobytes() for r in rows}) == 10  # ten different rows
    ten = EfficientNetLite0(EfficientNetLite0.Config(ten_crop=True, progress=False, workers=0))
    ten._model = net
    mean = np.mean(rows, axis=0)  # ten_crop averages the views (before normalising each): close, not equal
    assert mean @ ten.extract([p]).features[0] / np.linalg.norm(mean) > 0.999


def test_batches_do_not_change_the_numbers(tmp_path, extractor):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        photo(300 + 20 * i, 260, seed=i).save(paths[-1])
    one = EfficientNetLite0(EfficientNetLite0.Config(batch_size=2, workers=3, progress=False))
    one._model = extractor.model()
    np.testing.assert_allclose(one.extract(paths).features, extractor.extract(paths).features, atol=1e-5)


def test_progress_bar_can_be_silenced(tmp_path, extractor, capsys):
    p = tmp_path / "a.png"
    photo().save(p)
    extractor.extract([p])
    assert capsys.readouterr().err == ""
    loud = EfficientNetLite0(EfficientNetLite0.Config(progress=True))
    loud._model = extractor.model()
    loud.extract([p])
    assert "efficientnet_lite0" in capsys.readouterr().err
