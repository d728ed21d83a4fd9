"""The run folder: the checks before a run writes there, its opening files, results, and the results log.

Everything that can fail on user input (a locked or foreign run folder, one
that is not empty without ``force``) is checked before the folder is created
or touched, so a refused run leaves nothing on disk. While a run writes to its
folder it holds ``RUN/.lock`` (:mod:`vsekit.training.lock`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from vsekit.config import portable
from vsekit.errors import CheckpointError
from vsekit.evaluate import COLUMNS
from vsekit.io import atomic_write_text
from vsekit.spec import Spec, dumps_toml
from vsekit.training.lock import LOCK_NAME, check_free
from vsekit.training.metrics_log import MetricsLog, NoLog
from vsekit.training.setup import RunContext
from vsekit.training.state import Progress, ResumePoint, repair_best

log = logging.getLogger(__name__)

#: the logger of a run's result lines (the final table, ``results: PATH``), at INFO; the CLI shows it on stdout
RESULTS_LOGGER = "vsekit.training.results"
results_log = logging.getLogger(RESULTS_LOGGER)


def run_dir(spec: Spec, out: str | Path | None) -> Path:
    """The run folder: ``out``, else ``[output] dir``, else ``runs/NAME``."""
    return Path(out) if out is not None else Path(spec.output.dir or Path("runs") / spec.name)


def contents(folder: Path) -> list[Path]:
    """What a folder holds, the lock file aside ([] when it does not exist)."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name != LOCK_NAME]


def check_usable(out: Path, *, probe_lock: bool = True) -> None:
    """Raise :class:`CheckpointError` when ``out`` is a file, or (with ``probe_lock``) another process holds its lock.

    Only the process that takes the lock probes it: under torchrun the other ranks leave it alone, since a
    probe is a brief exclusive hold that rank 0's own acquire could meet.
    """
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is not a folder; choose another with --out")
    if probe_lock:
        check_free(out)


def not_empty_error(out: Path) -> CheckpointError:
    """The refusal of a run folder that holds files, without ``--force`` or ``--resume``."""
    return CheckpointError(f"{out}: run folder exists and is not empty; pass --force to replace it, "
                           f"--resume to continue it, or choose another with --out")


def check_run_dir(out: Path, force: bool, *, probe_lock: bool = True) -> None:
    """Refuse (before anything is written) a folder that is in use, not empty without ``force``, or not ours.

    ``probe_lock``: as :func:`check_usable`.

    Raises:
        CheckpointError: with the one-line reason.
    """
    check_usable(out, probe_lock=probe_lock)
    if contents(out):
        if not force:
            raise not_empty_error(out)
        if not (out / "spec.toml").exists():
            raise CheckpointError(f"{out}: not a vsekit run folder (no spec.toml); refusing to delete it")


def clear_run_dir(out: Path) -> None:
    """Empty a run folder we hold the lock of (the lock file stays)."""
    for p in contents(out):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def prepare_run_dir(out: Path, force: bool) -> None:
    """Check ``out`` (see :func:`check_run_dir`), then create it or empty it."""
    check_run_dir(out, force)
    if contents(out):
        clear_run_dir(out)
    out.mkdir(parents=True, exist_ok=True)


def write_results(out: Path, results: dict[str, Any]) -> None:
    """``results.json`` (all of ``results``) and ``results.csv`` (one row per split: valid, test)."""
    atomic_write_text(out / "results.json", json.dumps(portable(results, out), indent=1))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["split", *COLUMNS])
    for split_name in ("valid", "test"):
        m = results.get(split_name)
        if m:
            writer.writerow([m.get("split", split_name), *[m.get(c) for c in COLUMNS]])
    atomic_write_text(out / "results.csv", buf.getvalue())


def write_opening_files(ctx: RunContext) -> None:
    """A new run's ``spec.toml``, ``provenance.json`` and ``vocab.json`` (the folder emptied first)."""
    out, su, data, d = ctx.out, ctx.setup, ctx.data, ctx.d
    if contents(out):
        clear_run_dir(out)
    atomic_write_text(out / "spec.toml", dumps_toml(portable(ctx.spec_dict, out)))  # no path of this machine
    prov = dict(su.prov)
    prov["data_report"] = {s.name: s.report for s in (data.train, data.valid, data.test)}
    prov["skipped_over_maxlen_w"] = su.skipped
    if d.enabled:
        prov["distributed"] = {"world_size": d.world_size, "backend": torch.distributed.get_backend()}
    atomic_write_text(out / "provenance.json", json.dumps(portable(prov, out), indent=1))
    su.vocab.save(out / "vocab.json")


def record_resume(out: Path, prog: Progress) -> None:
    """Note the resume in provenance.json (when, from which step)."""
    path = out / "provenance.json"
    try:
        prov = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    prov.setdefault("resumed", []).append({"at": datetime.now(UTC).isoformat(timespec="seconds"),
                                           "step": prog.step})
    atomic_write_text(path, json.dumps(prov, indent=1))


def open_log(ctx: RunContext, point: ResumePoint | None, prog: Progress) -> MetricsLog | NoLog:
    """Rank 0: write the run folder's opening files (a new run) or note the resume; open ``metrics.jsonl``."""
    if not ctx.d.is_main:
        return NoLog()
    t, out, su, d = ctx.spec.train, ctx.out, ctx.setup, ctx.d
    if point is None:
        write_opening_files(ctx)
        if su.skipped:
            log.info("skipped %d training caption(s) longer than maxlen_w=%d", su.skipped, t.maxlen_w)
        mlog = MetricsLog(out / "metrics.jsonl", t.tensorboard, truncate_at=0)
        mlog.write("start", 0, train_captions=len(su.keep), skipped_over_maxlen_w=su.skipped,
                   vocab=len(su.vocab), train_images=ctx.data.train.n_images,
                   batches_per_epoch=su.batches_per_epoch, threads=torch.get_num_threads(),
                   world_size=d.world_size, precision=t.precision)
        return mlog
    state = point.meta["resume"]
    mlog = MetricsLog(out / "metrics.jsonl", t.tensorboard, truncate_at=int(state["metrics_offset"]),
                      purge_step=prog.step)
    record_resume(out, prog)
    mlog.write("resume", prog.step, epoch=prog.epoch + (prog.pos / len(prog.batches) if prog.batches else 0))
    repair_best(ctx, prog)
    if not ctx.quiet:
        from tqdm.auto import tqdm

        tqdm.write(f"resuming {out} at step {prog.step} (epoch {prog.epoch + 1}, batch {prog.pos})")
    return mlog


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    """``out/summary.json``; returns its path."""
    path = Path(out) / "summary.json"
    atomic_write_text(path, json.dumps(portable(summary, path.parent), indent=1))
    return path
