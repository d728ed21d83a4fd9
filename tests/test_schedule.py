"""The learning-rate schedule with linear warm-up (``train.warmup_steps``), against its formula by hand."""

from __future__ import annotations

import math

import pytest
from conftest import tiny_spec_text

from vsekit import spec as spec_mod
from vsekit.training.loop import lr_at


def make_spec(tmp_path, **train):
    path = tmp_path / "spec.toml"
    path.write_text(tiny_spec_text(tmp_path, train=train))
    return spec_mod.load(path)


@pytest.mark.parametrize("schedule", ["none", "cosine", "step"])
def test_warmup_ramps_then_follows_the_schedule(tmp_path, schedule):
    s = make_spec(tmp_path, lr=0.01, warmup_steps=4, lr_schedule=schedule, lr_step_epochs=1, lr_gamma=0.5)
    total = 100

    def plain(step, epoch):
        if schedule == "cosine":
            return 0.5 * 0.01 * (1 + math.cos(math.pi * step / total))
        return 0.01 * (0.5 ** epoch if schedule == "step" else 1.0)

    for step, epoch in [(0, 0), (1, 0), (3, 0), (4, 0), (50, 1), (99, 2)]:
        factor = min(1.0, (step + 1) / 4)
        assert lr_at(s, step, epoch, total) == pytest.approx(factor * plain(step, epoch)), (step, epoch)
    assert lr_at(make_spec(tmp_path, lr=0.01), 0, 0, total) == pytest.approx(0.01)  # no warm-up by default


def test_parameters_with_an_lr_scale_get_their_own_group(tmp_path):
    import torch

    from vsekit.training.setup import LR_SCALE, make_optimizer

    plain, tuned, other = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    setattr(tuned, LR_SCALE, 0.1)
    opt = make_optimizer([plain, tuned, other], make_spec(tmp_path, lr=0.01))
    assert [g["lr_scale"] for g in opt.param_groups] == [1.0, 0.1]
    assert [len(g["params"]) for g in opt.param_groups] == [2, 1]
    assert opt.param_groups[1]["params"][0] is tuned
