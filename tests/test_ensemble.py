"""Ensembles (``vsekit eval --ensemble``): an image and a caption score the mean of the members' cosine
similarities. Expected values come from that definition computed directly (a literal rank loop over the
mean similarity matrix), not from vsekit's ranking code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_spec_text
from test_cli import assert_user_error, invoke

import vsekit
from vsekit import api
from vsekit.evaluate import ensemble_embeddings, evaluate_split


@pytest.fixture(scope="module")
def second_run(small_data, tmp_path_factory) -> Path:
    """A second tiny run on the same data as ``trained_run``, another seed and a BoW sentence encoder."""
    root = tmp_path_factory.mktemp("second")
    spec = root / "spec.toml"
    bow = {"type": "bow", "dim_word": 32}
    spec.write_text(tiny_spec_text(small_data, train={"seed": 1}, model__sentence_encoder=bow), encoding="utf-8")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Path(vsekit.train(spec, root / "run", quiet=True)["run_dir"])
    finally:
        torch.set_num_threads(old)


def literal_recalls(sim: np.ndarray, cap2img: np.ndarray) -> dict[str, float]:
    """R@1/5/10 (%) of image annotation and image search from a similarity matrix (images x captions), by loop:
    a query's rank is 1 + the number of candidates scoring strictly higher than its best true match."""
    n_img, n_cap = sim.shape
    i2t = [1 + min(int((sim[i] > sim[i, c]).sum()) for c in np.flatnonzero(cap2img == i)) for i in range(n_img)]
    t2i = [1 + int((sim[:, c] > sim[cap2img[c], c]).sum()) for c in range(n_cap)]
    out = {}
    for prefix, ranks in (("i2t", np.array(i2t)), ("t2i", np.array(t2i))):
        for k in (1, 5, 10):
            out[f"{prefix}_r{k}"] = 100.0 * float((ranks <= k).mean())
    return out


def test_ensemble_scores_are_the_mean_similarity(trained_run, second_run, small_data):
    models = [vsekit.load_model(trained_run), vsekit.load_model(second_run)]
    split = api.precomp_reader(small_data).read("test")
    caps = list(split.captions)
    ims, cap_emb = ensemble_embeddings(models, split, caps)
    mean_sim = np.mean([m.encode_images(split.images) @ m.encode_sentences(caps).T for m in models], axis=0)
    np.testing.assert_allclose(ims @ cap_emb.T, mean_sim, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ims, axis=1), 1.0, atol=1e-5)  # unit rows, as the metric expects

    metrics = evaluate_split(models, split, log_warnings=False)
    expected = literal_recalls(mean_sim, np.asarray(split.cap2img))
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value), key
    assert metrics["protocol"]["ensemble"] == 2
    # the ensemble is not either member: a broken ensemble that evaluated one model would fail here
    singles = [evaluate_split(m, split, log_warnings=False)["rsum"] for m in models]
    assert metrics["rsum"] == pytest.approx(sum(expected.values()))
    assert all(abs(metrics["rsum"] - s) > 1e-6 for s in singles), (metrics["rsum"], singles)


def test_ensemble_of_one_model_twice_is_that_model(trained_run):
    single, _ = api.eval_checkpoint(trained_run, verbose=False, log_warnings=False)
    twice, _ = api.eval_checkpoint([trained_run, trained_run], verbose=False, log_warnings=False)
    for key in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum"):
        assert twice[key] == pytest.approx(single[key]), key
    assert any("given twice" in w for w in twice["warnings"])


def test_cli_ensemble_writes_its_own_result(trained_run, second_run):
    result = invoke("eval", "--ensemble", trained_run, second_run, "-q")
    assert result.exit_code == 0, result.output
    assert "test (ensemble of 2)" in result.stdout
    written = sorted(trained_run.glob("eval_test_ensemble2-*.json"))
    assert len(written) == 1
    record = json.loads(written[0].read_text())
    assert len(record["ensemble"]) == 2 and not any(Path(p).is_absolute() for p in record["ensemble"])
    assert record["protocol"]["ensemble"] == 2
    written[0].unlink()  # trained_run is shared: leave it as it was


def test_cli_several_runs_need_the_flag(trained_run, second_run):
    assert_user_error(invoke("eval", trained_run, second_run), "pass --ensemble")
    assert_user_error(invoke("eval", "--ensemble", trained_run), "two or more runs")


def test_member_trained_on_other_data_is_warned(trained_run, tiny_data, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(tiny_data), encoding="utf-8")
    other = Path(vsekit.train(spec, tmp_path / "other", quiet=True)["run_dir"])
    metrics, _ = api.eval_checkpoint([trained_run, other], verbose=False, log_warnings=False)
    assert any("trained on other data" in w for w in metrics["warnings"]), metrics["warnings"]
