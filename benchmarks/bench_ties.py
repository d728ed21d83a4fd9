"""Cost of the honest tie rule: vsekit's ``recall`` against an earlier version's, interleaved in one process.

Usage (from the repository root; OLD is the ``vsekit/metrics_core.py`` of an earlier checkout, e.g. from
``git worktree add ../old 5a21dac``)::

    python benchmarks/bench_ties.py --old ../old/vsekit/metrics_core.py --threads 1 \
        --out benchmarks/results/eval_ties_1thread.json

Random unit embeddings (1024-d, 5 captions per image, captions noisy copies of their image) at 1K and 5K
images; each repeat times the old ``recall``, the new one (``ties="pessimistic"``) and the new one with
``ties="reference"`` in turn, so load changes hit all three alike. Medians of the repeats.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old", type=Path, required=True, help="an earlier vsekit/metrics_core.py")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    spec = importlib.util.spec_from_file_location("old_metrics_core", a.old)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    from vsekit import metrics as new

    rng = np.random.default_rng(0)
    cases = []
    for n in (1000, 5000):
        img = rng.standard_normal((n, 1024)).astype(np.float32)
        img /= np.linalg.norm(img, axis=1, keepdims=True)
        c2i = np.repeat(np.arange(n), 5)
        cap = img[c2i] + 0.4 * rng.standard_normal((5 * n, 1024)).astype(np.float32)
        cap /= np.linalg.norm(cap, axis=1, keepdims=True)
        # partial binds this case's arrays now (a lambda would look img, cap, c2i up when called)
        runs = {"old": partial(old.recall, img, cap, c2i), "pessimistic": partial(new.recall, img, cap, c2i),
                "reference": partial(new.recall, img, cap, c2i, ties="reference")}
        times: dict[str, list[float]] = {k: [] for k in runs}
        rsum = {}
        for _ in range(a.repeats):
            for name, f in runs.items():
                t0 = time.perf_counter()
                rsum[name] = f()["rsum"]
                times[name].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        case = {"n_img": n, "n_cap": 5 * n, "dim": 1024, "chunk_size": 1024, "times_s": times, "median_s": med,
                "ratio_to_old": {k: med[k] / med["old"] for k in ("pessimistic", "reference")}, "rsum": rsum}
        cases.append(case)
        print(f"{n} images: old {med['old']:.3f} s, pessimistic {med['pessimistic']:.3f} s "
              f"({case['ratio_to_old']['pessimistic']:.2f}x), reference {med['reference']:.3f} s "
              f"({case['ratio_to_old']['reference']:.2f}x); rsum {rsum}", flush=True)
    out = {"command": " ".join(shlex.quote(x) for x in [Path(sys.executable).name, *sys.argv]),
           "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch": torch.__version__, "threads": a.threads,
           "repeats": a.repeats, "cases": cases}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
