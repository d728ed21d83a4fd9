"""Deprecated: the trainer now lives in :mod:`vsekit.training`; this module re-exports its old names for one
release. ``train`` is :func:`vsekit.training.fit`, ``train_seeds`` :func:`vsekit.training.fit_seeds`."""

from __future__ import annotations

import warnings
from typing import Any

from vsekit.training import loop as _loop
from vsekit.training.loop import TrainingDiverged, TrainingInterrupted, lr_at
from vsekit.training.metrics_log import MetricsLog
from vsekit.training.orchestration import fit as train
from vsekit.training.orchestration import fit_seeds as train_seeds
from vsekit.training.orchestration import summarize_runs
from vsekit.training.rundir import check_run_dir, clear_run_dir, prepare_run_dir, run_dir, write_results
from vsekit.training.setup import (
    RunData,
    autocast_for,
    epoch_batches,
    load_data,
    make_optimizer,
    resolve_device,
    seed_everything,
    spec_extractor,
)
from vsekit.training.stall import STALL_CHANCE_FACTOR, STALL_LOSS_TOLERANCE, split_chance_rsum, stall_reasons
from vsekit.training.state import (
    RESUMABLE_CHANGES,
    STATE_FORMAT,
    Progress,
    ResumePoint,
    find_resume_point,
    spec_changes,
)

warnings.warn("vsekit.trainer is deprecated; use vsekit.training (vsekit.train is the public entry point)",
              DeprecationWarning, stacklevel=2)


_OLD_ORDER = ("model", "loss_fn", "optimizer", "params", "batch", "feats", "ids", "grad_clip", "step", "epoch")


def train_step(*args: Any, **kwargs: Any) -> float:
    """The old signature of :func:`vsekit.training.loop.train_step`: ``(model, loss_fn, optimizer, params, batch,
    feats, ids, grad_clip, step=0, epoch=0.0, *, forward=None, sizes=None, scaler=None)``."""
    kwargs.update(zip(_OLD_ORDER, args, strict=False))
    first = [kwargs.pop(k) for k in ("model", "loss_fn", "optimizer", "batch", "feats", "ids")]
    return _loop.train_step(*first, **kwargs)  # looked up at call time, as tests patch it


__all__ = ["RESUMABLE_CHANGES", "STALL_CHANCE_FACTOR", "STALL_LOSS_TOLERANCE", "STATE_FORMAT", "MetricsLog",
           "Progress", "ResumePoint", "RunData", "TrainingDiverged", "TrainingInterrupted", "autocast_for",
           "check_run_dir", "clear_run_dir", "epoch_batches", "find_resume_point", "load_data", "lr_at",
           "make_optimizer", "prepare_run_dir", "resolve_device", "run_dir", "seed_everything", "spec_changes",
           "spec_extractor", "split_chance_rsum", "stall_reasons", "summarize_runs", "train", "train_seeds",
           "train_step", "write_results"]
