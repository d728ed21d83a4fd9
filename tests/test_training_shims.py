"""The modules the training package replaced still import for one release, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import sys

import pytest


@pytest.mark.parametrize("old, new, name", [
    ("vsekit.trainer", "vsekit.training.orchestration", "summarize_runs"),
    ("vsekit.distributed", "vsekit.training.distributed", "GlobalBatchLoss"),
    ("vsekit.lock", "vsekit.training.lock", "RunLock"),
    ("vsekit.provenance", "vsekit.training.provenance", "collect"),
])
def test_old_module_warns_and_reexports(old, new, name):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated"):
        mod = importlib.import_module(old)
    assert getattr(mod, name) is getattr(importlib.import_module(new), name)


def test_old_trainer_names(monkeypatch):
    sys.modules.pop("vsekit.trainer", None)
    with pytest.warns(DeprecationWarning):
        trainer = importlib.import_module("vsekit.trainer")
    from vsekit import training
    from vsekit.training import loop

    assert trainer.train is training.fit and trainer.train_seeds is training.fit_seeds
    calls = []
    monkeypatch.setattr(loop, "train_step", lambda *a, **k: calls.append((a, k)) or 1.0)
    assert trainer.train_step("m", "l", "o", "p", "b", "f", "i", 2.0, 5, forward="fw") == 1.0
    assert calls == [(("m", "l", "o", "b", "f", "i"), {"params": "p", "grad_clip": 2.0, "step": 5, "forward": "fw"})]
