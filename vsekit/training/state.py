"""The resumable state of a run: the ``last`` checkpoint and what ``--resume`` reads back.

The state is model weights, optimizer state, loss parameters, RNG states and
the epoch's batch order as safetensors tensors; step, position, best-so-far
and the early-stopping counter (:class:`Progress`) as JSON, with the torch
thread count and device that computed it (``runtime``).

What resume guarantees: a run resumed with the same torch thread count and on
the same device ends bit-identical (weights and metrics) to an uninterrupted
one. Another thread count changes the order of floating-point sums inside
torch's kernels, so the numbers then differ in the last digits (7e-6 on the
recalls was seen); another device differs more. Resuming with either changed
is allowed (``train.threads`` and ``train.device`` may change), and warns once:
a ``warning`` log line and an entry in ``results.json``'s ``warnings``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import tomllib
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from vsekit import checkpoint
from vsekit.config import portable
from vsekit.errors import CheckpointError, DataError, VsekitError
from vsekit.limits import read_json, read_toml
from vsekit.spec import dumps_toml
from vsekit.training.manifest import is_vsekit_run
from vsekit.training.setup import RunContext, Setup

log = logging.getLogger(__name__)

STATE_FORMAT = "vsekit-train-state/1"
#: spec keys a resumed run may change: they do not change what is computed
RESUMABLE_CHANGES = ("train.threads", "train.device", "train.tensorboard", "output.dir")


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
    window_sum: float = 0.0  # the losses of the batches since the last ``train`` log line (the logging window)
    window_n: int = 0  # how many batches that is
    epoch_seconds: float = 0.0
    train_seconds: float = 0.0
    best: dict[str, Any] = attrs.Factory(lambda: {"rsum": -math.inf, "step": 0, "epoch": 0})
    since_best: int = 0
    stop: bool = False
    warnings: list[str] = attrs.Factory(list)  # said on resume (another thread count or device), for results.json

    def to_json(self) -> dict[str, Any]:
        """The progress as JSON values (the batch order aside: it is saved as tensors)."""
        best = dict(self.best)
        if best["rsum"] == -math.inf:
            best["rsum"] = None
        return {"step": self.step, "epoch": self.epoch, "pos": self.pos, "seen": self.seen,
                "loss_sum": self.loss_sum, "noinfo_sum": self.noinfo_sum, "epoch_seconds": self.epoch_seconds,
                "window_sum": self.window_sum, "window_n": self.window_n,
                "train_seconds": self.train_seconds,
                "best": best, "since_best": self.since_best, "stop": self.stop, "warnings": list(self.warnings)}

    @classmethod
    def from_json(cls, d: dict[str, Any], batches: list[np.ndarray] | None) -> Progress:
        """The inverse of :meth:`to_json`, with the epoch's batch order."""
        best = dict(d["best"])
        if best.get("rsum") is None:
            best["rsum"] = -math.inf
        return cls(step=int(d["step"]), epoch=int(d["epoch"]), pos=int(d["pos"]), batches=batches,
                   seen=int(d["seen"]), loss_sum=float(d["loss_sum"]),
                   noinfo_sum=None if d.get("noinfo_sum") is None else float(d["noinfo_sum"]),  # None: older state
                   epoch_seconds=float(d["epoch_seconds"]),
                   window_sum=float(d.get("window_sum", 0.0)), window_n=int(d.get("window_n", 0)),  # 0: older state
                   train_seconds=float(d["train_seconds"]), best=best, since_best=int(d["since_best"]),
                   stop=bool(d["stop"]), warnings=[str(w) for w in d.get("warnings", [])])  # none: older state


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The optimizer's state as tensors (``optimizer.IDX.KEY``) and JSON (param groups, scalar entries)."""
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


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                         info: dict[str, Any]) -> None:
    """Load what :func:`optimizer_state` returned into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, values in info.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in info["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_state(rng: np.random.Generator, device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """torch's (and CUDA's) RNG states as tensors; the run's, numpy's and Python's generators as JSON."""
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


def load_rng_state(rng: np.random.Generator, device: torch.device, tensors: dict[str, torch.Tensor],
                   info: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
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


def save_last(ctx: RunContext, prog: Progress, *, metrics_offset: int, seconds: float, epoch_seconds: float) -> None:
    """Write the ``last`` checkpoint: weights, optimizer, loss, RNG, batch order (tensors) + progress (JSON)."""
    su = ctx.setup
    tensors: dict[str, torch.Tensor] = {f"loss.{k}": v for k, v in su.loss_fn.state_dict().items()}
    opt_tensors, opt_info = optimizer_state(su.optimizer)
    rng_tensors, rng_info = rng_state(su.rng, ctx.device)
    tensors.update(opt_tensors)
    tensors.update(rng_tensors)
    if prog.batches is not None:
        tensors["progress.batch_order"] = torch.from_numpy(np.concatenate(prog.batches).astype(np.int64))
        tensors["progress.batch_sizes"] = torch.tensor([len(b) for b in prog.batches], dtype=torch.int64)
    snapshot = attrs.evolve(prog, epoch_seconds=epoch_seconds, train_seconds=seconds)
    state = {"format": STATE_FORMAT, "progress": snapshot.to_json(), "optimizer": opt_info, "rng": rng_info,
             "metrics_offset": metrics_offset, "runtime": runtime(ctx.device)}
    epoch = prog.epoch + (prog.pos / len(prog.batches) if prog.batches else 0.0)
    checkpoint.save(ctx.out, "last", su.model, ctx.spec_dict, step=prog.step, epoch=float(epoch),
                    extra_tensors=tensors, extra={**su.record, "resume": state})


def runtime(device: torch.device) -> dict[str, Any]:
    """What a resumed run must share with the saved one to end bit-identical: ``{"threads": torch's intra-op
    thread count (int), "device": "cpu" / "cuda:0" (str)}``."""
    return {"threads": torch.get_num_threads(), "device": str(device)}


def runtime_warning(where: Path, saved: Any, device: torch.device) -> str | None:
    """The warning for resuming the state saved at ``where`` with another thread count or device than
    ``saved`` (its ``runtime``); None when they are the same, or the state (older than this record) has none."""
    if not isinstance(saved, dict):
        return None
    now = runtime(device)
    if saved.get("threads") == now["threads"] and saved.get("device") == now["device"]:
        return None
    return (f"{where}: resumed with {now['threads']} torch thread(s) on {now['device']}, but the state was saved "
            f"with {saved.get('threads')} on {saved.get('device')}: the results may differ from an uninterrupted "
            f"run in the last digits (resume is bit-identical only at the same thread count and device; "
            f"[train] threads and device set them)")


def note_runtime(ctx: RunContext, point: ResumePoint, prog: Progress) -> None:
    """On resume: when this process has another thread count or device than the saved state, log
    :func:`runtime_warning` once (rank 0) and keep it in ``prog.warnings`` (saved with the state, then written to
    ``results.json``)."""
    warning = runtime_warning(ctx.out / "last.json", point.meta["resume"].get("runtime"), ctx.device)
    if warning is not None:
        prog.warnings.append(warning)
        if ctx.d.is_main:
            log.warning("%s", warning)


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


def _with_defaults(saved: dict[str, Any], path: Path, own: dict[str, Any]) -> dict[str, Any]:
    """A saved spec as this version writes it: keys added since the run started take their defaults.

    Code it names is imported only when the user's own spec ``own`` names the same (then it ran already); a run
    folder naming other code is compared as written, which reports the difference.
    """
    from vsekit import spec as spec_mod

    trusted = {n for _, n in spec_mod.code_names(own)}
    try:
        return spec_mod.from_dict(saved, source=str(path), base=path.parent,
                                  trust_code={n for _, n in spec_mod.code_names(saved)} <= trusted).to_dict()
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
    """Check that ``out`` is a run folder of this very spec and read its latest state (changes nothing).

    Raises:
        CheckpointError: no such run folder, another spec, or a saved state that is not a resumable one.
    """
    if not out.is_dir():
        raise CheckpointError(f"{out}: nothing to resume (no such run folder); run without --resume to start")
    spec_path = out / "spec.toml"
    if not spec_path.is_file():
        raise CheckpointError(f"{out}: nothing to resume: not a vsekit run folder (no spec.toml)")
    if not is_vsekit_run(out):
        raise CheckpointError(f"{out}: nothing to resume: not a vsekit run folder (no .vsekit-run manifest, no "
                              f"provenance.json written by vsekit); --resume takes over only vsekit's run folders")
    try:
        saved = read_toml(spec_path, CheckpointError)  # size and nesting bounded (vsekit.limits)
    except OSError as exc:
        raise CheckpointError(f"{spec_path}: cannot read the run's spec: {exc}") from None
    changes = spec_changes(_with_defaults(saved, spec_path, spec_dict), spec_dict)
    if changes:
        shown = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
        raise CheckpointError(f"{out}: cannot resume: the spec differs from the one this run started with "
                              f"({spec_path}): {shown}. Restore it, or start over with --force")
    results_path = out / "results.json"
    if results_path.is_file():
        try:
            results = read_json(results_path)
        except (OSError, DataError):
            results = None  # a results file we cannot read: resume from the state and write it again
        if isinstance(results, dict) and isinstance(results.get("test"), dict):
            return ResumePoint("finished", results=results)
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


def check_same_data(out: Path, point: ResumePoint, setup: Setup) -> None:
    """Raise :class:`CheckpointError` when the training captions or a data file changed since the run started."""
    if point.meta["vocab"] != setup.vocab.words:
        raise CheckpointError(f"{out}: cannot resume: the training captions changed since the run started "
                              f"(the vocabulary differs from {out / 'last.json'}); start over with --force")
    try:
        before = read_json(out / "provenance.json").get("data_files", {})
    except (OSError, DataError, AttributeError):
        return
    for f, digest in setup.prov["data_files"].items():
        was = before.get(portable(f, out), before.get(f))  # recorded relative to the run folder (absolute before 0.3)
        if was is not None and was != digest:
            raise CheckpointError(f"{out}: cannot resume: {f} changed since the run started (sha256 differs); "
                                  f"start over with --force")


def restore(where: Path, point: ResumePoint, setup: Setup, device: torch.device) -> Progress:
    """Load the saved state into the model, loss, optimizer and generators of ``setup``; return its progress.

    Raises:
        CheckpointError: the state does not fit this run (other shapes, missing tensors).
    """
    meta, tensors = point.meta, point.tensors
    state = meta["resume"]
    try:
        own = {k: v for k, v in tensors.items() if k.startswith(("sentence_encoder.", "image_encoder."))}
        setup.model.load_state_dict(own, strict=True)
        setup.loss_fn.load_state_dict({k[len("loss."):]: v for k, v in tensors.items() if k.startswith("loss.")},
                                      strict=True)
        load_optimizer_state(setup.optimizer, tensors, state["optimizer"])
        load_rng_state(setup.rng, device, tensors, state["rng"])
        batches = None
        if "progress.batch_order" in tensors:
            order = tensors["progress.batch_order"].numpy().astype(np.int64)
            sizes = tensors["progress.batch_sizes"].numpy().astype(np.int64)
            batches = list(np.split(order, np.cumsum(sizes)[:-1]))
        return Progress.from_json(state["progress"], batches)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: the saved training state does not fit this run: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def repair_best(ctx: RunContext, prog: Progress) -> None:
    """A run stopped between saving its state and its new best: write that best again (same weights)."""
    out = ctx.out
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
        checkpoint.save(out, "best", ctx.setup.model, ctx.spec_dict, step=prog.step, epoch=prog.best["epoch"],
                        metrics=prog.best["metrics"], extra=ctx.setup.record)
    else:
        log.warning("%s: best.json (step %s) does not match the saved state's best (step %s)", out, on_disk,
                    prog.best["step"])
