"""The run folder: the checks before a run writes there, its opening files, results, and the results log.

Everything that can fail on user input (a locked or foreign run folder, one
that is not empty without ``force``, one below a file) is checked before the
data loads and the folder is created or touched, so a refused run leaves
nothing on disk. While a run writes to its folder it holds ``RUN/.lock``
(:mod:`vsekit.training.lock`); under the lock the folder is checked again and
only then cleared: ``--force`` removes what the folder's manifest
(:mod:`vsekit.training.manifest`) lists, nothing else.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from vsekit.config import portable
from vsekit.errors import CheckpointError, DataError, SpecError
from vsekit.evaluate import COLUMNS
from vsekit.io import atomic_write_text
from vsekit.limits import read_json
from vsekit.spec import Spec, dumps_toml, run_name_problem
from vsekit.spec.portable import portable_spec
from vsekit.training.lock import LOCK_NAME, check_free
from vsekit.training.manifest import (
    MANIFEST_NAME,
    clear_listed,
    is_vsekit_run,
    read_manifest,
    record_written,
    write_manifest,
)
from vsekit.training.metrics_log import MetricsLog, NoLog
from vsekit.training.setup import RunContext
from vsekit.training.state import Progress, ResumePoint, repair_best

log = logging.getLogger(__name__)

#: the logger of a run's result lines (the final table, ``results: PATH``), at INFO; the CLI shows it on stdout
RESULTS_LOGGER = "vsekit.training.results"
results_log = logging.getLogger(RESULTS_LOGGER)


def run_dir(spec: Spec, out: str | Path | None) -> Path:
    """The run folder: ``out``, else ``[output] dir``, else ``runs/NAME``.

    Raises:
        SpecError: the spec's name is not a name (a path, ``..``, a NUL or control character: see
            :func:`vsekit.spec.run_name_problem`), whether or not the folder is ``runs/NAME``.
    """
    if problem := run_name_problem(spec.name):
        raise SpecError(f"{spec.source or '<spec>'}: name: {problem}")
    return Path(out) if out is not None else Path(spec.output.dir or Path("runs") / spec.name)


#: the names a training run writes at the top of its run folder: with ``--force``, one of them there but not
#: listed in the manifest is a user's file that the run would replace, and the run is refused
RUN_FILES = ("spec.toml", "provenance.json", "vocab.json", "metrics.jsonl", "best.json", "best.safetensors",
             "best.safetensors.pending", "last.json", "last.safetensors", "last.safetensors.pending",
             "results.json", "results.csv", "summary.json", "tensorboard")


def contents(folder: Path) -> list[Path]:
    """What a folder holds, the lock file and the manifest aside ([] when it does not exist)."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name not in (LOCK_NAME, MANIFEST_NAME)]


def _nearest_existing(out: Path) -> Path:
    """``out`` or its nearest ancestor that exists (or is a link)."""
    for p in (out, *out.absolute().parents):
        if p.exists() or p.is_symlink():
            return p
    return Path(out.absolute().anchor)


def check_usable(out: Path, *, probe_lock: bool = True) -> None:
    """Raise :class:`CheckpointError` when the folder ``out`` cannot be made or written, or is in use.

    Refused: ``out`` is a file or a dangling link; an ancestor of ``out`` is a file; the nearest existing
    folder is not writable; ``out/.lock`` is a link or a folder (vsekit's lock file is always its own
    plain file); or (with ``probe_lock``) another process holds the lock. Only the process that takes the
    lock probes it: under torchrun the other ranks leave it alone, since a probe is a brief exclusive hold
    that rank 0's own acquire could meet.
    """
    if "\0" in str(out):
        raise CheckpointError(f"{str(out)!r}: a folder name cannot hold a NUL character; choose another --out")
    found = _nearest_existing(out)
    if found == out and not out.is_dir():
        what = "is a link to nothing" if not out.exists() else "exists and is not a folder"
        raise CheckpointError(f"{out}: {what}; choose another run folder with --out")
    if not found.is_dir():
        raise CheckpointError(f"{out}: cannot be made: {found} is a file, not a folder; choose another --out")
    if not os.access(found, os.W_OK | os.X_OK):
        raise CheckpointError(f"{out}: cannot be written: {found} is not writable by you; choose another --out")
    lock = out / LOCK_NAME
    if lock.is_symlink() or (lock.exists() and not lock.is_file()):
        raise CheckpointError(f"{lock}: expected vsekit's lock file, found a link or a folder; vsekit wrote "
                              f"neither: move it away or choose another --out")
    if probe_lock:
        check_free(out)


def not_empty_error(out: Path) -> CheckpointError:
    """The refusal of a run folder that holds files, without ``--force`` or ``--resume``."""
    return CheckpointError(f"{out}: run folder exists and is not empty; pass --force to replace it, "
                           f"--resume to continue it, or choose another with --out")


def check_run_dir(out: Path, force: bool, *, probe_lock: bool = True) -> None:
    """Refuse (before anything is written) a folder that is in use, not empty without ``force``, or not ours.

    With ``force``, a folder that holds anything must be a run folder with a manifest
    (:mod:`vsekit.training.manifest`): ``--force`` removes only what vsekit listed there, so a folder without
    one (a data folder, a run folder of an earlier vsekit) is refused, and so is one where a name a run
    writes (:data:`RUN_FILES`) is taken by a file the manifest does not list. ``probe_lock``: as
    :func:`check_usable`.

    Raises:
        CheckpointError: with the one-line reason.
    """
    check_usable(out, probe_lock=probe_lock)
    listed = read_manifest(out)  # a manifest that is not one is refused here, before anything is written
    held = contents(out)
    if not held:
        return
    if not force:
        raise not_empty_error(out)
    if listed is None:
        if all((out / n).is_file() for n in ("spec.toml", "provenance.json")):
            raise CheckpointError(
                f"{out}: a run folder of an earlier vsekit, which did not list the files it wrote "
                f"({MANIFEST_NAME}), so --force cannot tell them from yours; move the folder away (or delete "
                f"it yourself), continue it with --resume, or choose another --out")
        raise CheckpointError(f"{out}: not a vsekit run folder (no {MANIFEST_NAME} listing what vsekit wrote "
                              f"there); --force replaces only vsekit's own files: choose another --out")
    ours = {e.rstrip("/").split("/")[0] for e in listed}
    clash = sorted(p.name for p in held if p.name in RUN_FILES and p.name not in ours)
    if clash:
        raise CheckpointError(f"{out / clash[0]}: not written by vsekit (not in {MANIFEST_NAME}), and a run "
                              f"writes that name; move it away or choose another --out")


def start_run_dir(out: Path, force: bool) -> None:
    """With the run lock held: check ``out`` again, remove the files its manifest lists, start an empty one.

    The second check catches a run that wrote the folder between the first check and the lock (check,
    lock, check again, clear), so a run without ``--force`` never clears another's results.

    Raises:
        CheckpointError: as :func:`check_run_dir`.
    """
    check_run_dir(out, force, probe_lock=False)  # we hold the lock: a probe would meet our own hold
    clear_run_dir(out)


def clear_run_dir(out: Path) -> None:
    """Remove the files ``out``'s manifest lists (nothing else); leave ``out`` with a manifest of what stayed."""
    if read_manifest(out) is None:
        out.mkdir(parents=True, exist_ok=True)
        write_manifest(out, [])
    else:
        clear_listed(out)


def prepare_run_dir(out: Path, force: bool) -> None:
    """Check ``out`` (see :func:`check_run_dir`), then create it or clear it (see :func:`clear_run_dir`)."""
    check_run_dir(out, force)
    clear_run_dir(out)


def adopt_run_dir(out: Path) -> None:
    """A resumed run folder without a manifest (from an earlier vsekit): list the run files it holds.

    Only a folder that shows it is a vsekit run (:func:`~vsekit.training.manifest.is_vsekit_run`) is adopted:
    a folder of the user's that merely holds a ``spec.toml`` is not taken over.

    Raises:
        CheckpointError: no manifest and no vsekit ``provenance.json``.
    """
    if read_manifest(out) is not None:
        return
    if not is_vsekit_run(out):
        raise CheckpointError(f"{out}: not a vsekit run folder (no {MANIFEST_NAME} manifest, no provenance.json "
                              f"written by vsekit): --resume takes over only vsekit's run folders; choose another "
                              f"--out")
    write_manifest(out, [n for n in RUN_FILES if (out / n).is_file()])


def list_run_files(out: Path) -> None:
    """List in ``out``'s manifest the files one training run writes there, before it writes the first."""
    record_written(*(out / n for n in RUN_FILES if n not in ("summary.json", "tensorboard")))


def write_results(out: Path, results: dict[str, Any]) -> None:
    """``results.json`` (all of ``results``) and ``results.csv`` (one row per split: valid, test)."""
    record_written(out / "results.json", out / "results.csv")
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
    """A new run's ``spec.toml``, ``provenance.json`` and ``vocab.json``, listed in the manifest first with the
    names the run goes on to write (see :func:`start_run_dir`, which cleared the folder)."""
    out, su, data, d = ctx.out, ctx.setup, ctx.data, ctx.d
    list_run_files(out)
    atomic_write_text(out / "spec.toml", dumps_toml(portable_spec(ctx.spec_dict, out)))  # no path of this machine
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
        prov = read_json(path)
    except (OSError, DataError):
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
    adopt_run_dir(out)
    list_run_files(out)
    mlog = MetricsLog(out / "metrics.jsonl", t.tensorboard, truncate_at=int(state["metrics_offset"]),
                      purge_step=prog.step)
    record_resume(out, prog)
    mlog.write("resume", prog.step, epoch=prog.epoch + (prog.pos / len(prog.batches) if prog.batches else 0))
    repair_best(ctx, prog)
    if not ctx.quiet:
        from tqdm.auto import tqdm

        tqdm.write(f"resuming {out} at step {prog.step} (epoch {prog.epoch + 1}, batch {prog.pos})")
    return mlog


def list_tensorboard(out: Path) -> None:
    """List ``out/tensorboard/`` and the TensorBoard event files in it in ``out``'s manifest."""
    folder = out / "tensorboard"
    if folder.is_dir() and not folder.is_symlink():
        record_written(folder, *(p for p in folder.iterdir() if p.name.startswith("events.out.tfevents.")))


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    """``out/summary.json``; returns its path."""
    path = Path(out) / "summary.json"
    record_written(path)
    atomic_write_text(path, json.dumps(portable(summary, path.parent), indent=1))
    return path
