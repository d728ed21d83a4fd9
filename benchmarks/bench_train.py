"""Training throughput (captions/s) of vsekit's training step, against a naive baseline in the same run.

    python benchmarks/bench_train.py [--threads 1] [--encoder gru|bow] [--steps 30] [--repeats 3]
                                     [--out benchmarks/results/train_gru_1thread.json]

Reference sizes: dim 1024, dim_word 300, batch 128, on the Flickr8K
EfficientNet-Lite0 training captions of ../shared. vsekit's step: length-
bucketed batches, packed sequences (``vsekit.trainer.train_step``). Baseline:
the same model and loss, unbucketed random batches padded to maxlen_w and a
GRU run over every padded step (the state read at each caption's length).
Each measurement is ``--steps`` steps after 3 warm-up steps; the median of
``--repeats`` is reported.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import F8K_FEATURES, machine, summary, write
from vsekit.data.batching import CaptionStore, TextBatch, bucketed_batches
from vsekit.data.readers import PrecompReader
from vsekit.data.vocab import Vocab, encode_all
from vsekit.losses import ContrastiveLoss
from vsekit.model import JointModel
from vsekit.spec import build_component
from vsekit.trainer import train_step


class PaddedGRU(torch.nn.Module):
    """Baseline text path: run the GRU over every padded step, read the state at the true length."""

    def __init__(self, enc: torch.nn.Module) -> None:
        super().__init__()
        self.enc = enc

    def encode(self, batch: TextBatch) -> torch.Tensor:
        out, _ = self.enc.rnn(self.enc.embed(batch.tokens))
        return out[torch.arange(len(batch.lengths)), batch.lengths - 1]


def run(args: argparse.Namespace, baseline: bool) -> float:
    torch.manual_seed(0)
    split = PrecompReader(PrecompReader.Config(dir=str(F8K_FEATURES))).read("train")
    vocab = Vocab.build(split.captions)
    flat, lengths = encode_all(vocab, split.captions)
    store = CaptionStore(flat, lengths)
    senc = build_component("sentence_encoder", {"type": args.encoder, "dim_word": args.dim_word if args.encoder == "gru" else args.dim},
                           "bench", F8K_FEATURES)
    ienc = build_component("image_encoder", {"type": "linear"}, "bench", F8K_FEATURES)
    model = JointModel.build(senc, ienc, vocab, args.dim, split.dim_image)
    if baseline and args.encoder == "gru":
        model.sentence_encoder.encode = PaddedGRU(model.sentence_encoder).encode  # type: ignore[method-assign]
    loss_fn = ContrastiveLoss(ContrastiveLoss.Config(margin=0.2))
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=2e-4)
    images = torch.from_numpy(split.images)
    cap2img = torch.from_numpy(split.cap2img)
    rng = np.random.default_rng(0)
    batches = bucketed_batches(lengths, args.batch_size, rng, bucket=not baseline)
    batches = [b for b in batches if len(b) == args.batch_size]

    def one(i: int) -> None:
        idx = batches[i % len(batches)]
        batch = store.batch(idx)
        if baseline:  # pad to maxlen_w
            pad = torch.zeros((len(idx), args.maxlen_w), dtype=torch.int64)
            pad[:, : batch.tokens.shape[1]] = batch.tokens
            batch = TextBatch(pad, batch.lengths)
        ids = cap2img[idx]
        train_step(model, loss_fn, opt, params, batch, images[ids], ids, 2.0)

    for i in range(3):
        one(i)
    t0 = time.perf_counter()
    for i in range(3, 3 + args.steps):
        one(i)
    return args.steps * args.batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--encoder", choices=["gru", "bow"], default="gru")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--dim-word", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--maxlen-w", type=int, default=100)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.encoder == "bow":
        args.dim_word = args.dim
    torch.set_num_threads(args.threads)
    results = {}
    for name, baseline in (("vsekit", False), ("baseline_padded_unbucketed", True)):
        rates = [run(args, baseline) for _ in range(args.repeats)]
        results[name] = summary(rates)
        print(f"{name:>28}: {results[name]['median']:8.1f} captions/s (median of {args.repeats}; "
              f"min {min(rates):.1f}, max {max(rates):.1f})")
    ratio = results["vsekit"]["median"] / results["baseline_padded_unbucketed"]["median"]
    print(f"{'speed-up':>28}: {ratio:8.2f}x")
    if args.out:
        write(args.out, {"benchmark": "train_throughput", "machine": machine(args.threads),
                         "config": {k: v for k, v in vars(args).items() if k != "out"},
                         "captions_per_s": results, "speedup_vs_baseline": ratio})


if __name__ == "__main__":
    main()
