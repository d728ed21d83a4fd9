"""Shared fixtures for the core test suite: small data folders, spec writers, a trained tiny run."""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vsekit import testing
from vsekit.data.readers import EMBEDDED_ROOT

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
MINI = EMBEDDED_ROOT / "f8k_mini"
THRESHOLDS = REPO / "benchmarks" / "results" / "thresholds.json"
#: the real Flickr8K data root, or None (tests ask for it through the ``shared_data`` fixture)
SHARED = testing.find_shared_data("flickr8k/captions.txt", "flickr8k-effnet-lite0/test_ims.npy")
APT_CHROMIUM = "apt-get install -y chromium"


def chromium() -> str:
    """The headless Chromium to test pages with: ``$VSEKIT_CHROMIUM``, else the first of the usual names on PATH;
    none skips the calling test (fails it under ``CI=true``)."""
    for name in (os.environ.get("VSEKIT_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)  # type: ignore[return-value]
    testing.missing_test_input(f"headless Chromium not found: `{APT_CHROMIUM}` (Debian) or set VSEKIT_CHROMIUM")


@functools.cache
def measured_thresholds() -> dict:
    """``benchmarks/results/thresholds.json``: per trained configuration, working vs broken runs and the pass mark."""
    return json.loads(THRESHOLDS.read_text(encoding="utf-8"))


def threshold(config: str, metric: str = "test_rsum") -> float:
    """The measured pass mark of ``metric`` (``SPLIT_KEY``: ``test_rsum``, ``test_t2i_medr``...) for ``config``.

    Midway between the worst working run and the best broken run (untrained
    weights, shuffled pairs) of ``python benchmarks/thresholds.py``; a working
    run is at or above it (at or below for median ranks). Rerun the script
    when a configuration changes.
    """
    configs = measured_thresholds()["configs"]
    if config not in configs or metric not in configs[config]["metrics"]:
        raise KeyError(f"{THRESHOLDS}: no {metric!r} measured for {config!r}; run benchmarks/thresholds.py")
    m = configs[config]["metrics"][metric]
    assert m["separates"], f"{THRESHOLDS}: {config} {metric}: working and broken runs overlap"
    return float(m["threshold"])


@pytest.fixture(autouse=True)
def _few_threads():
    """Tests share two cores: keep torch from oversubscribing them."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def shared_data() -> Path:
    """The real Flickr8K data and its features; skips when absent, fails under CI=true (testing.shared_data)."""
    return testing.shared_data("flickr8k/captions.txt", "flickr8k-effnet-lite0/test_ims.npy")


def write_precomp(folder: Path, split: str, captions: list[str], feats: np.ndarray, prefix: str = "") -> Path:
    """Write ``[prefix]split_caps.txt`` (one caption a line) and ``[prefix]split_ims.npy``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{prefix}{split}_caps.txt").write_text("".join(c + "\n" for c in captions), encoding="utf-8")
    np.save(folder / f"{prefix}{split}_ims.npy", feats)
    return folder


def mini_slice(dest: Path, n_images: dict[str, int]) -> Path:
    """Copy the first ``n`` images (and their 5 captions each) of every f8k_mini split into ``dest``."""
    for split, n in n_images.items():
        caps = (MINI / f"{split}_caps.txt").read_text(encoding="utf-8").splitlines()[: 5 * n]
        feats = np.load(MINI / f"{split}_ims.npy")[:n]
        write_precomp(dest, split, caps, feats)
    return dest


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A precomp folder: 200 train, 50 dev, 50 test images of f8k_mini (row per image, no prefix)."""
    return mini_slice(tmp_path_factory.mktemp("small_data"), {"train": 200, "dev": 50, "test": 50})


def tiny_spec_text(data_dir: str | Path, **sections: dict) -> str:
    """A small, fast spec (dim 32, GRU dim_word 16, contrastive, 1 epoch) as TOML; ``sections`` update tables."""
    tables: dict[str, dict] = {
        "data": {"type": "precomp", "dir": str(data_dir)},
        "model": {"dim": 32},
        "model.sentence_encoder": {"type": "gru", "dim_word": 16},
        "loss": {"type": "contrastive", "margin": 0.2},
        "train": {"max_epochs": 1, "batch_size": 64, "lr": 0.002, "seed": 0, "device": "cpu"},
    }
    for name, values in sections.items():
        tables.setdefault(name.replace("__", "."), {}).update(values)
    from vsekit.spec import dumps_toml

    lines = ['name = "tiny"']
    for name, values in tables.items():
        body = dumps_toml(values).strip()
        lines.append(f"\n[{name}]\n{body}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def spec_file(tmp_path):
    """``spec_file(data_dir, name="spec.toml", **sections)`` writes a tiny spec and returns its path."""

    def make(data_dir: str | Path, name: str = "spec.toml", **sections: dict) -> Path:
        path = tmp_path / name
        path.write_text(tiny_spec_text(data_dir, **sections), encoding="utf-8")
        return path

    return make


@pytest.fixture(scope="session")
def trained_run(small_data, tmp_path_factory) -> Path:
    """One tiny run (1 epoch on ``small_data``) for the checkpoint and CLI tests; do not modify it."""
    import vsekit

    root = tmp_path_factory.mktemp("trained")
    spec = root / "spec.toml"
    spec.write_text(tiny_spec_text(small_data), encoding="utf-8")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = vsekit.train(spec, root / "run", quiet=True)
    finally:
        torch.set_num_threads(old)
    return Path(results["run_dir"])


# the bad-input harness's fixtures (tests/bad_input_harness.py)
@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return mini_slice(tmp_path_factory.mktemp("tiny_data"), {"train": 20, "dev": 10, "test": 10})


@pytest.fixture
def env(tmp_path, tiny_data, trained_run, small_data):
    from bad_input_harness import Env

    return Env(tmp_path, tiny_data, trained_run, small_data)
