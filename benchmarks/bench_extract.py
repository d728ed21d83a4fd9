"""Image feature extraction throughput (images/s): ``efficientnet_lite0`` on the 1,000 Flickr8K test images.

    python benchmarks/bench_extract.py [--threads 2] [--workers 2] [--batch-size 32] [--n 1000]
                                       [--out benchmarks/results/extract_effnet.json]

Runs what ``vsekit extract efficientnet_lite0 IMAGES... -o F`` runs
(:func:`vsekit.extract.extract_folder`: decode in ``--workers`` threads,
batched inference, rows saved every 256 images) into a fresh file under
``benchmarks/runs/extract/``, after loading the network once (timed
separately). Also checks the rows against the reference features of
``../shared/data/flickr8k-effnet-lite0`` (min cosine). Needs the
``vsekit-efficientnet`` plugin and ``../shared/data/flickr8k``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import F8K_FEATURES, REPO, SHARED, machine, write

from vsekit.extract import extract_folder, ids_path, resolve_extractor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--workers", type=int, default=2, help="image decoding threads")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--n", type=int, default=1000, help="the first N test images")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ids = (F8K_FEATURES / "test_ids.txt").read_text().split()[: args.n]
    paths = [SHARED / "flickr8k" / "images" / i for i in ids]
    component = resolve_extractor("efficientnet_lite0", [f"workers={args.workers}", f"batch_size={args.batch_size}"])
    t0 = time.perf_counter()
    extractor = component.build()
    extractor.model()
    load_s = time.perf_counter() - t0

    out = REPO / "benchmarks" / "runs" / "extract" / "test_ims.npy"
    report = extract_folder(extractor, paths, out, force=True, progress=True)
    assert report.added + len(report.errors) == len(paths), report
    feats = np.load(out)
    ref = np.load(F8K_FEATURES / "test_ims.npy").astype(np.float32)
    row_of = {name: i for i, name in enumerate(ids_path(out).read_text().split())}
    cos = np.array([feats[row_of[n]] @ ref[i] for i, n in enumerate(ids) if n in row_of])
    result = {
        "benchmark": "extract_throughput",
        "machine": machine(args.threads),
        "settings": {"extractor": component.to_dict(), "images": len(paths),
                     "images_from": "../shared/data/flickr8k/images, test split (132 full-size originals, "
                                    "868 224x224 squashed copies)"},
        "model_load_s": round(load_s, 3),
        "extract_s": round(report.seconds, 3),
        "images_per_s": round(report.added / report.seconds, 3),
        "unreadable": len(report.errors),
        "cosine_vs_reference": {"min": float(cos.min()), "mean": float(cos.mean())},
        "note": "wall clock of extract_folder (decode + inference + saving); the 2 cores were shared with "
                "other jobs while this ran, so treat the rate as a lower bound",
    }
    print(f"{report.added} images in {report.seconds:.1f} s: {result['images_per_s']} images/s; "
          f"min cosine vs reference {cos.min():.6f}")
    if args.out:
        write(args.out, result)


if __name__ == "__main__":
    main()
