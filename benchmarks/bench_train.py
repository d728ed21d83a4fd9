"""Training throughput (captions/s) and peak RSS of vsekit's training step, against the pinned baseline and
the matmul bound, all in one run.

    python benchmarks/bench_train.py [--threads 1 2] [--encoders gru bow] [--steps 40] [--repeats 5]
                                     [--variants vsekit baseline bound] [--out benchmarks/results/train.json]
    python benchmarks/bench_train.py --variants vsekit gru_packed plain_adam bf16 --encoders gru   # options
    python benchmarks/bench_train.py --profile 20 --threads 1 --encoders gru --variants vsekit gru_packed
                                     [--out benchmarks/results/train_profile.json]   # torch.profiler, per case

Reference sizes: dim 1024, dim_word 300 (bow: dim_word = dim), batch 128, the
Flickr8K EfficientNet-Lite0 training captions of ../shared (``--data`` to
change). Every case runs in a fresh subprocess (so its peak RSS is its own)
with torch, OMP and MKL limited to the case's thread count.

Variants (``--variants``; all step through ``vsekit.training.loop.train_step``):

* ``vsekit``: what ``vsekit.train`` does: length-bucketed batches, the GRU
  encoder's default ``impl`` ("auto": the fused GRU layer on CPU), the
  trainer's optimizer (``vsekit.training.setup.make_optimizer``: fused Adam),
  global-norm clipping at 2.
* ``baseline`` (pinned): no bucketing, every batch padded to ``maxlen_w``,
  ``nn.GRU`` run over every padded step (the state read at each caption's
  length), Adam with torch's defaults (for-loop).
* ``bound``: the matmul bound. On exactly the batches the ``vsekit`` case
  times, only the GEMMs of the step, as ``torch.mm``/``addmm`` on preallocated
  tensors: the word projection x@W_ih over all real tokens (forward; backward
  dX and dW_ih), the recurrent product h@W_hh at each step over the captions
  still running at that step (forward; backward dh and dW_hh, per step), the
  image projection (forward; backward dW) and the (B, B) score matrix
  (forward; backward). The embedding gather, the gates' pointwise maths, the
  loss, clipping and Adam are not GEMMs and cost nothing here, so
  ``vsekit / bound`` is the fraction of the GEMM speed the trainer reaches.
  ``bound_packed_dW`` is a tighter variant: dW_ih and dW_hh as one GEMM each
  over all steps (legal, as they do not feed the recurrence).
* options, changing one part of ``vsekit`` (join several with "+", e.g.
  ``gru_packed+plain_adam``, the step as it was before the fused GRU and
  fused Adam): ``gru_packed``, ``gru_padded``, ``gru_fused`` (the GRU
  encoder's ``impl``), ``plain_adam``, ``foreach_adam``, ``fused_adam``
  (Adam() / Adam(foreach=True) / Adam(fused=True) instead of the trainer's),
  ``bf16`` (what ``train.precision = "bf16"`` runs: ``torch.autocast("cpu",
  torch.bfloat16)`` around the encoders' forward, the loss in fp32; the GRU
  then runs ``impl = "padded"``), ``compile`` (``torch.compile`` of the
  image encoder and the loss); and the probes ``no_clip`` (grad_clip 0: what
  clipping costs) and ``data_only`` (only the batch gather: what the data
  path costs).

Each case: 3 warm-up steps, then ``--repeats`` windows of ``--steps``
consecutive batches (``--baseline-steps`` for the slow baseline); a window's
rate is captions / wall time; the median over windows is reported. The
bound uses the same windows as ``vsekit``. Each rate is also given per
second of process CPU time (``captions_per_cpu_s``): on a shared machine, at
one thread, that is close to what a quiet machine's wall clock would show
(at 2 threads it sums both threads' time, so only the wall rate counts).
With ``--interleave`` all cases run in one process, one step of each in turn,
so a busy machine slows them alike (comparisons stay fair; RSS is shared):

    python benchmarks/bench_train.py --interleave --threads 1 --encoders gru \
        --variants vsekit gru_packed+plain_adam bf16 bound --steps 10 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import F8K_FEATURES, REPO, machine, summary, write

BENCH_DIR = Path(__file__).resolve().parent

WARMUP = 3
MARK = "@@bench_train@@ "
#: a training case is one of these or several joined by "+" (e.g. "gru_packed+plain_adam")
GRU_IMPLS = {"gru_packed": "packed", "gru_padded": "padded", "gru_fused": "fused"}
ADAMS = {"plain_adam": {}, "foreach_adam": {"foreach": True}, "fused_adam": {"fused": True}}
FEATURES = ("vsekit", "baseline", *ADAMS, "bf16", "compile", *GRU_IMPLS, "no_clip", "data_only")
BOUNDS = ("bound", "bound_packed_dW")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- #
# data and model (child side)


def load(args: argparse.Namespace, bucket: bool) -> dict[str, Any]:
    """Training split, vocabulary, caption store and the full-size batches of one seeded epoch."""
    import numpy as np
    import torch

    from vsekit.data.batching import CaptionStore, bucketed_batches
    from vsekit.data.readers import PrecompReader
    from vsekit.data.vocab import Vocab, encode_all

    split = PrecompReader(PrecompReader.Config(dir=str(args.data))).read("train")
    vocab = Vocab.build(split.captions)
    flat, lengths = encode_all(vocab, split.captions)
    keep = np.flatnonzero(lengths <= args.maxlen_w)
    store = CaptionStore(flat, lengths)
    rel = bucketed_batches(lengths[keep], args.batch_size, np.random.default_rng(0), bucket=bucket)
    batches = [keep[b] for b in rel if len(b) == args.batch_size]
    return {"split": split, "vocab": vocab, "store": store, "lengths": lengths, "batches": batches,
            "images": torch.from_numpy(split.images), "cap2img": torch.from_numpy(split.cap2img)}


def windows(args: argparse.Namespace, n_batches: int, steps: int) -> list[list[int]]:
    """Batch positions: the warm-up, then ``repeats`` windows of ``steps`` consecutive batches (wrapping)."""
    out, pos = [], WARMUP
    for _ in range(args.repeats):
        out.append([(pos + i) % n_batches for i in range(steps)])
        pos += steps
    return out


def build_model(args: argparse.Namespace, encoder: str, d: dict[str, Any], impl: str | None = None) -> Any:
    import torch

    from vsekit.model import JointModel
    from vsekit.spec import build_component

    torch.manual_seed(0)
    dim_word = args.dim_word if encoder == "gru" else args.dim
    table = {"type": encoder, "dim_word": dim_word, **({"impl": impl} if impl else {})}
    senc = build_component("sentence_encoder", table, "bench", args.data)
    ienc = build_component("image_encoder", {"type": "linear"}, "bench", args.data)
    return JointModel.build(senc, ienc, d["vocab"], args.dim, d["split"].dim_image)


def _padded_gru_encode(enc: Any) -> Callable[[Any], Any]:
    """Baseline text path: run the GRU over every padded step, read the state at the true length."""
    import torch

    def encode(batch: Any) -> Any:
        out, _ = enc.rnn(enc.embed(batch.tokens))
        return out[torch.arange(len(batch.lengths)), batch.lengths - 1]

    return encode


def check_variant(variant: str) -> set[str]:
    feats = set(variant.split("+"))
    if variant in BOUNDS:
        return feats
    bad = feats - set(FEATURES)
    if bad:
        raise SystemExit(f"unknown variant part(s) {', '.join(sorted(bad))}: choose from {', '.join(FEATURES + BOUNDS)}"
                         f" (join training parts with '+')")
    if len(feats & set(GRU_IMPLS)) > 1 or len(feats & set(ADAMS)) > 1:
        raise SystemExit(f"{variant}: choose one GRU impl and one Adam")
    return feats


def make_optimizer(params: list, lr: float) -> Any:
    """The optimizer ``vsekit.train`` builds (``vsekit.training.setup.make_optimizer``) at this learning rate."""
    import types

    import torch

    try:
        from vsekit.training.setup import make_optimizer as trainer_optimizer
    except ImportError:  # a trainer without it: Adam with torch's defaults
        return torch.optim.Adam(params, lr=lr)
    return trainer_optimizer(params, types.SimpleNamespace(train=types.SimpleNamespace(lr=lr, weight_decay=0.0)))


def setup_case(args: argparse.Namespace, encoder: str, variant: str) -> tuple[Callable[[int], None], dict, list]:
    """Data, model and optimizer of a training case; returns ``one(pos)`` (one step on batch ``pos``), the data
    and the list the losses go to."""
    import torch

    from vsekit.losses import ContrastiveLoss
    from vsekit.text.batch import TextBatch
    from vsekit.training.loop import train_step

    feats_on = check_variant(variant)
    baseline = "baseline" in feats_on
    d = load(args, bucket=not baseline)
    d["rss_after_data_mb"] = max_rss_mb()
    impl = next((GRU_IMPLS[f] for f in feats_on if f in GRU_IMPLS), None) if encoder == "gru" else None
    model = build_model(args, encoder, d, impl)
    enc = model.sentence_encoder
    if encoder == "gru" and baseline:
        enc.encode = _padded_gru_encode(enc)  # type: ignore[method-assign]
    loss_fn = ContrastiveLoss(ContrastiveLoss.Config(margin=0.2))
    if "compile" in feats_on:
        model.image_encoder = torch.compile(model.image_encoder, dynamic=False)
        loss_fn = torch.compile(loss_fn, dynamic=False)
    params = list(model.parameters())
    adam = next((f for f in feats_on if f in ADAMS), "plain_adam" if baseline else None)
    opt = torch.optim.Adam(params, lr=2e-4, **ADAMS[adam]) if adam else make_optimizer(params, 2e-4)
    grad_clip = 0.0 if "no_clip" in feats_on else 2.0
    forward = None
    if "bf16" in feats_on:  # as the trainer runs train.precision = "bf16": autocast around the encoders only
        from vsekit.training.distributed import Dist, GlobalBatchLoss

        forward = GlobalBatchLoss(model, loss_fn, Dist(), torch.autocast("cpu", dtype=torch.bfloat16))
    store, batches, images, cap2img = d["store"], d["batches"], d["images"], d["cap2img"]
    model.train()
    losses: list[float] = []
    d.update(model=model, loss_fn=loss_fn, baseline=baseline)

    def one(pos: int) -> None:
        with _label("phase: data (gather batch)"):
            idx = batches[pos]
            batch = store.batch(idx)
            if baseline:  # pad to maxlen_w
                pad = torch.zeros((len(idx), args.maxlen_w), dtype=torch.int64)
                pad[:, : batch.tokens.shape[1]] = batch.tokens
                batch = TextBatch(pad, batch.lengths)
            ids = cap2img[idx]
            feats = images[ids]
        if "data_only" in feats_on:
            return
        with _label("phase: train_step"):
            losses.append(train_step(model, loss_fn, opt, batch, feats, ids, params=params, grad_clip=grad_clip,
                                     forward=forward))

    return one, d, losses


_PROFILING = False


def _label(name: str) -> Any:
    if not _PROFILING:
        return contextlib.nullcontext()
    from torch.profiler import record_function

    return record_function(name)


def run_train_case(args: argparse.Namespace, encoder: str, variant: str) -> dict[str, Any]:
    one, d, losses = setup_case(args, encoder, variant)
    batches = d["batches"]
    for pos in range(WARMUP):
        one(pos)
    steps = args.baseline_steps if d["baseline"] else args.steps
    rates, cpu_rates, wins = [], [], windows(args, len(batches), steps)
    for win in wins:
        t0, c0 = time.perf_counter(), time.process_time()
        for pos in win:
            one(pos)
        rates.append(len(win) * args.batch_size / (time.perf_counter() - t0))
        cpu_rates.append(len(win) * args.batch_size / (time.process_time() - c0))
    lens = [float(d["lengths"][batches[p]].mean()) for w in wins for p in w]
    return {"captions_per_s": summary(rates), "captions_per_cpu_s": summary(cpu_rates),
            "rss_after_data_mb": d["rss_after_data_mb"], "rss_peak_mb": max_rss_mb(),
            "mean_caption_length": sum(lens) / len(lens), "steps_per_window": steps,
            "loss_first_last": [losses[0], losses[-1]] if losses else None}


# --------------------------------------------------------------------------- #
# the matmul bound (child side)


def step_sizes(lengths: Any) -> list[int]:
    """Active batch size at each GRU step: the captions of length > t (packing sorts them longest first)."""
    import numpy as np

    lengths = np.sort(np.asarray(lengths))[::-1]
    return [int((lengths > t).sum()) for t in range(int(lengths[0]))]


class GemmBound:
    """Preallocated tensors for the step's GEMMs at the reference shapes; :meth:`run` times one batch."""

    def __init__(self, b: int, dim: int, dim_word: int, dim_image: int, max_tokens: int, max_len: int,
                 encoder: str, packed_dw: bool = False) -> None:
        import torch

        g = torch.Generator().manual_seed(0)

        def r(*shape: int) -> Any:
            return torch.randn(*shape, generator=g) * 0.05

        self.encoder, self.packed_dw, self.b = encoder, packed_dw, b
        gates = 3 * dim
        # weights in nn.Linear / nn.GRU layout (out, in), used through .t() views as torch does
        self.w_ih, self.b_ih, self.w_hh, self.b_hh = r(gates, dim_word), r(gates), r(gates, dim), r(gates)
        self.w_img, self.b_img = r(dim, dim_image), r(dim)
        self.x, self.xw, self.dxw, self.dx = r(max_tokens, dim_word), r(max_tokens, gates), r(max_tokens, gates), \
            r(max_tokens, dim_word)
        self.dw_ih, self.dw_hh, self.dw_img = r(gates, dim_word), r(gates, dim), r(dim, dim_image)
        self.h = r(max_len + 1, b, dim)          # state before each step (forward input, dW_hh input)
        self.gh = r(max_len, b, gates)           # h @ W_hh^T at each step
        self.dg = r(max_len, b, gates)           # gate gradients at each step
        self.dh = r(max_len, b, dim)
        self.hs = r(max_tokens, dim)             # all states, packed (for the packed dW_hh)
        self.feats, self.im, self.s, self.scores = r(b, dim_image), r(b, dim), r(b, dim), r(b, b)
        self.dscores, self.dim_, self.ds = r(b, b), r(b, dim), r(b, dim)

    def run(self, lengths: Any) -> None:
        import torch

        mm, addmm = torch.mm, torch.addmm
        if self.encoder == "gru":
            sizes = step_sizes(lengths)
            n = sum(sizes)
            # forward: word projection over all real tokens, then the recurrence over the active rows
            addmm(self.b_ih, self.x[:n], self.w_ih.t(), out=self.xw[:n])
            for t, bt in enumerate(sizes):
                addmm(self.b_hh, self.h[t, :bt], self.w_hh.t(), out=self.gh[t, :bt])
        addmm(self.b_img, self.feats, self.w_img.t(), out=self.im)
        mm(self.im, self.s.t(), out=self.scores)
        # backward
        mm(self.dscores, self.s, out=self.dim_)
        mm(self.dscores.t(), self.im, out=self.ds)
        mm(self.dim_.t(), self.feats, out=self.dw_img)
        if self.encoder == "gru":
            for t in range(len(sizes) - 1, -1, -1):
                bt = sizes[t]
                mm(self.dg[t, :bt], self.w_hh, out=self.dh[t, :bt])
                if not self.packed_dw:
                    addmm(self.dw_hh, self.dg[t, :bt].t(), self.h[t, :bt], out=self.dw_hh)
            if self.packed_dw:
                mm(self.dxw[:n].t(), self.hs[:n], out=self.dw_hh)
            mm(self.dxw[:n], self.w_ih, out=self.dx[:n])
            mm(self.dxw[:n].t(), self.x[:n], out=self.dw_ih)

    def flops(self, lengths: Any) -> float:
        """Floating-point operations of :meth:`run` for one batch (2 per multiply-add)."""
        b, dim_img, dim = self.b, self.w_img.shape[1], self.w_img.shape[0]
        f = 2 * b * dim_img * dim * 2 + 2 * b * b * dim * 3
        if self.encoder == "gru":
            n = sum(step_sizes(lengths))
            gates, dw = self.w_ih.shape
            f += 2 * n * dw * gates * 3 + 2 * n * dim * gates * 3
        return float(f)


def setup_bound(args: argparse.Namespace, encoder: str, packed_dw: bool = False) -> tuple[Callable[[int], None], dict]:
    """The GEMM bound on the ``vsekit`` case's batches (same seed, same order); returns ``one(pos)`` and the data."""
    import torch

    d = load(args, bucket=True)
    batches, lengths = d["batches"], d["lengths"]
    dim_word = args.dim_word if encoder == "gru" else args.dim
    used = [p for w in windows(args, len(batches), args.steps) for p in w] + list(range(WARMUP))
    max_len = max(int(lengths[batches[p]].max()) for p in used)
    max_tokens = max(int(lengths[batches[p]].sum()) for p in used)
    gb = GemmBound(args.batch_size, args.dim, dim_word, d["split"].dim_image, max_tokens, max_len, encoder, packed_dw)
    d["gemm"] = gb

    @torch.no_grad()
    def one(pos: int) -> None:
        gb.run(lengths[batches[pos]])

    return one, d


def run_bound_case(args: argparse.Namespace, encoder: str, packed_dw: bool = False) -> dict[str, Any]:
    one, d = setup_bound(args, encoder, packed_dw)
    batches, lengths, gb = d["batches"], d["lengths"], d["gemm"]
    wins = windows(args, len(batches), args.steps)
    for pos in range(WARMUP):
        one(pos)
    rates, cpu_rates, gflops = [], [], []
    for win in wins:
        t0, c0 = time.perf_counter(), time.process_time()
        for pos in win:
            one(pos)
        dt = time.perf_counter() - t0
        rates.append(len(win) * args.batch_size / dt)
        cpu_rates.append(len(win) * args.batch_size / (time.process_time() - c0))
        gflops.append(sum(gb.flops(lengths[batches[p]]) for p in win) / dt / 1e9)
    return {"captions_per_s": summary(rates), "captions_per_cpu_s": summary(cpu_rates),
            "gemm_gflops_per_s": summary(gflops), "rss_peak_mb": max_rss_mb(),
            "gemm_gflop_per_batch": sum(gb.flops(lengths[batches[p]]) for p in wins[0]) / len(wins[0]) / 1e9}


def run_interleaved(args: argparse.Namespace, encoder: str, variants: list[str]) -> dict[str, Any]:
    """All cases in one process, one step of each in turn, so a busy machine slows them alike."""
    cases: dict[str, tuple[Callable[[int], None], list[int]]] = {}
    for v in variants:
        if v in BOUNDS:
            one, d = setup_bound(args, encoder, packed_dw=v == "bound_packed_dW")
        else:
            one, d, _ = setup_case(args, encoder, v)
        steps = args.baseline_steps if d.get("baseline") else args.steps
        cases[v] = (one, [p for w in windows(args, len(d["batches"]), steps) for p in w])
    for pos in range(WARMUP):
        for one, _ in cases.values():
            one(pos)
    wall = {v: [] for v in cases}  # type: dict[str, list[float]]
    cpu = {v: [] for v in cases}  # type: dict[str, list[float]]
    for i in range(max(len(pos) for _, pos in cases.values())):
        for v, (one, positions) in cases.items():
            if i < len(positions):
                t0, c0 = time.perf_counter(), time.process_time()
                one(positions[i])
                wall[v].append(time.perf_counter() - t0)
                cpu[v].append(time.process_time() - c0)
    out = {}
    for v in cases:
        n = len(wall[v]) // args.repeats
        win_wall = [sum(wall[v][r * n : (r + 1) * n]) for r in range(args.repeats)]
        win_cpu = [sum(cpu[v][r * n : (r + 1) * n]) for r in range(args.repeats)]
        out[v] = {"captions_per_s": summary([n * args.batch_size / t for t in win_wall]),
                  "captions_per_cpu_s": summary([n * args.batch_size / t for t in win_cpu]), "steps_per_window": n}
    return {"interleaved": out, "rss_peak_mb": max_rss_mb()}


# --------------------------------------------------------------------------- #
# profile (child side)


def run_profile(args: argparse.Namespace, encoder: str, variant: str) -> dict[str, Any]:
    """torch.profiler over ``--profile`` steps of a training case, with the phases of train_step labelled."""
    global _PROFILING
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    one, d, _ = setup_case(args, encoder, variant)
    model, loss_fn = d["model"], d["loss_fn"]

    def labelled(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            with record_function(label):
                return fn(*a, **k)
        return wrapper

    # label the phases of the unmodified train_step (it looks these up at call time)
    model.forward = labelled(model.forward, "phase: forward (model)")  # type: ignore[method-assign]
    loss_fn.forward = labelled(loss_fn.forward, "phase: loss forward")  # type: ignore[method-assign]
    clip = torch.nn.utils.clip_grad_norm_
    torch.nn.utils.clip_grad_norm_ = labelled(clip, "phase: clip_grad_norm_")
    for pos in range(WARMUP):
        one(pos)
    _PROFILING = True
    t0, c0 = time.perf_counter(), time.process_time()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for pos in range(WARMUP, WARMUP + args.profile):
            one(pos)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    _PROFILING = False
    torch.nn.utils.clip_grad_norm_ = clip
    events = prof.key_averages()
    top = ("phase: train_step", "phase: data (gather batch)")
    total_ms = sum(e.cpu_time_total for e in events if e.key in top) / 1e3
    phases = {e.key: e.cpu_time_total / 1e3 for e in events if e.key.startswith(("phase:", "Optimizer."))}
    phases["backward (autograd engine)"] = sum(e.cpu_time_total for e in events
                                               if e.key.startswith("autograd::engine::evaluate_function")) / 1e3
    ops = sorted(((e.key, e.self_cpu_time_total / 1e3, e.count) for e in events
                  if not e.key.startswith(("phase:", "Optimizer.", "autograd::engine"))),
                 key=lambda x: -x[1])
    gemm_keys = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
    gemm_ms = sum(ms for k, ms, _ in ops if k in gemm_keys)
    if args.trace:
        prof.export_chrome_trace(args.trace)
    return {"variant": variant, "steps": args.profile, "wall_s": wall, "cpu_s": cpu, "profiled_ms": total_ms,
            "phases_ms": dict(sorted(phases.items(), key=lambda kv: -kv[1])),
            "gemm_self_ms": gemm_ms, "top_ops_self_ms": [{"op": k, "self_ms": ms, "calls": c} for k, ms, c in ops[:25]],
            "table": events.table(sort_by="self_cpu_time_total", row_limit=30)}


# --------------------------------------------------------------------------- #
# parent side


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in THREAD_ENV:
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR), env.get("PYTHONPATH", "")])
    return env


def forward_args(args: argparse.Namespace) -> list[str]:
    return ["--data", str(args.data), "--dim", str(args.dim), "--dim-word", str(args.dim_word),
            "--batch-size", str(args.batch_size), "--maxlen-w", str(args.maxlen_w), "--steps", str(args.steps),
            "--baseline-steps", str(args.baseline_steps), "--repeats", str(args.repeats)]


def run_child(args: argparse.Namespace, threads: int, encoder: str, variant: str) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", encoder, variant, "--threads", str(threads),
           *forward_args(args)]
    if args.profile:
        cmd += ["--profile", str(args.profile)] + (["--trace", args.trace] if args.trace else [])
    if args.interleave:
        cmd += ["--interleave"]
    proc = subprocess.run(cmd, env=child_env(threads), cwd=REPO, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"case {encoder}/{variant} ({threads} thread(s)) failed with exit code {proc.returncode}")
    return json.loads(lines[-1][len(MARK):])


def child_main(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads[0])
    encoder, variant = args.child
    if args.interleave:
        res = run_interleaved(args, encoder, variant.split(","))
    elif args.profile:
        res = run_profile(args, encoder, variant)
    elif variant in BOUNDS:
        res = run_bound_case(args, encoder, packed_dw=variant == "bound_packed_dW")
    else:
        res = run_train_case(args, encoder, variant)
    res["torch_threads"] = torch.get_num_threads()
    print(MARK + json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--encoders", nargs="+", choices=["gru", "bow"], default=["gru", "bow"])
    ap.add_argument("--variants", nargs="+", default=["vsekit", "baseline", "bound", "bound_packed_dW"],
                    help=f"cases: {', '.join(FEATURES + BOUNDS)}; join training parts with '+'")
    ap.add_argument("--data", type=Path, default=F8K_FEATURES, help="a precomp folder (train_caps.txt, train_ims.npy)")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--dim-word", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--maxlen-w", type=int, default=100)
    ap.add_argument("--steps", type=int, default=40, help="batches per timed window")
    ap.add_argument("--baseline-steps", type=int, default=10, help="batches per timed window of the baseline")
    ap.add_argument("--repeats", type=int, default=5, help="timed windows per case")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="instead: torch.profiler over STEPS steps of each training case given")
    ap.add_argument("--trace", default=None, help="with --profile: also write a Chrome trace here")
    ap.add_argument("--interleave", action="store_true",
                    help="run the cases in one process, a step of each in turn (fair on a busy machine; "
                         "peak RSS is then not per case)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    for v in args.variants:
        check_variant(v)
    if args.child:
        child_main(args)
        return
    if args.profile:
        res = {f"{enc}_{v}_{t}thread": run_child(args, t, enc, v) for t in args.threads for enc in args.encoders
               for v in args.variants if v not in BOUNDS}
        for key, r in res.items():
            print(f"--- {key}: {r['steps']} steps, wall {r['wall_s']:.2f} s, CPU {r['cpu_s']:.2f} s (profiled)")
            for k, ms in r["phases_ms"].items():
                print(f"  {k:<44} {ms:9.1f} ms  {100 * ms / r['profiled_ms']:5.1f}%")
            print(f"  {'GEMM self time (mm/addmm)':<44} {r['gemm_self_ms']:9.1f} ms  "
                  f"{100 * r['gemm_self_ms'] / r['profiled_ms']:5.1f}%")
            print(r["table"])
        if args.out:
            write(args.out, {"benchmark": "train_profile",
                             "machine": {**machine(args.threads[0]), "load_average_end": os.getloadavg()},
                             "config": cfg(args), "profile": res})
        return

    results: dict[str, Any] = {}
    for t in args.threads:
        for enc in args.encoders:
            row: dict[str, Any] = {}
            todo = [v for v in args.variants if not (v == "bound_packed_dW" and enc != "gru")]
            inter = run_child(args, t, enc, ",".join(todo))["interleaved"] if args.interleave else {}
            for variant in todo:
                r = inter[variant] if args.interleave else run_child(args, t, enc, variant)
                row[variant] = r
                rss = f", peak RSS {r['rss_peak_mb']:.0f} MiB" if "rss_peak_mb" in r else ""
                print(f"[{t} thread(s)] {enc:>3} {variant:<22} {r['captions_per_s']['median']:9.1f} captions/s "
                      f"(median of {args.repeats}; min {r['captions_per_s']['min']:.1f}, "
                      f"max {r['captions_per_s']['max']:.1f}); {r['captions_per_cpu_s']['median']:9.1f} per CPU-s"
                      f"{rss}", flush=True)
            med = {k: v["captions_per_s"]["median"] for k, v in row.items()}
            cpu = {k: v["captions_per_cpu_s"]["median"] for k, v in row.items()}
            derived = {}
            if "vsekit" in med and "baseline" in med:
                derived["speedup_vs_baseline"] = med["vsekit"] / med["baseline"]
            for b in BOUNDS:
                if "vsekit" in med and b in med:
                    derived[f"fraction_of_{b}"] = med["vsekit"] / med[b]
                    derived[f"fraction_of_{b}_cpu_time"] = cpu["vsekit"] / cpu[b]
            for v in med:
                if v not in ("vsekit", "baseline", "data_only", *BOUNDS) and "vsekit" in med:
                    derived[f"{v}_vs_vsekit"] = med[v] / med["vsekit"]
                    for b in BOUNDS:
                        if b in med:
                            derived[f"{v}_fraction_of_{b}"] = med[v] / med[b]
            for k, v in derived.items():
                print(f"[{t} thread(s)] {enc:>3} {k:<40} {v:6.3f}")
            results[f"{enc}_{t}thread"] = {"encoder": enc, "threads": t, "cases": row, **derived}
    if args.out:
        write(args.out, {"benchmark": "train_throughput",
                         "machine": {**machine(args.threads[0]), "load_average_end": os.getloadavg()},
                         "config": cfg(args), "results": results})


def cfg(args: argparse.Namespace) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if k not in ("out", "child", "trace")}


if __name__ == "__main__":
    main()
