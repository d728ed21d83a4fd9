"""Memory of training over memory-mapped region features: one full epoch over a > 2 GB (N, 36, 2048) float32 file.

    python benchmarks/bench_regions.py [--images 7300] [--out benchmarks/results/regions_memory.json]

Writes a precomp folder in a temporary directory (deleted afterwards; the free disk space is checked
first): ``train_ims.npy`` of shape (N, 36, 2048) float32 (N = 7,300: 2.15 GB) filled with Gaussian
noise, 5 random captions per image from a 50-word vocabulary, and 100-image dev and test splits. Then
one epoch of ``vsekit.train`` over it (the ``mean`` image encoder, the ``bow`` sentence encoder, 32-d,
batch 128, one thread), and reports ``RssAnon`` (anonymous resident memory, from ``/proc/self/status``;
the mapped file's pages are file-backed and not in it): before training, after, and the peak sampled
every 10 ms during training. Target: growth < 300 MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, write

K, D = 36, 2048
WORDS = [f"w{i}" for i in range(50)]


def rss_anon_mb() -> float:
    """This process's RssAnon in MB (2**20 bytes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def write_split(folder: Path, split: str, n: int, rng: np.random.Generator) -> None:
    """``{split}_ims.npy`` (n, K, D) float32 written a chunk at a time, and 5 captions per image."""
    arr = np.lib.format.open_memmap(folder / f"{split}_ims.npy", mode="w+", dtype=np.float32, shape=(n, K, D))
    for start in range(0, n, 256):
        stop = min(n, start + 256)
        arr[start:stop] = rng.standard_normal((stop - start, K, D), dtype=np.float32)
    arr.flush()
    del arr
    caps = [" ".join(rng.choice(WORDS, size=8)) for _ in range(5 * n)]
    (folder / f"{split}_caps.txt").write_text("".join(c + "\n" for c in caps), encoding="utf-8")


class PeakSampler(threading.Thread):
    """Samples :func:`rss_anon_mb` every ``period`` seconds until stopped; ``peak`` is the largest sample."""

    def __init__(self, period: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.period, self.peak, self.stop = period, rss_anon_mb(), threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_anon_mb())
            time.sleep(self.period)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=7300)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "regions_memory.json"))
    args = ap.parse_args()
    size = args.images * K * D * 4
    tmp_root = Path(tempfile.gettempdir())
    free = shutil.disk_usage(tmp_root).free
    if free < size + 2 * 2**30:
        sys.exit(f"{tmp_root}: {free / 2**30:.1f} GB free; the benchmark needs {size / 2**30:.1f} GB + 2 GB")
    import torch

    import vsekit.training.loop  # noqa: F401  (the code's own memory is not the data's: imported before "before")
    from vsekit import api

    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix="vsekit-regions-", dir=tmp_root))
    try:
        rng = np.random.default_rng(0)
        for split, n in (("train", args.images), ("dev", 100), ("test", 100)):
            write_split(folder, split, n, rng)
        spec = {"name": "regions", "data": {"type": "precomp", "dir": str(folder)},
                "model": {"dim": 32, "sentence_encoder": {"type": "bow", "dim_word": 32},
                          "image_encoder": {"type": "mean"}},
                "loss": {"type": "infonce"},
                "train": {"max_epochs": 1, "batch_size": 128, "seed": 0, "threads": 1},
                "eval": {"split": "test"}}
        before = rss_anon_mb()
        sampler = PeakSampler()
        sampler.start()
        t0 = time.perf_counter()
        api.train(spec, folder / "run", quiet=True, force=True)
        seconds = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
        after = rss_anon_mb()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result = {"machine": machine(1), "train_file": {"shape": [args.images, K, D], "dtype": "float32",
                                                    "bytes": size, "gb": round(size / 1e9, 3)},
              "captions": 5 * args.images, "batch_size": 128, "epochs": 1, "train_seconds": round(seconds, 1),
              "rss_anon_mb": {"before": round(before, 1), "after": round(after, 1), "peak": round(sampler.peak, 1),
                              "growth_after": round(after - before, 1),
                              "growth_peak": round(sampler.peak - before, 1)},
              "target_growth_mb": 300, "ok": sampler.peak - before < 300}
    print(result["rss_anon_mb"], f"{seconds:.0f} s")
    write(args.out, result)


if __name__ == "__main__":
    main()
