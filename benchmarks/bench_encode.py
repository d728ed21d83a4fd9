"""Encoding throughput of ``vsekit.encode_sentences`` / ``encode_images`` against the inference matmul bound.

    python benchmarks/bench_encode.py [--threads 1 2] [--repeats 5] [--model CHECKPOINT.json]
                                      [--out benchmarks/results/encode.json]

The Flickr8K test split (5,000 captions, 1,000 images of ../shared's
EfficientNet-Lite0 features) through a dim-1024 GRU model (dim_word 300): by
default a freshly initialised one over the training vocabulary (speed does not
depend on the weights), or ``--model``. Captions go in as token lists (what
``evalrank`` does) and, separately, as strings (adds tokenization).

The bound: the forward GEMMs only, at the shapes ``encode_sentences`` runs
(captions sorted by length, batches of ``--batch-size``): per batch the word
projection x@W_ih over all real tokens and, at each step, h@W_hh over the
captions still running; for images the projection of each chunk. As
``torch.addmm`` on preallocated tensors; ``vsekit / bound`` is the fraction
of the GEMM speed reached. Times are medians of ``--repeats`` after one warm-up,
in wall seconds and in process CPU seconds (at one thread on a shared
machine, the CPU time is close to a quiet machine's wall time). The cases run
in turn, one call of each per round, so load changes slow them alike.

The GRU encoder's fused layer (the default on CPU) skips the recurrent
product of each caption's first step (the state before it is 0), which the
bound counts: ~1/12 of the recurrent GEMM work at these lengths.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import F8K_FEATURES, machine, summary, write
from bench_train import step_sizes

import vsekit
from vsekit.data.readers import PrecompReader
from vsekit.data.tokenize import tokenize_all
from vsekit.data.vocab import Vocab, encode_all
from vsekit.model import JointModel
from vsekit.spec import build_component


def timed(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[list[float], list[float]]]:
    """Wall and process-CPU seconds of ``repeats`` calls of each function, after one warm-up call of each;
    round-robin (one call of each in turn), so a change of machine load affects all alike."""
    for fn in fns.values():
        fn()
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            out[name][0].append(time.perf_counter() - t0)
            out[name][1].append(time.process_time() - c0)
    return out


class ForwardBound:
    """The forward GEMMs of encoding, on preallocated tensors."""

    def __init__(self, model: JointModel, caption_batches: list[np.ndarray], n_images: int, image_chunk: int) -> None:
        enc = model.sentence_encoder
        g = torch.Generator().manual_seed(0)
        rnn = enc.rnn
        self.w_ih, self.b_ih = rnn.weight_ih_l0.detach().clone(), rnn.bias_ih_l0.detach().clone()
        self.w_hh, self.b_hh = rnn.weight_hh_l0.detach().clone(), rnn.bias_hh_l0.detach().clone()
        fc = model.image_encoder.fc
        self.w_img, self.b_img = fc.weight.detach().clone(), fc.bias.detach().clone()
        self.batches = [step_sizes(b) for b in caption_batches]
        max_tok = max(sum(s) for s in self.batches)
        max_b = max(s[0] for s in self.batches)
        max_t = max(len(s) for s in self.batches)
        gates, dim_word = self.w_ih.shape
        dim = self.w_hh.shape[1]
        self.x = torch.randn(max_tok, dim_word, generator=g)
        self.xw = torch.empty(max_tok, gates)
        self.h = torch.randn(max_t, max_b, dim, generator=g) * 0.1
        self.gh = torch.empty(max_t, max_b, gates)
        self.chunks = [min(image_chunk, n_images - s) for s in range(0, n_images, image_chunk)]
        self.feats = torch.randn(max(self.chunks), self.w_img.shape[1], generator=g)
        self.im = torch.empty(max(self.chunks), self.w_img.shape[0])

    @torch.no_grad()
    def captions(self) -> None:
        for sizes in self.batches:
            n = sum(sizes)
            torch.addmm(self.b_ih, self.x[:n], self.w_ih.t(), out=self.xw[:n])
            for t, bt in enumerate(sizes):
                torch.addmm(self.b_hh, self.h[t, :bt], self.w_hh.t(), out=self.gh[t, :bt])

    @torch.no_grad()
    def images(self) -> None:
        for m in self.chunks:
            torch.addmm(self.b_img, self.feats[:m], self.w_img.t(), out=self.im[:m])

    def flops(self) -> tuple[float, float]:
        gates, dim_word = self.w_ih.shape
        dim = self.w_hh.shape[1]
        caps = sum(2.0 * sum(s) * (dim_word + dim) * gates for s in self.batches)
        ims = sum(2.0 * m * self.w_img.shape[1] * self.w_img.shape[0] for m in self.chunks)
        return caps, ims


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", default=None, help="a checkpoint .json (default: a fresh dim-1024 GRU model)")
    ap.add_argument("--data", type=Path, default=F8K_FEATURES)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--dim-word", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=512, help="encode_sentences batch size (its default)")
    ap.add_argument("--image-batch-size", type=int, default=2048, help="encode_images batch size (its default)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    reader = PrecompReader(PrecompReader.Config(dir=str(args.data)))
    test = reader.read("test")
    if args.model:
        model = vsekit.load_model(args.model)
        source = args.model
    else:
        torch.manual_seed(0)
        train = reader.read("train")
        vocab = Vocab.build(tokenize_all(train.captions, "regex"))
        senc = build_component("sentence_encoder", {"type": "gru", "dim_word": args.dim_word}, "bench", args.data)
        ienc = build_component("image_encoder", {"type": "linear"}, "bench", args.data)
        model = JointModel.build(senc, ienc, vocab, args.dim, test.dim_image, tokenizer="regex")
        source = f"fresh gru dim {args.dim}, dim_word {args.dim_word}, train vocabulary of {len(vocab)} words"
    model.eval()
    captions, strings, images = model.tokens(test.captions), list(test.captions), test.images
    # the batches encode_sentences forms: lengths sorted longest first, cut every batch_size
    _, lengths = encode_all(model.vocab, captions, append_eos=model.append_eos, n_words=model.n_words)
    lengths = np.maximum(lengths, 1)
    order = np.argsort(-lengths, kind="stable")
    cap_batches = [lengths[order[s : s + args.batch_size]] for s in range(0, len(order), args.batch_size)]
    bound = ForwardBound(model, cap_batches, len(images), args.image_batch_size)
    cap_flops, im_flops = bound.flops()
    print(f"{len(captions)} captions (mean {lengths.mean():.2f} steps), {len(images)} images; model: {source}")

    results: dict[str, Any] = {}
    for t in args.threads:
        torch.set_num_threads(t)
        cases = {
            "encode_sentences_tokens": (lambda: vsekit.encode_sentences(model, captions, batch_size=args.batch_size),
                                        len(captions)),
            "encode_sentences_strings": (lambda: vsekit.encode_sentences(model, strings, batch_size=args.batch_size),
                                         len(captions)),
            "bound_sentences": (bound.captions, len(captions)),
            "encode_images": (lambda: vsekit.encode_images(model, images, batch_size=args.image_batch_size),
                              len(images)),
            "bound_images": (bound.images, len(images)),
        }
        row: dict[str, Any] = {}
        times = timed({name: fn for name, (fn, _) in cases.items()}, args.repeats)
        for name, (_, n) in cases.items():
            secs, cpu = times[name]
            med, cmed = statistics.median(secs), statistics.median(cpu)
            row[name] = {"seconds": summary(secs), "cpu_seconds": summary(cpu), "items_per_s": n / med,
                         "items_per_cpu_s": n / cmed}
            if name.startswith("bound"):
                row[name]["gflops_per_s"] = (cap_flops if "sentences" in name else im_flops) / med / 1e9
            print(f"[{t} thread(s)] {name:<26} {1e3 * med:9.1f} ms  ({n / med:9.0f} /s; "
                  f"min {1e3 * min(secs):.1f}, max {1e3 * max(secs):.1f}); CPU {1e3 * cmed:9.1f} ms", flush=True)
        for what, case in (("sentences", "encode_sentences_tokens"), ("images", "encode_images")):
            for key in ("seconds", "cpu_seconds"):
                suffix = "" if key == "seconds" else "_cpu_time"
                row[f"fraction_of_bound_{what}{suffix}"] = row[f"bound_{what}"][key]["median"] / \
                    row[case][key]["median"]
        print(f"[{t} thread(s)] fraction of the matmul bound: sentences {row['fraction_of_bound_sentences']:.3f} "
              f"(CPU time {row['fraction_of_bound_sentences_cpu_time']:.3f}), images "
              f"{row['fraction_of_bound_images']:.3f} (CPU time {row['fraction_of_bound_images_cpu_time']:.3f})")
        results[f"{t}thread"] = row
    if args.out:
        write(args.out, {"benchmark": "encode_throughput",
                         "machine": {**machine(args.threads[0]), "load_average": os.getloadavg()},
                         "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                                    if k != "out"},
                         "model": source, "n_captions": len(captions), "n_images": len(images),
                         "mean_steps": float(lengths.mean()), "gemm_gflop": {"sentences": cap_flops / 1e9,
                                                                             "images": im_flops / 1e9},
                         "results": results})


if __name__ == "__main__":
    main()
