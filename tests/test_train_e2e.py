"""End to end: train through the Python API and the CLI, then check what the run folder holds."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import MINI, threshold, tiny_spec_text

import vsekit
from vsekit.cli import cli
from vsekit.io import sha256_file
from vsekit.spec import from_dict

EPOCHS = 1
METRIC_KEYS = ("i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "rsum")


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
    """1 epoch on the embedded f8k_mini (1000 train / 200 dev / 200 test images) with a tiny GRU model."""
    root = tmp_path_factory.mktemp("mini_run")
    spec = root / "mini.toml"
    spec.write_text(tiny_spec_text("vsekit:f8k_mini", train={"max_epochs": EPOCHS, "batch_size": 128, "lr": 0.005,
                                                              "disp_freq": 5}))
    results = vsekit.train(spec, root / "run", quiet=True)
    return spec, Path(results["run_dir"]), results


def test_learns_well_above_chance(mini_run):
    _, _run, results = mini_run
    assert results["test"]["split"] == "test"
    # pass marks measured against untrained and shuffled-pair models: benchmarks/thresholds.py
    assert results["test"]["rsum"] >= threshold("mini_gru_contrastive_1ep"), results["test"]["rsum"]
    assert results["valid"]["rsum"] >= threshold("mini_gru_contrastive_1ep", "valid_rsum")
    assert results["steps"] == EPOCHS * int(np.ceil(5000 / 128))


def test_run_folder_contents(mini_run):
    spec_path, run, results = mini_run
    for name in ("spec.toml", "provenance.json", "vocab.json", "metrics.jsonl", "best.safetensors", "best.json",
                 "results.json", "results.csv"):
        assert (run / name).is_file(), name
    # spec.toml is the resolved spec and loads back to the same spec
    saved = from_dict(tomllib.loads((run / "spec.toml").read_text()), source=str(spec_path))
    assert saved == vsekit.load_spec(spec_path)
    # vocabulary: train captions only
    vocab = json.loads((run / "vocab.json").read_text())
    train_words = {w for line in (MINI / "train_caps.txt").read_text().splitlines() for w in line.split()}
    assert vocab["words"][:2] == ["<eos>", "<unk>"] and set(vocab["words"][2:]) == train_words
    # results.json and results.csv agree
    on_disk = json.loads((run / "results.json").read_text())
    assert on_disk["test"] == results["test"]
    rows = list(csv.DictReader((run / "results.csv").read_text().splitlines()))
    assert [r["split"] for r in rows] == ["dev", "test"]
    for k in METRIC_KEYS:
        assert float(rows[1][k]) == pytest.approx(results["test"][k])
        assert float(rows[0][k]) == pytest.approx(results["valid"][k])
    best = json.loads((run / "best.json").read_text())
    assert best["metrics"]["rsum"] == pytest.approx(results["valid"]["rsum"])
    assert best["step"] == results["best_step"]


def test_provenance(mini_run):
    _, run, _ = mini_run
    prov = json.loads((run / "provenance.json").read_text())
    files = {Path(p).name: h for p, h in prov["data_files"].items()}
    for split in ("train", "dev", "test"):
        for kind in ("caps.txt", "ims.npy"):
            name = f"{split}_{kind}"
            assert files[name] == sha256_file(MINI / name), name
    versions = prov["versions"]
    assert versions["vsekit"] == vsekit.__version__
    for pkg in ("python", "torch", "numpy"):
        assert versions[pkg]
    assert prov["data_report"]["train"]["layout"] == "row-per-image"


def test_metrics_log_events(mini_run):
    _, run, results = mini_run
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "test"
    assert {"train", "valid", "test", "epoch"} <= set(kinds)
    assert "stall" not in kinds  # it learns (test_learns_well_above_chance); tests/test_stall.py: a run that does not
    valid = [e for e in events if e["event"] == "valid"]
    assert len(valid) == EPOCHS and max(e["rsum"] for e in valid) == pytest.approx(results["valid"]["rsum"])
    train = [e for e in events if e["event"] == "train"]
    assert all(np.isfinite(e["loss"]) for e in train)
    steps = [e["step"] for e in train]
    assert steps == sorted(steps)
    test = events[-1]
    assert test["rsum"] == pytest.approx(results["test"]["rsum"])
    assert events[0]["train_captions"] == 5000 and events[0]["skipped_over_maxlen_w"] == 0


def test_seeded_runs_repeat(small_data, tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(tiny_spec_text(small_data, train={"seed": 3}))
    a = vsekit.train(spec, tmp_path / "a", quiet=True)
    b = vsekit.train(spec, tmp_path / "b", quiet=True)
    for k in METRIC_KEYS:
        assert a["test"][k] == b["test"][k], k
    assert a["valid"] == b["valid"]
    def log(r):
        return [json.loads(x).get("loss") for x in (Path(r["run_dir"]) / "metrics.jsonl").read_text().splitlines()]

    assert log(a) == log(b)
    from safetensors.torch import load_file

    wa, wb = load_file(tmp_path / "a" / "best.safetensors"), load_file(tmp_path / "b" / "best.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_cli_seeds_summary(small_data, tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(tiny_spec_text(small_data, train={"seed": 5}))
    out = tmp_path / "multi"
    result = CliRunner().invoke(cli, ["run", str(spec), "--seeds", "2", "--out", str(out)], obj={},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [5, 6]
    tests = [json.loads((out / f"seed{s}" / "results.json").read_text())["test"] for s in (5, 6)]
    for k in METRIC_KEYS:
        vals = [t[k] for t in tests]
        assert summary["mean"][k] == pytest.approx(np.mean(vals))
        assert summary["std"][k] == pytest.approx(np.std(vals, ddof=1))
    assert tests[0] != tests[1]  # different seeds, different models
    assert "mean of 2 seeds" in result.stdout and "±" in result.stdout
    assert f"summary: {out / 'summary.json'}" in result.stdout


def test_maxlen_w_skips_and_counts(small_data, tmp_path):
    maxlen = 9
    lengths = [len(line.split()) for line in (small_data / "train_caps.txt").read_text().splitlines()]
    n_long = sum(n > maxlen for n in lengths)
    assert 0 < n_long < len(lengths)
    spec = tmp_path / "s.toml"
    spec.write_text(tiny_spec_text(small_data, train={"maxlen_w": maxlen}))
    r = vsekit.train(spec, tmp_path / "run", quiet=True)
    assert r["skipped_over_maxlen_w"] == n_long
    assert r["train_captions"] == len(lengths) - n_long
    run = Path(r["run_dir"])
    assert json.loads((run / "provenance.json").read_text())["skipped_over_maxlen_w"] == n_long
    start = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert start["skipped_over_maxlen_w"] == n_long and start["train_captions"] == len(lengths) - n_long
    # batches only hold short captions: steps follow from the kept count
    assert r["steps"] == int(np.ceil((len(lengths) - n_long) / 64)) or r["steps"] == (len(lengths) - n_long) // 64


def test_api_round_trip_of_trained_model(mini_run):
    _, run, results = mini_run
    model = vsekit.load_model(run)
    m = vsekit.evalrank(model, data=vsekit.load_spec(run / "spec.toml"), split="test", verbose=False,
                        print_table=False)
    assert m["rsum"] == pytest.approx(results["test"]["rsum"])


@pytest.mark.slow
def test_real_flickr8k_reader_trains(shared_data, tmp_path):
    """Raw captions.txt + splits + the reference features through the flickr8k reader, 1 epoch."""
    spec = tmp_path / "f8k.toml"
    spec.write_text(
        'name = "f8k"\n[data]\ntype = "flickr8k"\n'
        f'root = "{shared_data / "flickr8k"}"\n'
        f'[data.features]\ntype = "precomputed"\ndir = "{shared_data / "flickr8k-effnet-lite0"}"\n'
        '[model]\ndim = 64\n[model.sentence_encoder]\ntype = "gru"\ndim_word = 32\n'
        '[loss]\ntype = "contrastive"\n[train]\nmax_epochs = 1\nbatch_size = 128\nlr = 0.002\n'
    )
    r = vsekit.train(spec, tmp_path / "run", quiet=True)
    assert r["train_captions"] == 30000
    assert r["test"]["rsum"] >= threshold("real_f8k_gru_contrastive_1ep"), r["test"]["rsum"]
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert prov["data_report"]["test"]["images"] == 1000
    names = {Path(p).name for p in prov["data_files"]}
    assert {"captions.txt", "test.txt", "test_ims.npy", "test_ids.txt"} <= names
