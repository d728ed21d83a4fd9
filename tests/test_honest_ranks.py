"""Honest numbers end to end: ties count against the query, degenerate inputs are reported, a bad
``--folds`` is one error line, and every result file records its data and protocol (issue 11, items 1, 2, 6).

The rank arithmetic itself is checked against literal loops in ``test_metrics_core.py``; here the whole path
(``vsekit eval``, ``evaluate_split``, the run's ``results.json``) is checked on the embedded Flickr8K slice.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import mini_slice, tiny_spec_text
from test_cli import assert_user_error, invoke

from vsekit.api import load_model
from vsekit.metrics import input_warnings
from vsekit.model import encode_images, encode_sentences


@pytest.fixture(scope="module")
def zero_test_data(tmp_path_factory):
    """The ../shared/cases/zero-features-ties input, rebuilt: 50 test images of f8k_mini, every feature row 0."""
    root = mini_slice(tmp_path_factory.mktemp("zero"), {"train": 5, "dev": 5, "test": 50})
    np.save(root / "test_ims.npy", np.zeros_like(np.load(root / "test_ims.npy")))
    spec = root / "spec.toml"
    spec.write_text(f'name = "zero"\n[data]\ntype = "precomp"\ndir = "{root.as_posix()}"\n'
                    '[model]\ndim = 32\n[loss]\ntype = "contrastive"\n', encoding="utf-8")
    return spec


def test_zero_features_rank_at_or_below_chance_and_warn(trained_run, zero_test_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    result = invoke("eval", run, "--data", zero_test_data, "-q")
    assert result.exit_code == 0, result.output
    assert "warning: test image features: 50 of 50 rows are all-zero" in result.stderr
    files = sorted(run.glob("eval_test_spec-*.json"))
    assert len(files) == 1 and not (run / "eval_test.json").exists()
    got = json.loads(files[0].read_text())
    # Every image embeds to the same vector, so every image ties with every other for every caption:
    # each caption's own image is ranked last of 50 (0-based rank 49 = 50 - 1 others scoring >= it).
    assert got["t2i_r1"] == got["t2i_r5"] == got["t2i_r10"] == 0.0 and got["t2i_medr"] == 50
    # Image annotation: all 50 rows of the score matrix are the same row; a literal loop over it.
    model = load_model(run)
    import vsekit

    split = vsekit.api.resolve_split(model, str(zero_test_data), "test")
    ims, caps = encode_images(model, split.images), encode_sentences(model, split.captions)
    assert np.unique(ims, axis=0).shape[0] == 1
    ranks = []
    for i in range(50):
        d = (caps.astype(np.float64) @ ims[i].astype(np.float64))
        own = split.cap2img == i
        ranks.append(int(np.sum(d[~own] >= d[own].max())))
    ranks = np.array(ranks)
    assert got["i2t_r1"] == pytest.approx(100 * np.mean(ranks < 1))
    assert got["i2t_r10"] == pytest.approx(100 * np.mean(ranks < 10))
    assert got["i2t_medr"] == np.floor(np.median(ranks)) + 1
    assert got["rsum"] < 2 * 16.9  # chance_rsum(50) = 56.6; the zero features sit far below it
    assert any("all-zero" in w for w in got["warnings"])
    assert got["protocol"] == {"ties": "pessimistic", "folds": 1, "n_images": 50, "n_captions": 250,
                               "caps_per_image": {"min": 5, "max": 5}, "caps_per_image_eval": 5,
                               "n_captions_eval": 250, "images_with_fewer": 0, "captions_dropped": 0,
                               "coco_1k_and_5k": False}
    # the data spec as a path relative to the eval file's folder (no path of this machine is recorded)
    assert (files[0].parent / got["data"]["spec"]).resolve() == Path(zero_test_data).resolve()
    assert got["data"]["data"]["type"] == "precomp"


def test_eval_result_files_never_overwrite_another_protocol(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    assert invoke("eval", run, "-q").exit_code == 0
    own = json.loads((run / "eval_test.json").read_text())
    assert invoke("eval", run, "-q", "--ties", "reference").exit_code == 0
    ref = json.loads((run / "eval_test_ties-reference.json").read_text())
    assert json.loads((run / "eval_test.json").read_text()) == own  # untouched
    assert own["protocol"]["ties"] == "pessimistic" and ref["protocol"]["ties"] == "reference"
    assert own["data"]["spec"] == "own" and own["data"]["data"]["type"] == "precomp"
    # trained float embeddings hold no ties: both rules give the same table
    assert {k: v for k, v in ref.items() if k != "protocol"} == {k: v for k, v in own.items() if k != "protocol"}
    assert invoke("eval", run, "-q", "--folds", "5").exit_code == 0
    assert json.loads((run / "eval_test_folds5.json").read_text())["protocol"]["folds"] == 5


@pytest.mark.parametrize(("folds", "needle"), [
    ("7", "50 images do not split into 7 equal folds; fold counts that work: 1, 2, 5"),
    ("10", "10 folds of 50 images hold 5 images each, fewer than the 10 a fold needs"),
])
def test_bad_folds_is_one_error_line(trained_run, tmp_path, folds, needle):
    target = tmp_path / "m.json"
    assert_user_error(invoke("eval", trained_run, "--folds", folds, "-o", target), needle)
    assert not target.exists()


def test_bad_folds_in_a_spec_is_refused_before_training(small_data, spec_file, tmp_path):
    spec = spec_file(small_data, eval={"folds": 25})
    assert_user_error(invoke("run", spec, "--out", tmp_path / "out"),
                      "[eval] folds: 25 does not fit the 50 'test' images", "fewer than the 10")
    assert not (tmp_path / "out").exists()


def test_input_warnings_name_each_problem():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((40, 6)).astype(np.float32)
    assert input_warnings(feats) == []
    feats[3] = 0
    feats[7] = 0.25
    feats[9] = feats[8]
    feats[11] = feats[8]
    found = input_warnings(feats, "dev image features")
    assert len(found) == 3
    assert found[0].startswith("dev image features: 1 of 40 rows are all-zero (rows 3)")
    assert found[1].startswith("dev image features: 1 of 40 rows are constant (every entry equal) (rows 7)")
    assert found[2].startswith("dev image features: 2 of 40 rows repeat an earlier row (1 distinct rows")
    tiny = input_warnings(feats[:10] + np.arange(10)[:, None], "test image features")
    assert tiny[0].startswith("test image features: only 10 images") and len(input_warnings(feats[:11])) == 3


def test_run_results_record_the_rule_and_the_warnings(mini_dup_run):
    results = json.loads((mini_dup_run / "results.json").read_text())
    assert results["test"]["protocol"]["ties"] == "pessimistic"
    assert results["valid"]["protocol"]["ties"] == "pessimistic"
    assert any("repeat an earlier row" in w for w in results["warnings"])
    # the metrics log's valid and test events hold plain numbers only
    events = [json.loads(line) for line in (mini_dup_run / "metrics.jsonl").read_text().splitlines()]
    scored = [e for e in events if e.get("event") in ("valid", "test")]
    assert len(scored) == 2
    for e in scored:
        assert not any(isinstance(v, (list, dict)) for v in e.values()), e


@pytest.fixture(scope="module")
def mini_dup_run(tmp_path_factory):
    """A 1-epoch tiny run whose test split repeats one image's features in 5 rows."""
    import vsekit

    root = mini_slice(tmp_path_factory.mktemp("dup"), {"train": 100, "dev": 20, "test": 20})
    feats = np.load(root / "test_ims.npy")
    feats[1:6] = feats[0]
    np.save(root / "test_ims.npy", feats)
    spec = root / "spec.toml"
    spec.write_text(tiny_spec_text(root), encoding="utf-8")
    return vsekit.train(spec, root / "run", quiet=True)["run_dir"] and root / "run"


def test_eval_data_may_be_a_spec_of_data_alone(trained_run, zero_test_data, tmp_path):
    """`vsekit eval --data` needs only a [data] table (the model comes from the run)."""
    data_only = tmp_path / "data.toml"
    data_only.write_text(zero_test_data.read_text().split("[model]")[0], encoding="utf-8")
    assert "[loss]" not in data_only.read_text() and "[data]" in data_only.read_text()
    target = tmp_path / "m.json"
    result = invoke("eval", trained_run, "--data", data_only, "-q", "-o", target)
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text())["protocol"]["n_images"] == 50
