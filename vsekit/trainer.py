"""The training loop: bucketed batches, Adam, clipping, schedules, validation, selection, checkpoints, resume.

Everything that can fail on user input (spec, data, a locked or foreign run
folder, a resume that does not match) is checked before the run folder is
created or touched, so a refused run leaves nothing on disk.

While a run writes to its folder it holds ``RUN/.lock`` (:mod:`vsekit.lock`).
The resumable state is the ``last`` checkpoint: model weights, optimizer
state, loss parameters, RNG states and the epoch's batch order as safetensors
tensors; step, position, best-so-far and the early-stopping counter as JSON.
It is written at every epoch end, every ``train.save_freq`` steps, whenever a
new best model is found (just before ``best``), and on Ctrl-C. On CPU a
resumed run ends with the same weights and metrics as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import random
import signal
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from tqdm.auto import tqdm

from vsekit import checkpoint, distributed
from vsekit.data.batching import CaptionStore, bucketed_batches
from vsekit.data.readers import Split
from vsekit.data.tokenize import tokenize_all, tokenizer_problem
from vsekit.data.vocab import Vocab, encode_all
from vsekit.errors import CheckpointError, DataError, ProtocolError, SpecError, VsekitError
from vsekit.evaluate import COLUMNS, evaluate_split, format_table, scalar_metrics
from vsekit.extract import RUNTIME_OPTIONS, recorded_extractor
from vsekit.io import atomic_write_bytes, atomic_write_text
from vsekit.lock import LOCK_NAME, RunLock, check_free
from vsekit.metrics import DEFAULT_KS, chance_rsum, check_folds
from vsekit.model import JointModel
from vsekit.provenance import collect
from vsekit.spec import Spec, dumps_toml

log = logging.getLogger(__name__)

STATE_FORMAT = "vsekit-train-state/1"
#: spec keys a resumed run may change: they do not change what is computed
RESUMABLE_CHANGES = ("train.threads", "train.device", "train.tensorboard", "output.dir")


class TrainingInterrupted(VsekitError):
    """Ctrl-C during training: the state was saved; the CLI exits with status 130."""

    exit_code = 130
    prefix = ""


class TrainingDiverged(VsekitError):
    """The loss became NaN or infinite: the spec's optimisation settings need changing."""


@attrs.define
class RunData:
    train: Split
    valid: Split
    test: Split


def load_data(spec: Spec) -> RunData:
    """Read the train, validation and evaluation splits (errors surface here, before anything is written)."""
    reader = spec.data.build()
    where = spec.source or "<spec>"
    for field, name in (("[train] valid_split", spec.train.valid_split), ("[eval] split", spec.eval.split)):
        if name not in reader.splits:
            raise SpecError(f"{where}: {field}: unknown split {name!r} — known: {', '.join(reader.splits)}")
    train = reader.read("train")
    valid = reader.read(spec.train.valid_split)
    test = valid if spec.eval.split == spec.train.valid_split else reader.read(spec.eval.split)
    for s in (valid, test):
        if s.dim_image != train.dim_image:
            raise DataError(f"{s.source}: {s.dim_image}-d image features, but the train split has {train.dim_image}-d")
    try:
        check_folds(spec.eval.folds, test.n_images)
    except ProtocolError as exc:
        why = str(exc).split(": ", 1)[-1]
        raise SpecError(f"{where}: [eval] folds: {spec.eval.folds} does not fit the {test.n_images} "
                        f"{spec.eval.split!r} images ({test.source}): {why}") from None
    return RunData(train, valid, test)


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _contents(folder: Path) -> list[Path]:
    """What a folder holds, the lock file aside ([] when it does not exist)."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name != LOCK_NAME]


def check_run_dir(out: Path, force: bool) -> None:
    """Refuse (before anything is written) a folder that is in use, not empty without ``force``, or not ours."""
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is not a folder; choose another with --out")
    check_free(out)
    if _contents(out):
        if not force:
            raise CheckpointError(f"{out}: run folder exists and is not empty; pass --force to replace it, "
                                  f"--resume to continue it, or choose another with --out")
        if not (out / "spec.toml").exists():
            raise CheckpointError(f"{out}: not a vsekit run folder (no spec.toml); refusing to delete it")


def clear_run_dir(out: Path) -> None:
    """Empty a run folder we hold the lock of (the lock file stays)."""
    import shutil

    for p in _contents(out):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def prepare_run_dir(out: Path, force: bool) -> None:
    """Check ``out`` (see :func:`check_run_dir`), then create it or empty it."""
    check_run_dir(out, force)
    if _contents(out):
        clear_run_dir(out)
    out.mkdir(parents=True, exist_ok=True)


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (and to TensorBoard when asked and installed).

    The file is an append log; a resumed run first cuts it back (atomically)
    to the byte offset its state recorded, so it holds exactly the lines of
    the steps the state has seen.
    """

    def __init__(self, path: Path, tensorboard: bool, truncate_at: int | None = None,
                 purge_step: int | None = None) -> None:
        self.path = path
        if truncate_at is not None:
            data = path.read_bytes() if path.exists() else b""
            if len(data) < truncate_at:
                log.warning("%s: %d bytes, shorter than the %d the saved state recorded; lines were lost",
                            path, len(data), truncate_at)
            atomic_write_bytes(path, data[:truncate_at])
        self.fh = open(path, "ab")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(path.parent / "tensorboard"), purge_step=purge_step)
            except ImportError:
                log.warning("tensorboard requested but not installed (pip install tensorboard); metrics go to JSONL only")

    def write(self, event: str, step: int, **values: Any) -> None:
        self.fh.write((json.dumps({"event": event, "step": step, **values}) + "\n").encode("utf-8"))
        self.fh.flush()
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(f"{event}/{k}", v, step)

    def offset(self) -> int:
        """Bytes written so far, on disk (fsync'd) before a state that records them is saved."""
        self.fh.flush()
        os.fsync(self.fh.fileno())
        return self.fh.tell()

    def close(self) -> None:
        self.fh.close()
        if self.tb is not None:
            self.tb.close()


def lr_at(spec: Spec, step: int, epoch: int, total_steps: int) -> float:
    t = spec.train
    if t.lr_schedule == "step":
        return t.lr * (t.lr_gamma ** (epoch // t.lr_step_epochs))
    if t.lr_schedule == "cosine":
        return 0.5 * t.lr * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    return t.lr


def write_results(out: Path, results: dict[str, Any]) -> None:
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["split", *COLUMNS])
    for split_name in ("valid", "test"):
        m = results.get(split_name)
        if m:
            writer.writerow([m.get("split", split_name), *[m.get(c) for c in COLUMNS]])
    atomic_write_text(out / "results.csv", buf.getvalue())


def make_optimizer(params: list[torch.nn.Parameter], spec: Spec) -> torch.optim.Optimizer:
    """Adam as ``[train]`` says; the fused kernel (one pass over all tensors) where every parameter allows it."""
    t = spec.train
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params) and \
        len({p.device for p in params}) == 1
    return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay, fused=fused or None)


def autocast_for(spec: Spec, device: torch.device) -> torch.autocast | None:
    """The ``train.precision`` autocast context of the forward pass (None for fp32)."""
    p = spec.train.precision
    if p == "fp32":
        return None
    return torch.autocast(device.type, dtype=torch.bfloat16 if p == "bf16" else torch.float16)


def train_step(model: JointModel, loss_fn: torch.nn.Module, optimizer: torch.optim.Optimizer,
               params: list[torch.nn.Parameter], batch: Any, feats: torch.Tensor, ids: torch.Tensor,
               grad_clip: float, step: int = 0, epoch: float = 0.0, *, forward: torch.nn.Module | None = None,
               sizes: list[int] | None = None, scaler: Any = None) -> float:
    """One optimisation step on one batch; returns the loss.

    ``forward`` replaces ``loss_fn(*model(batch, feats), ids)`` — the trainer passes a
    :class:`~vsekit.distributed.GlobalBatchLoss` (DDP-wrapped in a multi-process run);
    ``sizes`` are the ranks' shares of the global batch; ``scaler`` a CUDA fp16 grad scaler.
    """
    if forward is None:
        im, s = model(batch, feats)
        loss = loss_fn(im, s, ids, step=step, epoch=epoch)
    else:
        loss = forward(batch, feats, ids, sizes or [len(ids)], step=step, epoch=epoch)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return loss.item()


# --------------------------------------------------------------------------
# training that goes nowhere

#: an epoch stalls when dev rsum <= STALL_CHANCE_FACTOR x chance ...
STALL_CHANCE_FACTOR = 2.0
#: ... or its mean loss is within this fraction of the loss's no-information value
STALL_LOSS_TOLERANCE = 0.02


def split_chance_rsum(split: Split, ks: Any = DEFAULT_KS) -> float:
    """The expected rsum of i.i.d. random scores on ``split`` (its images, its captions per image, rounded mean)."""
    caps_per_image = max(1, round(len(split.cap2img) / split.n_images))
    return chance_rsum(split.n_images, caps_per_image, tuple(ks))


def stall_reasons(rsum: float | None, chance: float | None, mean_loss: float | None,
                  no_information: float | None) -> list[str]:
    """Why an epoch looks like training that goes nowhere ([] when it does not).

    Args:
        rsum: the epoch's validation rsum (percent), or None when not measured.
        chance: the expected rsum of random scores on that split (:func:`split_chance_rsum`).
        mean_loss: the epoch's mean training loss (per batch).
        no_information: the mean over the same batches of the loss's no-information value
            (:meth:`vsekit.losses.Loss.no_information_value`), None when the loss does not state one.

    Returns:
        One clause per condition met: rsum <= 2 x chance; mean loss within 2 % of the no-information value.
    """
    reasons = []
    if rsum is not None and chance is not None and rsum <= STALL_CHANCE_FACTOR * chance:
        reasons.append(f"dev rsum {rsum:.1f} is at most {STALL_CHANCE_FACTOR:g} x chance ({chance:.1f})")
    if mean_loss is not None and no_information is not None and no_information > 0 \
            and abs(mean_loss - no_information) <= STALL_LOSS_TOLERANCE * no_information:
        reasons.append(f"the mean loss {mean_loss:.4g} is within {STALL_LOSS_TOLERANCE:.0%} of {no_information:.4g}, "
                       f"its value when every score is equal")
    return reasons


# --------------------------------------------------------------------------
# the resumable state


@attrs.define
class Progress:
    """Where the loop is, and what it has decided so far (saved with every state)."""

    step: int = 0
    epoch: int = 0  # the epoch in progress (0-based)
    pos: int = 0  # batches of that epoch done
    batches: list[np.ndarray] | None = None  # the epoch's batch order; None until drawn
    seen: int = 0
    loss_sum: float = 0.0
    noinfo_sum: float | None = 0.0  # the batches' no-information losses; None when unknown (see check_stall)
    epoch_seconds: float = 0.0
    train_seconds: float = 0.0
    best: dict[str, Any] = attrs.Factory(lambda: {"rsum": -math.inf, "step": 0, "epoch": 0})
    since_best: int = 0
    stop: bool = False

    def to_json(self) -> dict[str, Any]:
        best = dict(self.best)
        if best["rsum"] == -math.inf:
            best["rsum"] = None
        return {"step": self.step, "epoch": self.epoch, "pos": self.pos, "seen": self.seen,
                "loss_sum": self.loss_sum, "noinfo_sum": self.noinfo_sum, "epoch_seconds": self.epoch_seconds,
                "train_seconds": self.train_seconds,
                "best": best, "since_best": self.since_best, "stop": self.stop}

    @classmethod
    def from_json(cls, d: dict[str, Any], batches: list[np.ndarray] | None) -> "Progress":
        best = dict(d["best"])
        if best.get("rsum") is None:
            best["rsum"] = -math.inf
        return cls(step=int(d["step"]), epoch=int(d["epoch"]), pos=int(d["pos"]), batches=batches,
                   seen=int(d["seen"]), loss_sum=float(d["loss_sum"]),
                   noinfo_sum=None if d.get("noinfo_sum") is None else float(d["noinfo_sum"]),  # None: older state
                   epoch_seconds=float(d["epoch_seconds"]),
                   train_seconds=float(d["train_seconds"]), best=best, since_best=int(d["since_best"]),
                   stop=bool(d["stop"]))


def _optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                          info: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, values in info.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in info["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _rng_state(rng: np.random.Generator, device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if device.type == "cuda":
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_global = np.random.get_state()
    py = random.getstate()
    return tensors, {
        "numpy": rng.bit_generator.state,
        "numpy_global": [np_global[0], np_global[1].tolist(), *np_global[2:]],
        "python": [py[0], list(py[1]), py[2]],
    }


def _load_rng_state(rng: np.random.Generator, device: torch.device, tensors: dict[str, torch.Tensor],
                    info: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"].cpu())
    if device.type == "cuda":
        cuda = [tensors[k].cpu() for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    rng.bit_generator.state = info["numpy"]
    g = info["numpy_global"]
    np.random.set_state((g[0], np.asarray(g[1], dtype=np.uint32), *g[2:]))
    py = info["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def spec_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every spec value that differs (as written to ``spec.toml``)."""
    a = _flatten(tomllib.loads(dumps_toml(old)))
    b = _flatten(tomllib.loads(dumps_toml(new)))
    missing = object()
    out = []
    for key in sorted(set(a) | set(b)):
        if key in RESUMABLE_CHANGES or a.get(key, missing) == b.get(key, missing):
            continue
        before = "(unset)" if key not in a else json.dumps(a[key])
        after = "(unset)" if key not in b else json.dumps(b[key])
        out.append(f"{key}: {before} -> {after}")
    return out


def _with_defaults(saved: dict[str, Any], path: Path) -> dict[str, Any]:
    """A saved spec as this version writes it: keys added since the run started take their defaults."""
    from vsekit import spec as spec_mod

    try:
        return spec_mod.from_dict(saved, source=str(path), base=path.parent).to_dict()
    except VsekitError:  # e.g. a component that is no longer installed: compare as written
        return saved


@attrs.define
class ResumePoint:
    """What ``--resume`` found in a run folder."""

    kind: str  # "finished" (results.json), "state" (a saved state), "restart" (stopped before its first save)
    meta: dict[str, Any] | None = None
    tensors: dict[str, torch.Tensor] | None = None
    results: dict[str, Any] | None = None


def find_resume_point(out: Path, spec_dict: dict[str, Any]) -> ResumePoint:
    """Check that ``out`` is a run folder of this very spec and read its latest state (changes nothing)."""
    if not out.is_dir():
        raise CheckpointError(f"{out}: nothing to resume (no such run folder); run without --resume to start")
    spec_path = out / "spec.toml"
    if not spec_path.is_file():
        raise CheckpointError(f"{out}: nothing to resume: not a vsekit run folder (no spec.toml)")
    try:
        saved = tomllib.loads(spec_path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{spec_path}: cannot read the run's spec: {exc}") from None
    changes = spec_changes(_with_defaults(saved, spec_path), spec_dict)
    if changes:
        shown = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
        raise CheckpointError(f"{out}: cannot resume: the spec differs from the one this run started with "
                              f"({spec_path}): {shown}. Restore it, or start over with --force")
    results_path = out / "results.json"
    if results_path.is_file():
        try:
            return ResumePoint("finished", results=json.loads(results_path.read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError):
            pass  # a results file we cannot read: resume from the state and write it again
    if not (out / "last.json").is_file():
        return ResumePoint("restart")
    meta_path, meta, tensors = checkpoint.read_tensors(out / "last.json")
    state = meta.get("resume")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{meta_path}: holds no resumable training state (expected {STATE_FORMAT!r}); "
                              f"start over with --force")
    missing = [k for k in ("progress", "optimizer", "rng", "metrics_offset") if k not in state]
    if missing or "rng.torch" not in tensors:
        raise CheckpointError(f"{meta_path}: training state incomplete (missing {', '.join(missing) or 'rng.torch'})")
    return ResumePoint("state", meta=meta, tensors=tensors)


class _InterruptFlag:
    """While active, Ctrl-C (SIGINT) only sets ``hit``: the loop saves its state and stops between steps.

    A second Ctrl-C raises KeyboardInterrupt at once.
    """

    def __init__(self, quiet: bool) -> None:
        self.hit = False
        self.quiet = quiet
        self._old: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True
        msg = "interrupt: saving the training state after this step (Ctrl-C again to stop at once)"
        if self.quiet:
            log.warning(msg)
        else:
            tqdm.write(msg)

    def __enter__(self) -> "_InterruptFlag":
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


# --------------------------------------------------------------------------
# train


def resolve_device(spec: Spec) -> torch.device:
    """``train.device`` as a torch device; a device this machine lacks (or ``precision`` it cannot run) is a
    spec error, not a crash later."""
    name = spec.train.device
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
    if name != "auto" and device.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (device.index is not None and device.index >= n):
            have = f"{n} CUDA device(s)" if n else "no CUDA device"
            raise SpecError(f"{spec.source or '<spec>'}: [train] device: {name!r} requested, but this machine has "
                            f"{have}; use 'auto' or 'cpu'")
    elif name != "auto" and device.type != "cpu":
        backend = getattr(torch.backends, device.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise SpecError(f"{spec.source or '<spec>'}: [train] device: {name!r} is not available on this machine; "
                            f"use 'auto' or 'cpu'")
    if spec.train.precision == "fp16" and device.type != "cuda":
        where = f"train.device is {name!r}" + ("" if name == device.type else f", {device.type} on this machine")
        raise SpecError(f"{spec.source or '<spec>'}: [train] precision: 'fp16' needs a CUDA device ({where}); "
                        f"use 'bf16' or 'fp32'")
    return device


def run_dir(spec: Spec, out: str | Path | None) -> Path:
    return Path(out) if out is not None else Path(spec.output.dir or Path("runs") / spec.name)


def train(spec: Spec, out: str | Path | None = None, *, quiet: bool = False, force: bool = False,
          resume: bool = False, data: RunData | None = None) -> dict[str, Any]:
    """Train a model as ``spec`` says, select it on the validation split, evaluate it; return the results.

    ``resume=True`` continues the run in ``out`` from its latest saved state
    (a finished run returns its results); the spec must be the one it started with.
    Started by ``torchrun``, it is one rank of a multi-process run (:mod:`vsekit.distributed`).
    """
    if resume and force:
        raise CheckpointError("--resume continues a run and --force starts it over: choose one")
    t = spec.train
    out = run_dir(spec, out)
    spec_dict = spec.to_dict()
    d, device = distributed.setup(resolve_device(spec), spec.source or "<spec>")
    quiet = quiet or not d.is_main
    failure: VsekitError | None = None
    try:  # every check, on every rank, before rank 0 writes anything
        if out.exists() and not out.is_dir():
            raise CheckpointError(f"{out}: exists and is not a folder; choose another with --out")
        check_free(out)
        point = find_resume_point(out, spec_dict) if resume else None
        if point is not None and point.kind == "finished":
            if not quiet:
                print(f"{out}: already finished; results: {out / 'results.json'}")
            return point.results
        if point is not None and point.kind == "restart":
            if d.is_main:
                log.warning("%s: the run stopped before its first saved state; starting it over", out)
            force, point = True, None
        if point is None:
            check_run_dir(out, force)
        data = data or load_data(spec)
        setup = _Setup.build(spec, data, device, d)
        if point is not None:
            _check_same_data(out, point, setup.vocab, setup.prov)
            # everything is checked: restore the state before writing anything
            prog = _restore(out / "last.json", point, setup.model, setup.loss_fn, setup.optimizer, setup.rng, device)
        else:
            prog = Progress()
    except VsekitError as exc:
        failure = exc
    d.raise_if_any(failure)

    with d.main_only(RunLock(out)):
        mlog = _open_log(spec, out, spec_dict, point, prog, setup, data, d, quiet)
        try:
            forward: torch.nn.Module = distributed.GlobalBatchLoss(
                setup.model, setup.loss_fn, d, autocast_for(spec, device))
            if d.enabled:
                forward = torch.nn.parallel.DistributedDataParallel(
                    forward, device_ids=[device.index] if device.type == "cuda" else None)
            loop = _Loop(spec, out, spec_dict, setup, forward, data, device, mlog, prog, quiet, d)
            loop.run(setup.total_steps)
            results = _finish(spec, out, loop, setup.model, setup.metric, data, setup.keep, setup.skipped, mlog,
                              quiet) if d.is_main else None
        finally:
            mlog.close()
    return d.broadcast(results)


@attrs.define
class _Setup:
    """What a run trains with, built (and checked) before anything is written."""

    rng: np.random.Generator
    vocab: Vocab
    lengths: np.ndarray
    keep: np.ndarray
    skipped: int
    prov: dict[str, Any]
    model: JointModel
    loss_fn: torch.nn.Module
    metric: Any
    store: CaptionStore
    needs_texts: bool
    images: torch.Tensor
    cap2img: torch.Tensor
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scaler: Any
    batches_per_epoch: int
    total_steps: int
    #: what every checkpoint of the run records beside the weights: the image feature extractor, when known
    record: dict[str, Any] = attrs.Factory(dict)

    @classmethod
    def build(cls, spec: Spec, data: RunData, device: torch.device, d: distributed.Dist) -> "_Setup":
        t = spec.train
        if d.enabled and t.batch_size < 2 * d.world_size:
            raise SpecError(f"{spec.source or '<spec>'}: [train] batch_size: {t.batch_size} is the global batch of "
                            f"{d.world_size} processes; it must be at least {2 * d.world_size}")
        if t.threads:
            torch.set_num_threads(t.threads)
        rng = seed_everything(t.seed)
        tokenizer = spec.model.tokenizer
        if problem := tokenizer_problem(tokenizer):
            raise SpecError(f"{spec.source or '<spec>'}: [model] tokenizer: {problem}")
        tokens = tokenize_all(data.train.captions, tokenizer)  # the same calls as JointModel.token_ids
        vocab = Vocab.build(tokens, spec.vocab.min_count, spec.vocab.max_size)
        flat, lengths = encode_all(vocab, tokens, append_eos=spec.model.append_eos)
        keep = np.flatnonzero(lengths <= t.maxlen_w)
        skipped = int(len(lengths) - len(keep))
        if len(keep) < 2:
            raise DataError(f"{data.train.source}: {len(keep)} of {len(lengths)} training caption(s) are at most "
                            f"[train] maxlen_w = {t.maxlen_w} tokens long; nothing to train on")
        files = [f for s in (data.train, data.valid, data.test) for f in s.files]
        prov = collect(files, spec.source)
        extractor = recorded_extractor(files) or spec_extractor(spec)
        model = JointModel.build(spec.model.sentence_encoder, spec.model.image_encoder, vocab, spec.model.dim,
                                 data.train.dim_image, append_eos=spec.model.append_eos,
                                 tokenizer=tokenizer).to(device)
        loss_fn = spec.loss.build().to(device)
        images = torch.from_numpy(data.train.images).to(device)  # copied once: the batches' features index it there
        params = list(model.parameters()) + list(loss_fn.parameters())
        scaler = torch.amp.GradScaler("cuda") if t.precision == "fp16" else None
        batches_per_epoch = len(epoch_batches(lengths[keep], t.batch_size, np.random.default_rng(0), t.bucket, d))
        return cls(rng=rng, vocab=vocab, lengths=lengths, keep=keep, skipped=skipped, prov=prov, model=model,
                   loss_fn=loss_fn, metric=spec.eval.metric.build(),
                   store=CaptionStore(flat, lengths, tokens),
                   needs_texts=getattr(model.sentence_encoder, "needs_texts", False), images=images,
                   cap2img=torch.from_numpy(data.train.cap2img), params=params,
                   optimizer=make_optimizer(params, spec), scaler=scaler, batches_per_epoch=batches_per_epoch,
                   total_steps=batches_per_epoch * t.max_epochs,
                   record={"image_feature_extractor": extractor} if extractor else {})


def spec_extractor(spec: Spec) -> dict[str, Any] | None:
    """The image feature extractor a reader runs itself (``[data.features]``, not ``precomputed``), or None."""
    features = getattr(spec.data.config, "features", None)
    if features is None or not hasattr(features, "to_dict") or features.type == "precomputed":
        return None
    return {k: v for k, v in features.to_dict().items() if k not in RUNTIME_OPTIONS}


def epoch_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, bucket: bool,
                  d: distributed.Dist) -> list[np.ndarray]:
    """One epoch's global batches; a multi-process run drops a last batch too small to give every rank a caption."""
    batches = bucketed_batches(lengths, batch_size, rng, bucket)
    if d.enabled:
        batches = [b for b in batches if len(b) >= d.world_size]
    return batches


class _NoLog:
    """The metrics log of ranks other than 0: they write nothing."""

    def write(self, event: str, step: int, **values: Any) -> None:
        pass

    def offset(self) -> int:
        return 0

    def close(self) -> None:
        pass


def _open_log(spec: Spec, out: Path, spec_dict: dict[str, Any], point: ResumePoint | None, prog: Progress,
              setup: _Setup, data: RunData, d: distributed.Dist, quiet: bool) -> MetricsLog | _NoLog:
    """Rank 0: write the run folder's opening files (a new run) or note the resume; open ``metrics.jsonl``."""
    if not d.is_main:
        return _NoLog()
    t = spec.train
    if point is None:
        if _contents(out):
            clear_run_dir(out)
        atomic_write_text(out / "spec.toml", dumps_toml(spec_dict))
        prov = dict(setup.prov)
        prov["data_report"] = {s.name: s.report for s in (data.train, data.valid, data.test)}
        prov["skipped_over_maxlen_w"] = setup.skipped
        if d.enabled:
            prov["distributed"] = {"world_size": d.world_size, "backend": torch.distributed.get_backend()}
        atomic_write_text(out / "provenance.json", json.dumps(prov, indent=1))
        setup.vocab.save(out / "vocab.json")
        if setup.skipped:
            log.info("skipped %d training caption(s) longer than maxlen_w=%d", setup.skipped, t.maxlen_w)
        mlog = MetricsLog(out / "metrics.jsonl", t.tensorboard, truncate_at=0)
        mlog.write("start", 0, train_captions=int(len(setup.keep)), skipped_over_maxlen_w=setup.skipped,
                   vocab=len(setup.vocab), train_images=data.train.n_images,
                   batches_per_epoch=setup.batches_per_epoch, threads=torch.get_num_threads(),
                   world_size=d.world_size, precision=t.precision)
        return mlog
    state = point.meta["resume"]
    mlog = MetricsLog(out / "metrics.jsonl", t.tensorboard, truncate_at=int(state["metrics_offset"]),
                      purge_step=prog.step)
    _record_resume(out, prog)
    mlog.write("resume", prog.step, epoch=prog.epoch + (prog.pos / len(prog.batches) if prog.batches else 0))
    _repair_best(out, point, prog, setup.model, spec_dict, setup.record)
    if not quiet:
        tqdm.write(f"resuming {out} at step {prog.step} (epoch {prog.epoch + 1}, batch {prog.pos})")
    return mlog


def _check_same_data(out: Path, point: ResumePoint, vocab: Vocab, prov: dict[str, Any]) -> None:
    if point.meta["vocab"] != vocab.words:
        raise CheckpointError(f"{out}: cannot resume: the training captions changed since the run started "
                              f"(the vocabulary differs from {out / 'last.json'}); start over with --force")
    try:
        before = json.loads((out / "provenance.json").read_text(encoding="utf-8")).get("data_files", {})
    except (OSError, ValueError):
        return
    for f, digest in prov["data_files"].items():
        if f in before and before[f] != digest:
            raise CheckpointError(f"{out}: cannot resume: {f} changed since the run started (sha256 differs); "
                                  f"start over with --force")


def _restore(where: Path, point: ResumePoint, model: JointModel, loss_fn: torch.nn.Module, optimizer: torch.optim.Optimizer,
             rng: np.random.Generator, device: torch.device) -> Progress:
    meta, tensors = point.meta, point.tensors
    state = meta["resume"]
    try:
        own = {k: v for k, v in tensors.items() if k.startswith(("sentence_encoder.", "image_encoder."))}
        model.load_state_dict(own, strict=True)
        loss_fn.load_state_dict({k[len("loss."):]: v for k, v in tensors.items() if k.startswith("loss.")},
                                strict=True)
        _load_optimizer_state(optimizer, tensors, state["optimizer"])
        _load_rng_state(rng, device, tensors, state["rng"])
        batches = None
        if "progress.batch_order" in tensors:
            order = tensors["progress.batch_order"].numpy().astype(np.int64)
            sizes = tensors["progress.batch_sizes"].numpy().astype(np.int64)
            batches = list(np.split(order, np.cumsum(sizes)[:-1]))
        return Progress.from_json(state["progress"], batches)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: the saved training state does not fit this run: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _record_resume(out: Path, prog: Progress) -> None:
    """Note the resume in provenance.json (when, from which step)."""
    path = out / "provenance.json"
    try:
        prov = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    from datetime import datetime, timezone

    prov.setdefault("resumed", []).append({"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                           "step": prog.step})
    atomic_write_text(path, json.dumps(prov, indent=1))


def _repair_best(out: Path, point: ResumePoint, prog: Progress, model: JointModel, spec_dict: dict[str, Any],
                 record: dict[str, Any]) -> None:
    """A run stopped between saving its state and its new best: write that best again (same weights)."""
    if "metrics" not in prog.best:
        return
    try:
        _, meta = checkpoint.read_meta(out / "best.json")
        on_disk = meta.get("step")
    except CheckpointError:
        on_disk = None
    if on_disk == prog.best["step"]:
        return
    if prog.best["step"] == prog.step:
        checkpoint.save(out, "best", model, spec_dict, step=prog.step, epoch=prog.best["epoch"],
                        metrics=prog.best["metrics"], extra=record)
    else:
        log.warning("%s: best.json (step %s) does not match the saved state's best (step %s)", out, on_disk,
                    prog.best["step"])


class _Loop:
    """The training loop over :class:`Progress`; :meth:`save_state` writes the resumable ``last`` (rank 0)."""

    def __init__(self, spec: Spec, out: Path, spec_dict: dict[str, Any], setup: _Setup, forward: torch.nn.Module,
                 data: RunData, device: torch.device, mlog: MetricsLog | _NoLog, prog: Progress, quiet: bool,
                 d: distributed.Dist) -> None:
        self.spec, self.out, self.spec_dict, self.setup, self.forward = spec, out, spec_dict, setup, forward
        self.model, self.loss_fn, self.optimizer = setup.model, setup.loss_fn, setup.optimizer
        self.metric, self.rng = setup.metric, setup.rng
        self.data, self.device, self.mlog, self.prog, self.quiet, self.d = data, device, mlog, prog, quiet, d
        self.saved_step: int | None = prog.step if prog.step else None
        self.last_valid: dict[str, Any] | None = None  # the latest validation's metrics (for check_stall)
        self.t_start = time.perf_counter()
        self.t_epoch = time.perf_counter() - prog.epoch_seconds
        self.first_validation = d.is_main  # rank 0 logs the dev data's warnings, once

    def seconds(self) -> float:
        return self.prog.train_seconds + (time.perf_counter() - self.t_start)

    def save_state(self) -> None:
        """Write ``last``: weights, optimizer, loss, RNG, batch order (tensors) + progress (JSON); rank 0 only."""
        p = self.prog
        if not self.d.is_main:
            self.saved_step = p.step
            return
        tensors: dict[str, torch.Tensor] = {f"loss.{k}": v for k, v in self.loss_fn.state_dict().items()}
        opt_tensors, opt_info = _optimizer_state(self.optimizer)
        rng_tensors, rng_info = _rng_state(self.rng, self.device)
        tensors.update(opt_tensors)
        tensors.update(rng_tensors)
        if p.batches is not None:
            tensors["progress.batch_order"] = torch.from_numpy(np.concatenate(p.batches).astype(np.int64))
            tensors["progress.batch_sizes"] = torch.tensor([len(b) for b in p.batches], dtype=torch.int64)
        snapshot = attrs.evolve(p, epoch_seconds=time.perf_counter() - self.t_epoch, train_seconds=self.seconds())
        state = {"format": STATE_FORMAT, "progress": snapshot.to_json(), "optimizer": opt_info, "rng": rng_info,
                 "metrics_offset": self.mlog.offset()}
        epoch = p.epoch + (p.pos / len(p.batches) if p.batches else 0.0)
        checkpoint.save(self.out, "last", self.model, self.spec_dict, step=p.step, epoch=float(epoch),
                        extra_tensors=tensors, extra={**self.setup.record, "resume": state})
        self.saved_step = p.step

    def save_best(self) -> None:
        b = self.prog.best
        if not self.d.is_main:
            return
        checkpoint.save(self.out, "best", self.model, self.spec_dict, step=b["step"], epoch=b["epoch"],
                        metrics=b["metrics"], extra=self.setup.record)

    def validate(self, epoch_f: float) -> bool:
        """Evaluate on the validation split; True when it is a new best (the caller saves state, then best)."""
        p = self.prog
        self.model.eval()
        # model selection always ranks ties against the query; the data warnings are logged once
        m = evaluate_split(self.model, self.data.valid, self.metric, log_warnings=self.first_validation)
        self.first_validation = False
        self.model.train()
        self.last_valid = m
        key = self.metric.selection_key
        self.mlog.write("valid", p.step, epoch=epoch_f, **scalar_metrics(m))
        improved = m[key] > p.best["rsum"]
        if improved:
            p.best = {"rsum": m[key], "step": p.step, "epoch": epoch_f, "metrics": m}
            p.since_best = 0
        else:
            p.since_best += 1
        if not self.quiet:
            tqdm.write(f"[valid] step {p.step} epoch {epoch_f:.2f}: {key} {m[key]:.1f} (best {p.best['rsum']:.1f})")
        return improved

    def no_information(self, global_idx: np.ndarray, step: int, epoch: float) -> None:
        """Add this batch's no-information loss to the epoch's sum (None from then on when the loss has none)."""
        p = self.prog
        if p.noinfo_sum is None:
            return
        value_of = getattr(self.loss_fn, "no_information_value", None)
        value = value_of(self.setup.cap2img[global_idx], step=step, epoch=epoch) if value_of else None
        p.noinfo_sum = None if value is None else p.noinfo_sum + float(value)

    def check_stall(self, epoch: int, batches: int) -> None:
        """After each epoch: warn (one line, shown with -q too) and log a ``stall`` event when training goes nowhere.

        Stalled: the dev rsum is at most 2 x its chance value, or the epoch's mean
        loss is within 2 % of the mean no-information value of its batches (see
        :func:`stall_reasons`). A model checked by another metric than rsum is
        judged by its loss only.
        """
        p, m = self.prog, self.last_valid
        rsum = m.get("rsum") if m is not None and "rsum" in m else None
        chance = split_chance_rsum(self.data.valid, getattr(getattr(self.metric, "config", None), "ks", DEFAULT_KS)) \
            if rsum is not None else None
        mean_loss = p.loss_sum / max(batches, 1)
        noinfo = p.noinfo_sum / max(batches, 1) if p.noinfo_sum is not None and batches else None
        reasons = stall_reasons(rsum, chance, mean_loss, noinfo)
        if not reasons:
            return
        advice = getattr(self.loss_fn, "stall_advice", lambda: "a lower [train] lr")()
        self.mlog.write("stall", p.step, epoch=epoch, reasons=reasons, rsum=rsum, chance_rsum=chance,
                        mean_loss=mean_loss, no_information_loss=noinfo, loss=self.spec.loss.type, advice=advice)
        if self.d.is_main:
            log.warning("epoch %d: training looks stalled: %s; what usually helps: %s (lr is %g)", epoch,
                        "; ".join(reasons), advice, self.spec.train.lr)

    def interrupted(self) -> TrainingInterrupted:
        return TrainingInterrupted(f"interrupted: training state saved at step {self.prog.step} in "
                                   f"{self.out / 'last.json'}; run the same command with --resume to continue")

    def run(self, total_steps: int) -> None:
        spec, t, p, su, d = self.spec, self.spec.train, self.prog, self.setup, self.d
        keep, lengths, store, images, cap2img = su.keep, su.lengths, su.store, su.images, su.cap2img
        early = t.early_stopping
        pin = self.device.type == "cuda"
        self.model.train()
        with _InterruptFlag(self.quiet) as flag:
            while p.epoch < t.max_epochs and not p.stop:
                epoch = p.epoch
                if p.batches is None:
                    p.batches = epoch_batches(lengths[keep], t.batch_size, self.rng, t.bucket, d)
                    p.pos, p.seen, p.loss_sum, p.noinfo_sum = 0, 0, 0.0, 0.0
                    self.t_epoch = time.perf_counter()
                batches = p.batches
                n = len(batches)
                bar = tqdm(total=n, initial=p.pos, desc=f"epoch {epoch + 1}/{t.max_epochs}", disable=self.quiet,
                           leave=False, unit="batch")
                while p.pos < n:
                    i = p.pos
                    global_idx = keep[batches[i]]
                    idx, sizes = d.split(global_idx)  # this rank's share
                    lr = lr_at(spec, p.step, epoch, total_steps)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    batch = store.batch(idx, with_texts=su.needs_texts)
                    ids = cap2img[idx]
                    if pin:
                        batch, ids = batch.pin_memory(), ids.pin_memory()
                    batch = batch.to(self.device)
                    ids = ids.to(self.device, non_blocking=True)
                    loss_value = train_step(self.model, self.loss_fn, self.optimizer, su.params, batch, images[ids],
                                            ids, t.grad_clip, step=p.step, epoch=epoch + i / n,
                                            forward=self.forward, sizes=sizes, scaler=su.scaler)
                    if not math.isfinite(loss_value):
                        bar.close()
                        saved = f"step {self.saved_step}" if self.saved_step else "no step yet"
                        raise TrainingDiverged(
                            f"{self.spec.source or '<spec>'}: [train] lr: the training loss became {loss_value} at step "
                            f"{p.step + 1} (epoch {epoch + 1}); lower train.lr or set train.grad_clip (the run folder "
                            f"{self.out} holds the state of {saved})")
                    self.no_information(global_idx, p.step, epoch + i / n)
                    p.step += 1
                    p.pos += 1
                    p.seen += len(global_idx)
                    p.loss_sum += loss_value
                    bar.update(1)
                    if p.step % t.disp_freq == 0:
                        rate = p.seen / max(time.perf_counter() - self.t_epoch, 1e-9)
                        self.mlog.write("train", p.step, epoch=epoch + p.pos / n, loss=loss_value, lr=lr,
                                        captions_per_s=rate)
                        bar.set_postfix(loss=f"{loss_value:.3f}", caps_s=f"{rate:.0f}")
                    if t.valid_freq and p.step % t.valid_freq == 0:
                        if self.validate(epoch + p.pos / n):
                            self.save_state()
                            self.save_best()
                        if early and p.since_best >= early:
                            p.stop = True
                            break
                    if t.save_freq and p.step % t.save_freq == 0 and self.saved_step != p.step:
                        self.save_state()
                    if d.any(flag.hit):
                        if self.saved_step != p.step:
                            self.save_state()
                        bar.close()
                        raise self.interrupted()
                bar.close()
                elapsed = time.perf_counter() - self.t_epoch
                self.mlog.write("epoch", p.step, epoch=epoch + 1, mean_loss=p.loss_sum / max(n, 1),
                                captions_per_s=p.seen / max(elapsed, 1e-9), seconds=elapsed)
                improved = False
                if not p.stop and not (t.valid_freq and p.step % t.valid_freq == 0):
                    improved = self.validate(float(epoch + 1))
                if not self.quiet:
                    tqdm.write(f"epoch {epoch + 1}: mean loss {p.loss_sum / max(n, 1):.4f}, "
                               f"{p.seen / max(elapsed, 1e-9):.0f} captions/s")
                self.check_stall(epoch + 1, p.pos)
                if p.stop or (early and p.since_best >= early):
                    log.info("early stopping: no %s improvement in %d validations", self.metric.selection_key, early)
                    p.stop = True
                p.epoch += 1
                p.batches = None
                p.pos, p.seen, p.loss_sum, p.noinfo_sum = 0, 0, 0.0, 0.0
                self.t_epoch = time.perf_counter()
                self.save_state()
                if improved:
                    self.save_best()
                if d.any(flag.hit):
                    raise self.interrupted()
        if self.saved_step != p.step:
            self.save_state()


def _finish(spec: Spec, out: Path, loop: _Loop, model: JointModel, metric: Any, data: RunData, keep: np.ndarray,
            skipped: int, mlog: MetricsLog, quiet: bool) -> dict[str, Any]:
    t, p = spec.train, loop.prog
    train_seconds = loop.seconds()
    best_model, _, _ = checkpoint.load(out / "best.json")
    best_model.to(loop.device)
    test_metrics = evaluate_split(best_model, data.test, metric, folds=spec.eval.folds, ties=spec.eval.ties)
    mlog.write("test", p.step, split=spec.eval.split, **scalar_metrics(test_metrics))
    valid_metrics = p.best.get("metrics", {})
    results = {
        "name": spec.name,
        "seed": t.seed,
        "best_step": p.best["step"],
        "best_epoch": p.best["epoch"],
        "steps": p.step,
        "train_seconds": train_seconds,
        "train_captions": int(len(keep)),
        "skipped_over_maxlen_w": skipped,
        "valid": {"split": t.valid_split, **valid_metrics},
        "test": {"split": spec.eval.split, **test_metrics},
        "warnings": list(dict.fromkeys(valid_metrics.get("warnings", []) + test_metrics["warnings"])),
        "run_dir": str(out),
    }
    write_results(out, results)
    if not spec.output.save_last:  # the state was only kept for resuming
        for name in ("last.json", "last.safetensors"):
            (out / name).unlink(missing_ok=True)
    if not quiet:
        print(format_table({f"{spec.eval.split} (best {t.valid_split} rsum at epoch {p.best['epoch']:.2f})": test_metrics}))
        print(f"results: {out / 'results.json'}")
    return results


def train_seeds(spec: Spec, n: int, out: str | Path | None = None, *, quiet: bool = False,
                force: bool = False, resume: bool = False) -> dict[str, Any]:
    """Run ``n`` repeats with seeds ``train.seed + k`` into ``out/seedK``; report mean and std of every column.

    With ``resume``, finished seeds are read back, an interrupted one continues, the rest start.
    """
    if resume and force:
        raise CheckpointError("--resume continues a run and --force starts it over: choose one")
    out = run_dir(spec, out)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is not a folder; choose another with --out")
    check_free(out)
    if resume and not out.is_dir():
        raise CheckpointError(f"{out}: nothing to resume (no such folder); run without --resume to start")
    if not resume and _contents(out) and not force:
        raise CheckpointError(f"{out}: run folder exists and is not empty; pass --force to replace it, "
                              f"--resume to continue it, or choose another with --out")
    data = load_data(spec)
    seeded = [attrs.evolve(spec, train=attrs.evolve(spec.train, seed=spec.train.seed + k)) for k in range(n)]
    for s in seeded:  # refuse a folder in use or not ours before the first seed starts
        sub = out / f"seed{s.train.seed}"
        if resume and (sub / "spec.toml").exists():
            find_resume_point(sub, s.to_dict())
        else:
            check_run_dir(sub, force or resume)
    runs = []
    d, _ = distributed.setup(resolve_device(spec), spec.source or "<spec>")
    with d.main_only(RunLock(out)):
        for s in seeded:
            sub = out / f"seed{s.train.seed}"
            again = resume and (sub / "spec.toml").exists()
            runs.append(train(s, sub, quiet=quiet, force=(force or resume) and not again, resume=again, data=data))
        return d.broadcast(summarize_runs(runs, out, quiet=quiet) if d.is_main else None)


def summarize_runs(runs: list[dict[str, Any]], out: str | Path, *, quiet: bool = False) -> dict[str, Any]:
    """Mean and sample std of every test column over repeated runs; written to ``out/summary.json``."""
    tests = [r["test"] for r in runs]
    n = len(runs)
    keys = [k for k in tests[0] if isinstance(tests[0][k], (int, float)) and k != "split"]
    mean = {k: float(np.mean([m[k] for m in tests])) for k in keys}
    std = {k: float(np.std([m[k] for m in tests], ddof=1)) if n > 1 else 0.0 for k in keys}
    summary = {"name": runs[0]["name"], "seeds": [r["seed"] for r in runs], "split": tests[0].get("split"),
               "mean": mean, "std": std, "runs": [{"seed": r["seed"], "test": r["test"], "valid": r["valid"],
                                                    "best_epoch": r["best_epoch"], "train_seconds": r["train_seconds"],
                                                    "run_dir": r["run_dir"]} for r in runs]}
    atomic_write_text(Path(out) / "summary.json", json.dumps(summary, indent=1))
    if not quiet:
        print(format_table({f"mean of {n} seeds": mean}, std={f"mean of {n} seeds": std}))
        print(f"summary: {Path(out) / 'summary.json'}")
    return summary
