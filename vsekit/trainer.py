"""The training loop: bucketed batches, Adam, clipping, schedules, validation, selection, checkpoints.

Everything that can fail on user input (spec, data) is checked before the
run folder is created, so a refused run leaves nothing on disk.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from tqdm.auto import tqdm

from vsekit import checkpoint
from vsekit.data.batching import CaptionStore, bucketed_batches
from vsekit.data.readers import Split
from vsekit.data.vocab import Vocab, encode_all
from vsekit.errors import CheckpointError, DataError
from vsekit.evaluate import COLUMNS, evaluate_split, format_table
from vsekit.io import atomic_write_text
from vsekit.model import JointModel
from vsekit.provenance import collect
from vsekit.spec import Spec, dumps_toml

log = logging.getLogger(__name__)


@attrs.define
class RunData:
    train: Split
    valid: Split
    test: Split


def load_data(spec: Spec) -> RunData:
    """Read the train, validation and evaluation splits (errors surface here, before anything is written)."""
    reader = spec.data.build()
    train = reader.read("train")
    valid = reader.read(spec.train.valid_split)
    test = valid if spec.eval.split == spec.train.valid_split else reader.read(spec.eval.split)
    for s in (valid, test):
        if s.dim_image != train.dim_image:
            raise DataError(f"{s.source}: {s.dim_image}-d image features, but the train split has {train.dim_image}-d")
    if spec.eval.folds and test.n_images % spec.eval.folds:
        raise DataError(f"[eval] folds: {test.n_images} test images do not split into {spec.eval.folds} equal folds")
    return RunData(train, valid, test)


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def prepare_run_dir(out: Path, force: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not force:
            raise CheckpointError(f"{out}: run folder exists and is not empty; pass --force to replace it, "
                                  f"or choose another with --out")
        if not (out / "spec.toml").exists():
            raise CheckpointError(f"{out}: not a vsekit run folder (no spec.toml); refusing to delete it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (and to TensorBoard when asked and installed)."""

    def __init__(self, path: Path, tensorboard: bool) -> None:
        self.fh = open(path, "a", encoding="utf-8")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(path.parent / "tensorboard"))
            except ImportError:
                log.warning("tensorboard requested but not installed (pip install tensorboard); metrics go to JSONL only")

    def write(self, event: str, step: int, **values: Any) -> None:
        self.fh.write(json.dumps({"event": event, "step": step, **values}) + "\n")
        self.fh.flush()
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(f"{event}/{k}", v, step)

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


def train_step(model: JointModel, loss_fn: torch.nn.Module, optimizer: torch.optim.Optimizer,
               params: list[torch.nn.Parameter], batch: Any, feats: torch.Tensor, ids: torch.Tensor,
               grad_clip: float, step: int = 0, epoch: float = 0.0) -> float:
    """One optimisation step on one batch; returns the loss."""
    im, s = model(batch, feats)
    loss = loss_fn(im, s, ids, step=step, epoch=epoch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return loss.item()


def train(spec: Spec, out: str | Path | None = None, *, quiet: bool = False, force: bool = False,
          data: RunData | None = None) -> dict[str, Any]:
    """Train a model as ``spec`` says, select it on the validation split, evaluate it; return the results."""
    t = spec.train
    if t.threads:
        torch.set_num_threads(t.threads)
    device = torch.device(t.device if t.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    data = data or load_data(spec)
    rng = seed_everything(t.seed)
    vocab = Vocab.build(data.train.captions, spec.vocab.min_count, spec.vocab.max_size)
    model = JointModel.build(spec.model.sentence_encoder, spec.model.image_encoder, vocab, spec.model.dim,
                             data.train.dim_image, append_eos=spec.model.append_eos).to(device)
    loss_fn = spec.loss.build().to(device)
    metric = spec.eval.metric.build()

    flat, lengths = encode_all(vocab, data.train.captions, append_eos=spec.model.append_eos)
    keep = np.flatnonzero(lengths <= t.maxlen_w)
    skipped = int(len(lengths) - len(keep))
    store = CaptionStore(flat, lengths, data.train.captions)
    needs_texts = getattr(model.sentence_encoder, "needs_texts", False)
    images = torch.from_numpy(data.train.images).to(device)
    cap2img = torch.from_numpy(data.train.cap2img)

    out = Path(out) if out is not None else Path(spec.output.dir or Path("runs") / spec.name)
    prepare_run_dir(out, force)
    spec_dict = spec.to_dict()
    atomic_write_text(out / "spec.toml", dumps_toml(spec_dict))
    files = [f for s in (data.train, data.valid, data.test) for f in s.files]
    prov = collect(files, spec.source)
    prov["data_report"] = {s.name: s.report for s in (data.train, data.valid, data.test)}
    prov["skipped_over_maxlen_w"] = skipped
    atomic_write_text(out / "provenance.json", json.dumps(prov, indent=1))
    vocab.save(out / "vocab.json")
    if skipped:
        log.info("skipped %d training caption(s) longer than maxlen_w=%d", skipped, t.maxlen_w)

    params = list(model.parameters()) + list(loss_fn.parameters())
    optimizer = torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    batches_per_epoch = len(bucketed_batches(lengths[keep], t.batch_size, np.random.default_rng(0), t.bucket))
    total_steps = batches_per_epoch * t.max_epochs
    mlog = MetricsLog(out / "metrics.jsonl", t.tensorboard)
    mlog.write("start", 0, train_captions=int(len(keep)), skipped_over_maxlen_w=skipped, vocab=len(vocab),
               train_images=data.train.n_images, batches_per_epoch=batches_per_epoch, threads=torch.get_num_threads())

    best = {"rsum": -math.inf, "step": 0, "epoch": 0}
    since_best = 0
    step = 0
    stop = False

    def validate(epoch_f: float) -> None:
        nonlocal since_best
        model.eval()
        m = evaluate_split(model, data.valid, metric)
        model.train()
        key = metric.selection_key
        mlog.write("valid", step, epoch=epoch_f, **{k: v for k, v in m.items() if k != "folds"})
        if m[key] > best["rsum"]:
            best.update(rsum=m[key], step=step, epoch=epoch_f, metrics=m)
            since_best = 0
            checkpoint.save(out, "best", model, spec_dict, step=step, epoch=epoch_f, metrics=m)
        else:
            since_best += 1
        if not quiet:
            tqdm.write(f"[valid] step {step} epoch {epoch_f:.2f}: {key} {m[key]:.1f} (best {best['rsum']:.1f})")

    model.train()
    t_start = time.perf_counter()
    for epoch in range(t.max_epochs):
        lr = lr_at(spec, step, epoch, total_steps)
        batches = bucketed_batches(lengths[keep], t.batch_size, rng, t.bucket)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{t.max_epochs}", disable=quiet, leave=False, unit="batch")
        seen, t_epoch, loss_sum = 0, time.perf_counter(), 0.0
        for i, rel in enumerate(bar):
            idx = keep[rel]
            if t.lr_schedule == "cosine":
                lr = lr_at(spec, step, epoch, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = store.batch(idx, with_texts=needs_texts).to(device)
            ids = cap2img[idx].to(device)
            loss_value = train_step(model, loss_fn, optimizer, params, batch, images[ids], ids, t.grad_clip,
                                    step=step, epoch=epoch + i / len(batches))
            step += 1
            seen += len(idx)
            loss_sum += loss_value
            if step % t.disp_freq == 0:
                rate = seen / (time.perf_counter() - t_epoch)
                mlog.write("train", step, epoch=epoch + (i + 1) / len(batches), loss=loss_value, lr=lr,
                           captions_per_s=rate)
                bar.set_postfix(loss=f"{loss_value:.3f}", caps_s=f"{rate:.0f}")
            if t.valid_freq and step % t.valid_freq == 0:
                validate(epoch + (i + 1) / len(batches))
                if t.early_stopping and since_best >= t.early_stopping:
                    stop = True
                    break
        bar.close()
        elapsed = time.perf_counter() - t_epoch
        mlog.write("epoch", step, epoch=epoch + 1, mean_loss=loss_sum / max(len(batches), 1),
                   captions_per_s=seen / elapsed, seconds=elapsed)
        if not stop and not (t.valid_freq and step % t.valid_freq == 0):
            validate(float(epoch + 1))
        if not quiet:
            tqdm.write(f"epoch {epoch + 1}: mean loss {loss_sum / max(len(batches), 1):.4f}, "
                       f"{seen / elapsed:.0f} captions/s")
        if stop or (t.early_stopping and since_best >= t.early_stopping):
            log.info("early stopping: no %s improvement in %d validations", metric.selection_key, t.early_stopping)
            break
    train_seconds = time.perf_counter() - t_start
    if spec.output.save_last:
        checkpoint.save(out, "last", model, spec_dict, step=step, epoch=float(epoch + 1))

    best_model, _, _ = checkpoint.load(out / "best.json")
    best_model.to(device)
    test_metrics = evaluate_split(best_model, data.test, metric, folds=spec.eval.folds)
    mlog.write("test", step, split=spec.eval.split, **{k: v for k, v in test_metrics.items() if k != "folds"})
    mlog.close()
    results = {
        "name": spec.name,
        "seed": t.seed,
        "best_step": best["step"],
        "best_epoch": best["epoch"],
        "steps": step,
        "train_seconds": train_seconds,
        "train_captions": int(len(keep)),
        "skipped_over_maxlen_w": skipped,
        "valid": {"split": t.valid_split, **best.get("metrics", {})},
        "test": {"split": spec.eval.split, **test_metrics},
        "run_dir": str(out),
    }
    write_results(out, results)
    if not quiet:
        print(format_table({f"{spec.eval.split} (best {t.valid_split} rsum at epoch {best['epoch']:.2f})": test_metrics}))
        print(f"results: {out / 'results.json'}")
    return results


def train_seeds(spec: Spec, n: int, out: str | Path | None = None, *, quiet: bool = False,
                force: bool = False) -> dict[str, Any]:
    """Run ``n`` repeats with seeds ``train.seed + k`` into ``out/seedK``; report mean and std of every column."""
    out = Path(out) if out is not None else Path(spec.output.dir or Path("runs") / spec.name)
    data = load_data(spec)
    if out.exists() and any(out.iterdir()) and not force:
        raise CheckpointError(f"{out}: run folder exists and is not empty; pass --force to replace it")
    runs = []
    for k in range(n):
        seed = spec.train.seed + k
        s = attrs.evolve(spec, train=attrs.evolve(spec.train, seed=seed))
        runs.append(train(s, out / f"seed{seed}", quiet=quiet, force=force, data=data))
    tests = [r["test"] for r in runs]
    keys = [k for k in tests[0] if isinstance(tests[0][k], (int, float)) and k != "split"]
    mean = {k: float(np.mean([m[k] for m in tests])) for k in keys}
    std = {k: float(np.std([m[k] for m in tests], ddof=1)) if n > 1 else 0.0 for k in keys}
    summary = {"name": spec.name, "seeds": [r["seed"] for r in runs], "split": spec.eval.split,
               "mean": mean, "std": std, "runs": [{"seed": r["seed"], "test": r["test"], "valid": r["valid"],
                                                    "run_dir": r["run_dir"]} for r in runs]}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    if not quiet:
        print(format_table({f"mean of {n} seeds": mean}, std={f"mean of {n} seeds": std}))
        print(f"summary: {out / 'summary.json'}")
    return summary
