"""Multi-process training: ``torchrun --nproc_per_node 2`` (gloo, CPU) against one process on the same global batch.

Each rank takes a contiguous share of every batch; the loss is computed on the
gathered global batch. So the losses logged at every step and the weights at
the end must equal a one-process run's to float tolerance. ``batch_size`` 25
gives the ranks unequal shares (13 + 12), exercising the padded gather.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import vsekit
from vsekit.spec import dumps_toml
from vsekit.testing import tiny_dataset, tiny_spec

HERE = Path(__file__).parent
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("ddp") / "data", train=40, dev=20, test=20)


def write_spec(folder: Path, data: Path, loss: dict, **train) -> Path:
    spec = tiny_spec(data={"type": "precomp", "dir": str(data)}, loss=loss,
                     train={"batch_size": 25, "max_epochs": 2, "disp_freq": 1, "lr": 0.002, **train})
    path = folder / "spec.toml"
    path.write_text(dumps_toml(spec), encoding="utf-8")
    return path


def torchrun(*args, env: dict | None = None, script: list[str] | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 -m vsekit ARGS`` (the module torchrun itself runs)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *(script or ["-m", "vsekit"]), *map(str, args)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300)


def train_losses(run: Path) -> np.ndarray:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return np.array([e["loss"] for e in lines if e["event"] == "train"])


def weights(run: Path, name: str = "last") -> dict[str, torch.Tensor]:
    t = load_file(run / f"{name}.safetensors")
    return {k: v for k, v in t.items() if k.startswith(("sentence_encoder.", "image_encoder.", "loss."))}


def moments(run: Path) -> dict[str, torch.Tensor]:
    """Adam's running gradient means: they compare the gradients themselves, unamplified."""
    return {k: v for k, v in load_file(run / "last.safetensors").items() if k.endswith(".exp_avg")}


def assert_same_weights(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert sorted(a) == sorted(b)
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < atol, worst


# Adam's first steps move each weight by about lr * g / (|g| + 1e-8): where a gradient component is
# near zero (max-violation's hinge zeroes most paths), float rounding of the summation order is
# amplified up to lr. The gradients (Adam's moments) still agree to 1e-6; InfoNCE's weights to 1e-5.
@pytest.mark.parametrize("loss, weight_atol", [({"type": "infonce"}, 1e-5),
                                               ({"type": "max_violation", "margin": 0.2}, 1e-4)],
                         ids=["infonce", "max_violation"])
def test_two_processes_train_like_one_on_the_global_batch(data, tmp_path, loss, weight_atol):
    spec = write_spec(tmp_path, data, loss)
    one = vsekit.train(vsekit.load_spec(spec), tmp_path / "one", quiet=True)
    proc = torchrun("run", spec, "--out", tmp_path / "two", "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    l1, l2 = train_losses(tmp_path / "one"), train_losses(tmp_path / "two")
    assert len(l1) == len(l2) == 16  # 2 epochs of 8 batches of 25 captions
    assert abs(l1[0] - l2[0]) < 1e-5  # step 1: the same loss on the same global batch
    np.testing.assert_allclose(l2, l1, atol=1e-4)
    assert l1.std() > 0.05  # it trained: the loss moved
    assert_same_weights(moments(tmp_path / "one"), moments(tmp_path / "two"), atol=1e-6)
    assert_same_weights(weights(tmp_path / "one"), weights(tmp_path / "two"), atol=weight_atol)
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["test"]["rsum"] == pytest.approx(one["test"]["rsum"], abs=1e-6)
    assert two["best_step"] == one["best_step"]
    prov = json.loads((tmp_path / "two" / "provenance.json").read_text())
    assert prov["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert proc.stdout.count("rsum") == 1  # only rank 0 prints the table


def test_a_killed_two_process_run_resumes_to_the_one_process_weights(data, tmp_path):
    spec = write_spec(tmp_path, data, {"type": "contrastive", "margin": 0.2}, save_freq=3)
    vsekit.train(vsekit.load_spec(spec), tmp_path / "one", quiet=True)
    run = tmp_path / "two"
    crashed = torchrun("run", spec, "--out", run, "-q", env={"VSEKIT_TEST_CRASH_AT": "5"},
                       script=[str(HERE / "_ddp_crash.py")])
    assert crashed.returncode != 0
    assert json.loads((run / "last.json").read_text())["step"] == 3  # the save_freq state, before the crash
    assert not (run / "results.json").exists()
    resumed = torchrun("run", spec, "--out", run, "--resume", "-q")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(weights(tmp_path / "one"), weights(run))
    np.testing.assert_allclose(train_losses(run), train_losses(tmp_path / "one"), atol=1e-4)


def test_a_user_error_stops_every_rank_with_one_message_and_writes_nothing(data, tmp_path):
    spec = write_spec(tmp_path, data, {"type": "infonce"})
    run = tmp_path / "taken"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    proc = torchrun("run", spec, "--out", run, "-q")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {run}: run folder exists and is not empty; pass --force to replace it, "
                      f"--resume to continue it, or choose another with --out"], proc.stderr[-3000:]
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
