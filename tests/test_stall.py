"""Training that goes nowhere: after each epoch, a warning line and a ``stall`` event in ``metrics.jsonl``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, tiny_spec_text

from vsekit.metrics import chance_rsum
from vsekit.training.stall import stall_reasons
from vsekit.training.state import Progress


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def run_cli(spec: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m vsekit run SPEC --out OUT -q``: a real process, so stderr is what a user sees with -q."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "vsekit", "run", str(spec), "--out", str(out), "-q", *args],
                          capture_output=True, text=True, env=env, timeout=600, cwd=spec.parent)


def stall_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "training looks stalled" in line]


# --------------------------------------------------------------------------
# the rule


def test_rsum_at_most_twice_chance_stalls():
    assert stall_reasons(31.8, 15.9, None, None) and stall_reasons(31.8, 15.9, None, None)[0].startswith("dev rsum")
    assert stall_reasons(31.9, 15.9, None, None) == []
    assert stall_reasons(None, 15.9, None, None) == []  # not validated: the rsum says nothing


@pytest.mark.parametrize("mean_loss,stalled", [(4.079, True), (3.921, True), (4.0, True),
                                               (4.081, False), (3.919, False)])
def test_loss_within_two_percent_of_no_information_stalls(mean_loss, stalled):
    reasons = stall_reasons(100.0, 10.0, mean_loss, 4.0)
    assert bool(reasons) is stalled
    if stalled:
        assert reasons == [reasons[0]] and "within 2%" in reasons[0]


def test_unknown_no_information_value_judges_by_rsum_only():
    assert stall_reasons(100.0, 10.0, 4.0, None) == []
    assert len(stall_reasons(15.0, 10.0, 4.0, 4.0)) == 2


def test_the_epochs_no_information_sum_is_saved_with_the_state():
    p = Progress(loss_sum=12.5, noinfo_sum=51.2)
    assert Progress.from_json(p.to_json(), None).noinfo_sum == 51.2
    old = p.to_json()
    del old["noinfo_sum"]  # a state saved before the stall check: unknown for the rest of that epoch
    assert Progress.from_json(old, None).noinfo_sum is None
    assert Progress.from_json(Progress(noinfo_sum=None).to_json(), None).noinfo_sum is None


# --------------------------------------------------------------------------
# real runs on the embedded data


def test_max_violation_from_scratch_warns_after_epoch_1(tmp_path):
    """The spec of test_train_e2e's mini_run (which learns: no stall event there) with max-violation and no warm-up."""
    spec = tmp_path / "mv.toml"
    spec.write_text(tiny_spec_text("vsekit:f8k_mini", loss={"type": "max_violation", "margin": 0.2},
                                   train={"max_epochs": 1, "batch_size": 128, "lr": 0.005}))
    proc = run_cli(spec, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = stall_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("WARNING") and "epoch 1:" in lines[0]
    assert "warm-up" in lines[0] and "warmup_epochs" in lines[0] and "another [train] lr" in lines[0]
    log = events(tmp_path / "run")
    stall = [e for e in log if e["event"] == "stall"]
    assert len(stall) == 1 and stall[0]["epoch"] == 1 and stall[0]["loss"] == "max_violation"
    valid = [e for e in log if e["event"] == "valid"][-1]
    chance = chance_rsum(200, 5)  # the dev split: 200 images, 5 captions each
    assert stall[0]["chance_rsum"] == pytest.approx(chance)
    assert stall[0]["rsum"] == valid["rsum"] <= 2 * chance
    # no-information value: 2·B·margin per batch (every batch holds captions of >= 2 images), averaged over the
    # epoch's batches of unequal size: 2 · 0.2 · 5000 captions / batches — not 2 · 128 · 0.2
    start = log[0]
    assert start["event"] == "start" and start["batches_per_epoch"] > math.ceil(5000 / 128) - 1
    assert stall[0]["no_information_loss"] == pytest.approx(2 * 0.2 * 5000 / start["batches_per_epoch"])
    epoch = next(e for e in log if e["event"] == "epoch")
    assert stall[0]["mean_loss"] == pytest.approx(epoch["mean_loss"])


@pytest.mark.slow
def test_infonce_at_lr_50_warns_by_its_loss(tmp_path):
    spec = tmp_path / "nce.toml"
    text = tiny_spec_text("vsekit:f8k_mini", loss={"type": "infonce"},
                          train={"max_epochs": 1, "batch_size": 128, "lr": 50.0})
    spec.write_text(text.replace("margin = 0.2\n", ""))  # infonce has no margin
    proc = run_cli(spec, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(stall_lines(proc.stderr)) == 1, proc.stderr
    (stall,) = [e for e in events(tmp_path / "run") if e["event"] == "stall"]
    assert any("within 2%" in r for r in stall["reasons"])
    # ln B per batch averaged: at most ln 128 (fewer candidates where captions share an image or a batch is short)
    assert 0 < stall["no_information_loss"] <= math.log(128)
    assert abs(stall["mean_loss"] - stall["no_information_loss"]) <= 0.02 * stall["no_information_loss"]
    assert "warm-up" not in stall["advice"] and "another [train] lr" in stall["advice"]


@pytest.mark.slow
def test_quickstart_does_not_warn(tmp_path):
    """examples/quickstart.toml (InfoNCE, lr 5e-4) learns from epoch 1: no warning, no stall event (~40-80 s)."""
    out = tmp_path / "qs"
    proc = run_cli(REPO / "examples" / "quickstart.toml", out, "--set", "train.max_epochs=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert stall_lines(proc.stderr) == [], proc.stderr
    log = events(out)
    assert [e for e in log if e["event"] == "stall"] == []
    assert [e for e in log if e["event"] == "valid"][-1]["rsum"] > 2 * chance_rsum(200, 5)
