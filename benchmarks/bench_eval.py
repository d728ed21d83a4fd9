"""Benchmark retrieval evaluation: vsekit.metrics.recall vs a reference loop.

Usage (from the repository root)::

    python benchmarks/bench_eval.py [--threads 1] [--repeats 5] \
        [--out benchmarks/results/eval.json]

Cases, each measured in a fresh subprocess (so peak RSS is per case):

* ``recall_1k``   -- ``recall`` on 1K images x 5K captions;
* ``recall_5k``   -- ``recall`` on 5K images x 25K captions;
* ``baseline_1k`` -- the classic per-query loop (numpy float64, one full
  ``np.argsort`` per query row, rank = position of the ground truth, min over
  the 5 ground-truth captions for image annotation) on 1K x 5K only.

Embeddings are seeded random unit vectors (1024-d, float32); captions are noisy
copies of their image so recall is neither 0 nor 100.  Times are the median of
``--repeats`` runs (no separate warm-up; all raw timings are kept).  Peak RSS is
``ru_maxrss`` of the case's process, reported above the level reached right after
importing numpy/torch/vsekit (``rss_above_import_mb``) and above the level after
the input data exists (``rss_working_mb``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DIM = 1024
CAPS_PER_IMAGE = 5
SEED = 0
NOISE = 12.0  # caption = image + noise of this norm, giving mid-range recall
CASES: dict[str, tuple[str, int]] = {  # name -> (method, number of images)
    "recall_1k": ("recall", 1000),
    "recall_5k": ("recall", 5000),
    "baseline_1k": ("baseline", 1000),
}
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# --------------------------------------------------------------------------- #
# Child side: one case per process
# --------------------------------------------------------------------------- #
def max_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _normalize_rows_(x: Any, block: int = 4096) -> None:
    """L2-normalize rows in place, blockwise (no full-size temporaries)."""
    import numpy as np

    for start in range(0, len(x), block):
        rows = x[start : start + block]
        rows /= np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None]


def make_data(n_img: int, seed: int = SEED) -> tuple[Any, Any, Any]:
    """Seeded unit-norm image/caption embeddings; captions are noisy image copies.

    Built blockwise so that creating the data does not raise peak RSS much
    above the size of the arrays themselves (which would hide the working
    memory of the evaluated function in ``ru_maxrss``).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    img = rng.standard_normal((n_img, DIM), dtype=np.float32)
    _normalize_rows_(img)
    cap2img = np.repeat(np.arange(n_img), CAPS_PER_IMAGE)
    cap = np.empty((len(cap2img), DIM), dtype=np.float32)
    rng.standard_normal(out=cap, dtype=np.float32)
    cap *= NOISE / np.sqrt(DIM)  # noise norm ~ NOISE, signal norm 1
    for start in range(0, len(cap), 4096):
        cap[start : start + 4096] += img[cap2img[start : start + 4096]]
    _normalize_rows_(cap)
    return img, cap, cap2img


def baseline_recall(img: Any, cap: Any, cap2img: Any) -> dict[str, float]:
    """Reference-style evaluation: one full argsort per query, in float64."""
    import numpy as np

    from vsekit.metrics import recall_summary

    img64, cap64 = img.astype(np.float64), cap.astype(np.float64)
    gt_caps = [np.flatnonzero(cap2img == i) for i in range(len(img64))]
    r_i2t = np.zeros(len(img64), dtype=np.int64)
    for i in range(len(img64)):
        order = np.argsort(cap64 @ img64[i])[::-1]
        r_i2t[i] = min(np.flatnonzero(order == j)[0] for j in gt_caps[i])
    r_t2i = np.zeros(len(cap64), dtype=np.int64)
    for j in range(len(cap64)):
        order = np.argsort(img64 @ cap64[j])[::-1]
        r_t2i[j] = np.flatnonzero(order == cap2img[j])[0]
    return recall_summary(r_i2t, r_t2i)


def time_repeats(fn: Callable[[], dict[str, float]], repeats: int) -> tuple[list[float], dict]:
    """Run ``fn`` ``repeats`` times; return wall times and the last result."""
    times, result = [], {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def run_case(name: str, threads: int, repeats: int, chunk_size: int) -> dict[str, Any]:
    """Measure one case in this (fresh) process and return a JSON-able record."""
    sys.path.insert(0, str(REPO_ROOT))
    import numpy as np  # noqa: F401  (counted in the import baseline)
    import torch

    from vsekit.metrics import recall

    torch.set_num_threads(threads)
    rss_import = max_rss_mb()
    method, n_img = CASES[name]
    img, cap, cap2img = make_data(n_img)
    rss_data = max_rss_mb()
    if method == "recall":
        fn = partial(recall, img, cap, cap2img, chunk_size=chunk_size)
    else:
        fn = partial(baseline_recall, img, cap, cap2img)
    times, summary = time_repeats(fn, repeats)
    rss_peak = max_rss_mb()
    return {
        "case": name,
        "method": method,
        "n_img": n_img,
        "n_cap": n_img * CAPS_PER_IMAGE,
        "dim": DIM,
        "torch_threads": torch.get_num_threads(),
        "chunk_size": chunk_size if method == "recall" else None,
        "repeats": repeats,
        "times_s": times,
        "median_s": statistics.median(times),
        "rss_import_mb": rss_import,
        "rss_after_data_mb": rss_data,
        "rss_peak_mb": rss_peak,
        "rss_above_import_mb": rss_peak - rss_import,
        "rss_working_mb": rss_peak - rss_data,
        "summary": summary,
    }


# --------------------------------------------------------------------------- #
# Parent side: orchestrate subprocesses, print, write JSON
# --------------------------------------------------------------------------- #
def spawn_case(name: str, args: argparse.Namespace, repeats: int) -> dict[str, Any]:
    """Re-invoke this script with ``--case`` and parse the JSON it prints."""
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--case", name,
        "--threads", str(args.threads), "--repeats", str(repeats),
        "--chunk-size", str(args.chunk_size),
    ]  # fmt: skip
    env = dict(os.environ, **{var: str(args.threads) for var in THREAD_ENV_VARS})
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"case {name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_info(threads: int) -> dict[str, Any]:
    import numpy as np
    import torch

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "torch_threads": threads,
        "thread_env": {var: str(threads) for var in THREAD_ENV_VARS},
    }


def max_summary_diff(a: dict[str, float], b: dict[str, float]) -> float:
    return max(abs(a[k] - b[k]) for k in a)


def print_table(records: list[dict[str, Any]]) -> None:
    header = f"{'case':<12} {'size':>12} {'median s':>9} {'min s':>8} {'max s':>8} " \
             f"{'RSS+imp MB':>10} {'RSS work MB':>11} {'rsum':>8}"  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in records:
        size = f"{r['n_img'] // 1000}Kx{r['n_cap'] // 1000}K"
        print(
            f"{r['case']:<12} {size:>12} {r['median_s']:>9.3f} {min(r['times_s']):>8.3f} "
            f"{max(r['times_s']):>8.3f} {r['rss_above_import_mb']:>10.1f} "
            f"{r['rss_working_mb']:>11.1f} {r['summary']['rsum']:>8.2f}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch / BLAS threads")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per case")
    p.add_argument(
        "--baseline-repeats", type=int, default=None,
        help="timed runs for the (slow) baseline; default: --repeats",
    )  # fmt: skip
    p.add_argument("--chunk-size", type=int, default=1024, help="recall chunk_size")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/eval.json"))
    p.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.case:  # child mode: print one JSON line
        print(json.dumps(run_case(args.case, args.threads, args.repeats, args.chunk_size)))
        return

    baseline_repeats = args.baseline_repeats or args.repeats
    records = [
        spawn_case(name, args, baseline_repeats if CASES[name][0] == "baseline" else args.repeats)
        for name in CASES
    ]
    by_name = {r["case"]: r for r in records}
    speedup = by_name["baseline_1k"]["median_s"] / by_name["recall_1k"]["median_s"]
    diff = max_summary_diff(by_name["baseline_1k"]["summary"], by_name["recall_1k"]["summary"])

    print_table(records)
    print(f"speedup vs baseline on 1Kx5K (median/median): {speedup:.1f}x")
    print(f"max |baseline - recall| over summary keys on 1Kx5K: {diff:.3g}")

    report = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "cwd": os.getcwd(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(args.threads),
        "settings": {
            "threads": args.threads,
            "repeats": args.repeats,
            "baseline_repeats": baseline_repeats,
            "chunk_size": args.chunk_size,
            "dim": DIM,
            "caps_per_image": CAPS_PER_IMAGE,
            "seed": SEED,
            "caption_noise_norm": NOISE,
            "timing": "wall clock per call, median of repeats, no warm-up",
            "rss": "ru_maxrss per fresh subprocess, minus level after imports / after data",
        },
        "cases": records,
        "speedup_recall_vs_baseline_1k": speedup,
        "max_summary_abs_diff_baseline_vs_recall_1k": diff,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
