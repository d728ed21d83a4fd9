"""``train.device`` and ``train.precision``: CPU bf16 autocast here; the CUDA paths where a GPU exists.

The CUDA tests skip cleanly on machines without one.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from conftest import threshold

import vsekit
from vsekit import checkpoint
from vsekit.cli import cli
from vsekit.spec import dumps_toml
from vsekit.testing import tiny_spec
from vsekit.training.setup import resolve_device

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def spec_file(tmp_path, **train):
    path = tmp_path / "spec.toml"
    path.write_text(dumps_toml(tiny_spec(train={"max_epochs": 3, **train})), encoding="utf-8")
    return path


def first_loss(run) -> float:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return next(e["loss"] for e in lines if e["event"] == "train")


def test_bf16_autocast_trains_on_cpu_close_to_fp32(tmp_path):
    spec = spec_file(tmp_path, disp_freq=1)
    fp32 = vsekit.train(vsekit.load_spec(spec), tmp_path / "fp32", quiet=True)
    bf16 = vsekit.train(vsekit.load_spec(spec, ["train.precision='bf16'"]), tmp_path / "bf16", quiet=True)
    # same initial weights, same first batch: bf16 rounding (8 bits of mantissa) moves the loss by well under 1%
    assert first_loss(tmp_path / "bf16") == pytest.approx(first_loss(tmp_path / "fp32"), rel=1e-2)
    assert first_loss(tmp_path / "bf16") != first_loss(tmp_path / "fp32")  # autocast was really on
    assert bf16["test"]["rsum"] >= threshold("tiny_infonce_3ep_bf16")  # benchmarks/thresholds.py
    assert bf16["test"]["rsum"] == pytest.approx(fp32["test"]["rsum"], abs=40)
    start = json.loads((tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["precision"] == "bf16"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_fp16_and_cuda_are_refused_on_a_cpu_machine_with_one_line_each(tmp_path):
    spec = spec_file(tmp_path)
    for setting, expected in (("train.precision='fp16' train.device='cpu'",
                               "[train] precision: 'fp16' needs a CUDA device (train.device is 'cpu')"),
                              ("train.precision='fp16' train.device='auto'",
                               "[train] precision: 'fp16' needs a CUDA device (train.device is 'auto', cpu on this "
                               "machine)"),
                              ("train.device='cuda'", "[train] device: 'cuda' requested, but this machine has "
                                                      "no CUDA device")):
        sets = [arg for item in setting.split() for arg in ("--set", item)]
        result = CliRunner().invoke(cli, ["run", str(spec), *sets, "--out", str(tmp_path / "run")], obj={})
        assert result.exit_code == 2, result.output
        assert expected in result.output and "Traceback" not in result.output
        assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_auto_device_trains_on_the_cpu_without_cuda(tmp_path):
    spec = spec_file(tmp_path, max_epochs=1, device="auto")
    vsekit.train(vsekit.load_spec(spec), tmp_path / "run", quiet=True)
    _, meta = checkpoint.read_meta(tmp_path / "run" / "best.json")
    assert meta["step"] > 0


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_training_matches_the_cpu_run(tmp_path, precision):
    spec = spec_file(tmp_path, disp_freq=1)
    cpu = vsekit.train(vsekit.load_spec(spec), tmp_path / "cpu", quiet=True)
    gpu = vsekit.train(vsekit.load_spec(spec, ["train.device='cuda'", f"train.precision='{precision}'"]),
                       tmp_path / "gpu", quiet=True)
    tol = 1e-4 if precision == "fp32" else 2e-2
    assert first_loss(tmp_path / "gpu") == pytest.approx(first_loss(tmp_path / "cpu"), rel=tol)
    assert gpu["test"]["rsum"] >= threshold("tiny_infonce_3ep")  # measured on the CPU: benchmarks/thresholds.py
    assert gpu["test"]["rsum"] == pytest.approx(cpu["test"]["rsum"], abs=40)
    model = vsekit.load_model(tmp_path / "gpu" / "best.json", device="cuda")
    assert next(model.parameters()).is_cuda


@needs_cuda
def test_auto_device_picks_cuda(tmp_path):
    spec = vsekit.load_spec(spec_file(tmp_path, device="auto"))
    assert resolve_device(spec).type == "cuda"
