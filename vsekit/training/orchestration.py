"""Training entry points: :func:`fit` (one run) and :func:`fit_seeds` (repeats with seeds seed..seed+N-1).

Every check, on every rank, happens before rank 0 writes anything; then rank 0
holds the run lock, writes the opening files, the loop trains, and the best
model is evaluated on the evaluation split. ``vsekit.train`` (:mod:`vsekit.api`)
is the public door to these.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

import vsekit.training.distributed as distributed  # the module, not the package (no cycle)
from vsekit import checkpoint
from vsekit.data.overlap import overlap_warnings
from vsekit.errors import CheckpointError, VsekitError
from vsekit.evaluate import evaluate_split, format_table, scalar_metrics, table_rows
from vsekit.spec import Spec
from vsekit.training.lock import RunLock
from vsekit.training.loop import Loop
from vsekit.training.manifest import forget_written, record_written
from vsekit.training.metrics_log import MetricsLog, NoLog
from vsekit.training.rundir import (
    adopt_run_dir,
    check_run_dir,
    check_usable,
    list_tensorboard,
    open_log,
    results_log,
    run_dir,
    start_run_dir,
    write_results,
    write_summary,
)
from vsekit.training.setup import RunContext, RunData, Setup, autocast_for, load_data, resolve_device
from vsekit.training.state import Progress, ResumePoint, check_same_data, find_resume_point, note_runtime, restore

log = logging.getLogger(__name__)


def fit(spec: Spec, out: str | Path | None = None, *, quiet: bool = False, force: bool = False,
        resume: bool = False, data: RunData | None = None) -> dict[str, Any]:
    """Train a model as ``spec`` says, select it on the validation split, evaluate it; return the results.

    ``resume=True`` continues the run in ``out`` from its latest saved state
    (a finished run returns its results); the spec must be the one it started with.
    Started by ``torchrun``, it is one rank of a multi-process run (:mod:`vsekit.training.distributed`).
    Unless ``quiet``, the results table and ``results: PATH`` are logged at INFO
    (:data:`~vsekit.training.rundir.RESULTS_LOGGER`).

    Raises:
        CheckpointError: a run folder in use, not empty without ``force``, not ours, or not resumable.
        SpecError, DataError: the spec or its data (before anything is written).
        TrainingInterrupted: Ctrl-C (the state is saved). TrainingDiverged: the loss became NaN or infinite.
    """
    if resume and force:
        raise CheckpointError("--resume continues a run and --force starts it over: choose one")
    out = run_dir(spec, out)
    spec_dict = spec.to_dict()
    d, device = distributed.setup(resolve_device(spec), spec.source or "<spec>")
    quiet = quiet or not d.is_main
    if not quiet:
        log.info("device: %s (train.device = %r)", device, spec.train.device)
    failure: VsekitError | None = None
    restart = False
    try:  # every check, on every rank, before rank 0 writes anything (the lock is rank 0's to probe)
        check_usable(out, probe_lock=d.is_main)
        point = find_resume_point(out, spec_dict) if resume else None
        if point is not None and point.kind == "finished":
            if not quiet:
                results_log.info("%s: already finished; results: %s", out, out / "results.json")
            return {**point.results, "run_dir": str(out)}  # the file records it relative to itself
        if point is not None and point.kind == "restart":
            if d.is_main:
                log.warning("%s: the run stopped before its first saved state; starting it over", out)
            force, point, restart = True, None, True  # its spec.toml is this spec: the run folder is ours
        if point is None and not restart:
            check_run_dir(out, force, probe_lock=d.is_main)
        data = data or load_data(spec)
        ctx = RunContext(spec, out, spec_dict, data, Setup.build(spec, data, device, d), device, d, quiet)
        prog = resumed_progress(ctx, point)
    except VsekitError as exc:
        failure = exc
    d.raise_if_any(failure)
    with d.main_only(RunLock(out)) as lock:
        d.raise_if_any(locked_check(lock, out, force, adopt=restart) if point is None else None)
        return d.broadcast(train_locked(ctx, point, prog))


def locked_check(lock: RunLock | None, out: Path, force: bool, *, adopt: bool = False) -> VsekitError | None:
    """Rank 0 (``lock`` held): check the folder again and clear it (:func:`start_run_dir`); the refusal, or None.

    ``adopt``: a ``--resume`` that starts over (the run stopped before its first save; its ``spec.toml`` is
    this spec): a folder of an earlier vsekit first gets a manifest of the run files it holds. A refused run
    leaves neither the lock file nor the folder when it made them; other ranks get None.
    """
    if lock is None:
        return None
    try:
        if adopt:
            adopt_run_dir(out)
        start_run_dir(out, force)
    except VsekitError as exc:
        lock.discard_on_release()
        return exc
    return None


def resumed_progress(ctx: RunContext, point: ResumePoint | None) -> Progress:
    """A fresh :class:`Progress`, or the saved state restored (after checking the data is the same)."""
    if point is None:
        return Progress()
    check_same_data(ctx.out, point, ctx.setup)
    # everything is checked: restore the state before writing anything
    prog = restore(ctx.out / "last.json", point, ctx.setup, ctx.device)
    note_runtime(ctx, point, prog)  # another thread count or device: warn now, and in results.json
    return prog


def train_locked(ctx: RunContext, point: ResumePoint | None, prog: Progress) -> dict[str, Any] | None:
    """With the run lock held: open the log, train, and (rank 0) evaluate and write the results."""
    mlog = open_log(ctx, point, prog)
    try:
        su = ctx.setup
        forward: torch.nn.Module = distributed.GlobalBatchLoss(su.model, su.loss_fn, ctx.d,
                                                               autocast_for(ctx.spec, ctx.device))
        if ctx.d.enabled:
            forward = torch.nn.parallel.DistributedDataParallel(
                forward, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        loop = Loop(ctx, forward, mlog, prog)
        loop.run()
        return finish(ctx, loop, mlog) if ctx.d.is_main else None
    finally:
        mlog.close()
        if ctx.d.is_main and ctx.spec.train.tensorboard:
            list_tensorboard(ctx.out)


def finish(ctx: RunContext, loop: Loop, mlog: MetricsLog | NoLog) -> dict[str, Any]:
    """Evaluate the best model on the evaluation split; write ``results.json`` / ``.csv``; return the results."""
    spec, out, t, p = ctx.spec, ctx.out, ctx.spec.train, loop.prog
    train_seconds = loop.seconds()
    best_model, _, _ = checkpoint.load(out / "best.json", trust_code=True)  # this run's own spec: the user's code
    best_model.to(ctx.device)
    test_metrics = evaluate_split(best_model, ctx.data.test, ctx.setup.metric, folds=spec.eval.folds,
                                  ties=spec.eval.ties, strict_protocol=spec.eval.strict_protocol,
                                  coco_1k_and_5k=spec.eval.coco_1k_and_5k, data=spec.data)
    mlog.write("test", p.step, split=spec.eval.split, **scalar_metrics(test_metrics))
    valid_metrics = p.best.get("metrics", {})
    results = {
        "name": spec.name, "seed": t.seed, "best_step": p.best["step"], "best_epoch": p.best["epoch"],
        "steps": p.step, "train_seconds": train_seconds, "train_captions": len(ctx.setup.keep),
        "skipped_over_maxlen_w": ctx.setup.skipped, "device": str(ctx.device),
        "valid": {"split": t.valid_split, **valid_metrics},
        "test": {"split": spec.eval.split, **test_metrics},
        "warnings": list(dict.fromkeys(overlap_warnings(ctx.data.overlap) + valid_metrics.get("warnings", [])
                                       + test_metrics["warnings"] + p.warnings)),
        "run_dir": str(out),
    }
    write_results(out, results)
    if not spec.output.save_last:  # the state was only kept for resuming
        for name in ("last.json", "last.safetensors"):
            (out / name).unlink(missing_ok=True)
        forget_written(out, "last.json", "last.safetensors")
    if not ctx.quiet:
        title = f"{spec.eval.split} (best {t.valid_split} rsum at epoch {p.best['epoch']:.2f})"
        results_log.info("%s", format_table(table_rows(title, test_metrics)))
        results_log.info("results: %s", out / "results.json")
    return results


def fit_seeds(spec: Spec, n: int, out: str | Path | None = None, *, quiet: bool = False,
              force: bool = False, resume: bool = False) -> dict[str, Any]:
    """Run ``n`` repeats with seeds ``train.seed + k`` into ``out/seedK``; report mean and std of every column.

    With ``resume``, finished seeds are read back, an interrupted one continues, the rest start.
    Returns the summary of :func:`summarize_runs`.

    Raises:
        CheckpointError: as :func:`fit`, for the folder or any seed's sub-folder, before the first seed starts.
    """
    if resume and force:
        raise CheckpointError("--resume continues a run and --force starts it over: choose one")
    out = run_dir(spec, out)
    d, _ = distributed.setup(resolve_device(spec), spec.source or "<spec>")
    check_usable(out, probe_lock=d.is_main)  # the lock is rank 0's to probe (see check_usable)
    if resume and not out.is_dir():
        raise CheckpointError(f"{out}: nothing to resume (no such folder); run without --resume to start")
    if not resume:
        check_run_dir(out, force, probe_lock=d.is_main)
    seeded = [attrs.evolve(spec, train=attrs.evolve(spec.train, seed=spec.train.seed + k)) for k in range(n)]
    for s in seeded:  # refuse a folder in use or not ours before the data loads and the first seed starts
        sub = out / f"seed{s.train.seed}"
        if resume and (sub / "spec.toml").exists():
            find_resume_point(sub, s.to_dict())
        else:
            check_run_dir(sub, force or resume, probe_lock=d.is_main)
    data = load_data(spec)
    runs = []
    with d.main_only(RunLock(out)) as lock:
        d.raise_if_any(None if resume else locked_check(lock, out, force))
        if lock is not None and resume:
            adopt_run_dir(out)
        for s in seeded:
            sub = out / f"seed{s.train.seed}"
            again = resume and (sub / "spec.toml").exists()
            if lock is not None:
                sub.mkdir(exist_ok=True)
                record_written(sub)
            runs.append(fit(s, sub, quiet=quiet, force=(force or resume) and not again, resume=again, data=data))
        return d.broadcast(summarize_runs(runs, out, quiet=quiet) if d.is_main else None)


def summarize_runs(runs: list[dict[str, Any]], out: str | Path, *, quiet: bool = False) -> dict[str, Any]:
    """Mean and sample std of every test column over repeated runs; written to ``out/summary.json``.

    Unless ``quiet``, the mean ± std table and ``summary: PATH`` are logged at INFO.
    """
    tests = [r["test"] for r in runs]
    n = len(runs)
    keys = [k for k in tests[0] if isinstance(tests[0][k], (int, float)) and k != "split"]
    mean = {k: float(np.mean([m[k] for m in tests])) for k in keys}
    std = {k: float(np.std([m[k] for m in tests], ddof=1)) if n > 1 else 0.0 for k in keys}
    summary = {"name": runs[0]["name"], "seeds": [r["seed"] for r in runs], "split": tests[0].get("split"),
               "mean": mean, "std": std, "runs": [{"seed": r["seed"], "test": r["test"], "valid": r["valid"],
                                                    "best_epoch": r["best_epoch"], "train_seconds": r["train_seconds"],
                                                    "run_dir": r["run_dir"]} for r in runs]}
    path = write_summary(Path(out), summary)
    if not quiet:
        results_log.info("%s", format_table({f"mean of {n} seeds": mean}, std={f"mean of {n} seeds": std}))
        results_log.info("summary: %s", path)
    return summary
