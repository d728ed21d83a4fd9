"""The training loop: epochs of bucketed batches, one optimisation step each, validation and model selection,
the stall check, Ctrl-C, and the resumable state written along the way.

The ``last`` state is written at every epoch end, every ``train.save_freq``
steps, whenever a new best model is found (just before ``best``), and on
Ctrl-C (:mod:`vsekit.training.state`).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vsekit import checkpoint
from vsekit.errors import VsekitError
from vsekit.evaluate import evaluate_split, scalar_metrics
from vsekit.metrics import DEFAULT_KS
from vsekit.model import JointModel
from vsekit.spec import Spec
from vsekit.training.metrics_log import MetricsLog, NoLog
from vsekit.training.setup import RunContext, epoch_batches, epoch_views
from vsekit.training.stall import split_chance_rsum, stall_reasons
from vsekit.training.state import Progress, save_last

log = logging.getLogger(__name__)


class TrainingInterrupted(VsekitError):
    """Ctrl-C during training: the state was saved; the CLI exits with status 130."""

    exit_code = 130
    prefix = ""


class TrainingDiverged(VsekitError):
    """The loss became NaN or infinite: the spec's optimisation settings need changing."""


def lr_at(spec: Spec, step: int, epoch: int, total_steps: int) -> float:
    """The learning rate of ``step`` (0-based) in ``epoch`` (0-based) under ``train.lr_schedule``, times
    ``(step + 1) / warmup_steps`` during the first ``train.warmup_steps`` steps (linear warm-up)."""
    t = spec.train
    warm = min(1.0, (step + 1) / t.warmup_steps) if t.warmup_steps else 1.0
    if t.lr_schedule == "step":
        return warm * t.lr * (t.lr_gamma ** (epoch // t.lr_step_epochs))
    if t.lr_schedule == "cosine":
        return warm * 0.5 * t.lr * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    return warm * t.lr


def train_step(model: JointModel, loss_fn: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Any,
               feats: torch.Tensor, ids: torch.Tensor, *, params: list[torch.nn.Parameter] | None = None,
               grad_clip: float = 0.0, step: int = 0, epoch: float = 0.0, forward: torch.nn.Module | None = None,
               sizes: list[int] | None = None, scaler: Any = None) -> float:
    """One optimisation step on one batch; returns the loss (a Python float).

    ``feats`` are the batch's image features ``(B, dim_image)``, ``ids`` its
    ``(B,)`` int64 image ids. ``params`` (the model's and the loss's
    parameters by default) are clipped to ``grad_clip`` (0: no clipping).
    ``forward`` replaces ``loss_fn(*model(batch, feats), ids)`` — the trainer passes a
    :class:`~vsekit.training.distributed.GlobalBatchLoss` (DDP-wrapped in a multi-process run);
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
        if params is None:
            params = list(model.parameters()) + list(loss_fn.parameters())
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return loss.item()


class InterruptFlag:
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

    def __enter__(self) -> InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


class Loop:
    """The training loop over :class:`Progress`; :meth:`save_state` writes the resumable ``last`` (rank 0)."""

    def __init__(self, ctx: RunContext, forward: torch.nn.Module, mlog: MetricsLog | NoLog, prog: Progress) -> None:
        self.ctx, self.forward, self.mlog, self.prog = ctx, forward, mlog, prog
        self.spec, self.out, self.setup, self.data = ctx.spec, ctx.out, ctx.setup, ctx.data
        self.device, self.quiet, self.d = ctx.device, ctx.quiet, ctx.d
        self.model, self.loss_fn, self.optimizer = ctx.setup.model, ctx.setup.loss_fn, ctx.setup.optimizer
        self.metric = ctx.setup.metric
        self.saved_step: int | None = prog.step if prog.step else None
        self.last_valid: dict[str, Any] | None = None  # the latest validation's metrics (for check_stall)
        self.t_start = time.perf_counter()
        self.t_epoch = time.perf_counter() - prog.epoch_seconds
        self.first_validation = ctx.d.is_main  # rank 0 logs the dev data's warnings, once
        self.flag = InterruptFlag(ctx.quiet)

    def seconds(self) -> float:
        """Seconds of training so far, over every resumed part of the run."""
        return self.prog.train_seconds + (time.perf_counter() - self.t_start)

    def save_state(self) -> None:
        """Write ``last`` (see :func:`vsekit.training.state.save_last`); rank 0 only."""
        if self.d.is_main:
            save_last(self.ctx, self.prog, metrics_offset=self.mlog.offset(), seconds=self.seconds(),
                      epoch_seconds=time.perf_counter() - self.t_epoch)
        self.saved_step = self.prog.step

    def save_best(self) -> None:
        """Write ``best`` from the progress's best (rank 0)."""
        b = self.prog.best
        if not self.d.is_main:
            return
        checkpoint.save(self.out, "best", self.model, self.ctx.spec_dict, step=b["step"], epoch=b["epoch"],
                        metrics=b["metrics"], extra=self.setup.record)

    def validate(self, epoch_f: float) -> bool:
        """Evaluate on the validation split; True when it is a new best (the caller saves state, then best)."""
        p = self.prog
        self.model.eval()
        # model selection always ranks ties against the query; the data warnings are logged once
        m = evaluate_split(self.model, self.data.valid, self.metric, log_warnings=self.first_validation,
                           strict_protocol=self.spec.eval.strict_protocol)
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
        :func:`~vsekit.training.stall.stall_reasons`). A model checked by another metric than rsum is
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
        advice = getattr(self.loss_fn, "stall_advice", lambda: "another [train] lr")()
        self.mlog.write("stall", p.step, epoch=epoch, reasons=reasons, rsum=rsum, chance_rsum=chance,
                        mean_loss=mean_loss, no_information_loss=noinfo, loss=self.spec.loss.type, advice=advice)
        if self.d.is_main:
            log.warning("epoch %d: training looks stalled: %s; what usually helps: %s (lr is %g)", epoch,
                        "; ".join(reasons), advice, self.spec.train.lr)

    def interrupted(self) -> TrainingInterrupted:
        """The error that ends a run after Ctrl-C (its state saved)."""
        return TrainingInterrupted(f"interrupted: training state saved at step {self.prog.step} in "
                                   f"{self.out / 'last.json'}; run the same command with --resume to continue")

    def run(self) -> None:
        """Train until ``max_epochs``, early stopping, Ctrl-C (raises :class:`TrainingInterrupted`) or a
        diverged loss (raises :class:`TrainingDiverged`)."""
        p, t = self.prog, self.spec.train
        self.model.train()
        with self.flag:
            while p.epoch < t.max_epochs and not p.stop:
                self.run_epoch()
        if self.saved_step != p.step:
            self.save_state()

    def run_epoch(self) -> None:
        """The epoch in progress, from its position, then its end (validation, stall check, state)."""
        p, t, su = self.prog, self.spec.train, self.setup
        epoch = p.epoch
        epoch_views(su, t.seed, epoch)  # per-view features: this epoch's view of each image
        if p.batches is None:
            p.batches = epoch_batches(su.lengths[su.keep], t.batch_size, su.rng, t.bucket, self.d)
            p.pos, p.seen, p.loss_sum, p.noinfo_sum = 0, 0, 0.0, 0.0
            self.t_epoch = time.perf_counter()
        n = len(p.batches)
        bar = tqdm(total=n, initial=p.pos, desc=f"epoch {epoch + 1}/{t.max_epochs}", disable=self.quiet,
                   leave=False, unit="batch")
        try:
            while p.pos < n and not self.step(epoch, n, bar):
                pass
        finally:
            bar.close()
        self.end_epoch(epoch, n)

    def step(self, epoch: int, n: int, bar: Any) -> bool:
        """One step on the next batch of ``epoch`` (``n`` batches); True when early stopping ends the epoch."""
        p, t, su, d = self.prog, self.spec.train, self.setup, self.d
        i = p.pos
        global_idx = su.keep[p.batches[i]]
        idx, sizes = d.split(global_idx)  # this rank's share
        lr = lr_at(self.spec, p.step, epoch, su.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        batch, ids = su.store.batch(idx, with_texts=su.needs_texts), su.cap2img[idx]
        if self.device.type == "cuda":
            batch, ids = batch.pin_memory(), ids.pin_memory()
        batch, ids = batch.to(self.device), ids.to(self.device, non_blocking=True)
        loss_value = train_step(self.model, self.loss_fn, self.optimizer, batch, su.images[ids], ids,
                                params=su.params, grad_clip=t.grad_clip, step=p.step, epoch=epoch + i / n,
                                forward=self.forward, sizes=sizes, scaler=su.scaler)
        if not math.isfinite(loss_value):
            saved = f"step {self.saved_step}" if self.saved_step else "no step yet"
            raise TrainingDiverged(
                f"{self.spec.source or '<spec>'}: [train] lr: the training loss became {loss_value} at step "
                f"{p.step + 1} (epoch {epoch + 1}); lower train.lr or set train.grad_clip (the run folder "
                f"{self.out} holds the state of {saved})")
        self.no_information(global_idx, p.step, epoch + i / n)
        p.step, p.pos, p.seen, p.loss_sum = p.step + 1, p.pos + 1, p.seen + len(global_idx), p.loss_sum + loss_value
        p.window_sum, p.window_n = p.window_sum + loss_value, p.window_n + 1
        bar.update(1)
        if p.step % t.disp_freq == 0:
            self.log_window(epoch, epoch + p.pos / n, lr, bar)
        if t.valid_freq and p.step % t.valid_freq == 0:
            if self.validate(epoch + p.pos / n):
                self.save_state()
                self.save_best()
            if t.early_stopping and p.since_best >= t.early_stopping:
                p.stop = True
                return True
        if t.save_freq and p.step % t.save_freq == 0 and self.saved_step != p.step:
            self.save_state()
        if d.any(self.flag.hit):
            if self.saved_step != p.step:
                self.save_state()
            raise self.interrupted()
        return False

    def log_window(self, epoch: int, epoch_f: float, lr: float | None = None, bar: Any = None) -> None:
        """Write the ``train`` event closing the logging window: ``loss`` is the mean loss of its ``batches``
        (every batch since the previous ``train`` event), ``lr`` the last step's; then start a new window."""
        p = self.prog
        if lr is None:
            lr = lr_at(self.spec, p.step - 1, epoch, self.setup.total_steps)
        rate = p.seen / max(time.perf_counter() - self.t_epoch, 1e-9)
        mean = p.window_sum / max(p.window_n, 1)
        self.mlog.write("train", p.step, epoch=epoch_f, loss=mean, batches=p.window_n, lr=lr, captions_per_s=rate)
        if bar is not None:
            bar.set_postfix(loss=f"{mean:.3f}", caps_s=f"{rate:.0f}")
        p.window_sum, p.window_n = 0.0, 0

    def end_epoch(self, epoch: int, n: int) -> None:
        """After the epoch's last step: log it (and its last, partial logging window), validate (unless just
        done), check for a stall, save the state."""
        p, t, early = self.prog, self.spec.train, self.spec.train.early_stopping
        if p.window_n:
            self.log_window(epoch, epoch + p.pos / max(n, 1))
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
        if self.d.any(self.flag.hit):
            raise self.interrupted()
