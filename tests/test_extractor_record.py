"""The image feature extractor travels with the features: ``_extractor.json`` -> the run's checkpoints -> ``--image``.

Nothing is guessed: a model that records no extractor asks for ``--extractor``.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import MINI, mini_slice, tiny_spec_text

import vsekit
from vsekit import retrieval, testing
from vsekit.cli import cli
from vsekit.cli.retrieval import add_commands
from vsekit.extract import FeatureFile
from vsekit.image.base import Extracted, ImageFeatureExtractor
from vsekit.image.linear import LinearImageEncoder

add_commands(cli)

SIZES = {"train": 200, "dev": 50, "test": 50}


class RowsByName(ImageFeatureExtractor):
    """A stand-in extractor: image ``row_N.jpg`` has feature row N of f8k_mini's test split."""

    @attrs.frozen
    class Config:
        batch_size: int = 8

    def extract(self, paths):
        feats = np.load(MINI / "test_ims.npy").astype(np.float32)
        names = [Path(p).name for p in paths]
        ok = np.array([n.startswith("row_") for n in names])
        rows = [feats[int(Path(n).stem[4:])] for n, good in zip(names, ok, strict=True) if good]
        errors = {n: "not a row image" for n, good in zip(names, ok, strict=True) if not good}
        return Extracted(np.array(rows, np.float32).reshape(len(rows), feats.shape[1]), ok, errors)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], obj={}, catch_exceptions=False)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(retrieval.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(retrieval.ENV_MODEL, raising=False)


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory) -> Path:
    """1 tiny epoch on a precomp folder whose feature files carry the record `vsekit extract` writes."""
    root = tmp_path_factory.mktemp("recorded")
    data = mini_slice(root / "data", SIZES)
    for split, n in SIZES.items():
        npy = data / f"{split}_ims.npy"
        ids = (MINI / f"{split}_ids.txt").read_text(encoding="utf-8").splitlines()[:n]
        FeatureFile(npy, np.load(npy), ids, {"extractor": {"type": "rows_by_name", "batch_size": 32},
                                             "dim": 1280}).write()
    spec = root / "spec.toml"
    spec.write_text(tiny_spec_text(data), encoding="utf-8")
    return Path(vsekit.train(spec, root / "run", quiet=True)["run_dir"])


def test_the_run_records_the_features_extractor(recorded_run):
    for name in ("best.json", "last.json"):
        if (recorded_run / name).exists():
            meta = json.loads((recorded_run / name).read_text())
            # the record's extractor, without batch_size (it does not change the numbers)
            assert meta["image_feature_extractor"] == {"type": "rows_by_name"}, name


def test_image_query_uses_the_recorded_extractor(recorded_run, tmp_path):
    img = tmp_path / "row_7.jpg"
    img.write_bytes(b"not really a jpeg")
    with testing.registered("image_feature_extractor", "rows_by_name", RowsByName):
        assert isinstance(retrieval.Retriever.load(recorded_run).extractor, RowsByName)
        by_image = invoke("retrieve", recorded_run, "--image", img, "-k", 10, "--json")  # no --extractor
    assert by_image.exit_code == 0, by_image.output
    # the same query as feature row 7 of the test split: the recorded extractor made the row
    by_row = invoke("retrieve", recorded_run, "--features", MINI / "test_ims.npy", "--row", 7, "-k", 10, "--json")
    assert by_row.exit_code == 0, by_row.output
    hits = json.loads(by_image.stdout)["results"]
    assert len(hits) == 10 and hits == json.loads(by_row.stdout)["results"]


def test_a_model_without_a_record_asks_for_extractor(trained_run, tmp_path):
    """A 1280-d model recording no extractor: one error line naming --extractor (no EfficientNet-Lite0 guess)."""
    img = tmp_path / "photo.jpg"
    img.write_bytes(b"x")
    assert "image_feature_extractor" not in json.loads((trained_run / "best.json").read_text())
    res = invoke("retrieve", trained_run, "--image", img)
    assert res.exit_code == 2, res.output
    err = res.stderr
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "records no image feature extractor" in err and "--extractor NAME" in err and "1280-d" in err
    assert "efficientnet" not in err.lower()
    with testing.registered("image_feature_extractor", "rows_by_name", RowsByName):
        named = invoke("retrieve", trained_run, "--image", tmp_path / "row_3.jpg", "--extractor", "rows_by_name")
    assert named.exit_code == 2 and "row_3.jpg: no such image file" in named.stderr  # --extractor got past the check


def test_a_named_extractor_takes_the_options_the_model_records():
    """--extractor NAME of the extractor the model records means its recorded options (a trunk cut, a crop
    size), not that extractor's defaults; another name gets its own defaults."""
    from vsekit.image_features import extractor_table

    meta = {"image_feature_extractor": {"type": "rows_by_name", "batch_size": 4, "output": "trunk"}}
    assert extractor_table(meta, 9408, "rows_by_name") == {"type": "rows_by_name", "batch_size": 4,
                                                           "output": "trunk"}
    assert extractor_table(meta, 9408, "other") == {"type": "other"}
    assert extractor_table(meta, 9408) == meta["image_feature_extractor"]
    assert extractor_table({}, 1280, "other") == {"type": "other"}


class Picky(LinearImageEncoder):
    """The linear encoder, refusing features of any extractor but ``wanted``."""

    def check_extractor(self, extractor):
        return [] if extractor.get("type") == "wanted" else [f"wants 'wanted' features, not {extractor['type']!r}"]


def test_an_image_encoder_refuses_features_of_another_extractor(recorded_run, tmp_path):
    """run and validate ask the image encoder about the extractor the features record: one error line, before
    any training, and no run folder."""
    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(recorded_run.parent / "data", model__image_encoder={"type": "picky"}))
    with testing.registered("image_encoder", "picky", Picky):
        for command in (["validate", spec], ["run", spec, "--out", tmp_path / "run", "-q"]):
            res = CliRunner().invoke(cli, [str(a) for a in command], obj={})
            assert res.exit_code == 2, res.output
            assert "[model.image_encoder] picky: wants 'wanted' features, not 'rows_by_name'" in res.stderr
        assert not (tmp_path / "run").exists()
