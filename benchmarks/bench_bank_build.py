"""Benchmark the start-up of ``vsekit retrieve`` and the first image query's caption-bank build.

Usage (from the repository root, with vsekit-f8k and vsekit-efficientnet installed)::

    python benchmarks/bench_bank_build.py [--model f8k] [--image IMG] [--repeats 3] \
        [--out benchmarks/results/bank_build.json]

Every case is a fresh process with ``OMP_NUM_THREADS=1`` and ``VSEKIT_CACHE_DIR`` in a new temporary folder
(so the first image query really builds the 30,000-caption bank); wall seconds and the process's CPU seconds
(user + system, which a busy machine inflates less) are kept:

* ``first_image_query``: ``vsekit retrieve MODEL --image IMG -q``, building and caching the caption bank (once);
* ``cached_image_query``: the same command again, the bank loaded from the cache (``--repeats``);
* ``text_query``: ``vsekit retrieve MODEL --text "a dog"`` (``--repeats``; the image bank ships with the model);
* ``import_torch`` and ``cli_help``: ``python -c "import torch"`` and ``vsekit --help`` (``--repeats``);
* ``import_breakdown``: ``python -X importtime`` of the text query, self time summed per top-level package.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, SHARED, machine, summary, write

IMAGE = SHARED / "flickr8k" / "images" / "1000268201_693b08cb0e.jpg"


def timed(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall and CPU seconds (user + sys of the child) of one command; raises when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}


def repeated(cmd: list[str], env: dict[str, str], n: int) -> dict:
    runs = [timed(cmd, env) for _ in range(n)]
    return {"wall_s": summary([r["wall_s"] for r in runs]), "cpu_s": summary([r["cpu_s"] for r in runs])}


def import_breakdown(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Self import time (s) per top-level package of one run of ``cmd`` under ``-X importtime``."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *cmd[1:]], cwd=REPO, env=env, capture_output=True,
                          text=True)
    per: dict[str, float] = defaultdict(float)
    for line in proc.stderr.splitlines():
        parts = line[len("import time:"):].split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line, or another line of stderr
        per[parts[2].strip().split(".")[0]] += int(parts[0]) / 1e6
    top = dict(sorted(per.items(), key=lambda kv: -kv[1])[:8])
    return {"total_s": round(sum(per.values()), 3), **{k: round(v, 3) for k, v in top.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="f8k")
    ap.add_argument("--image", type=Path, default=IMAGE)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bank_build.json"))
    args = ap.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="vsekit-bench-cache-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "VSEKIT_CACHE_DIR": str(cache)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached after the first run
    vsekit = [sys.executable, "-m", "vsekit"]
    image_cmd = [*vsekit, "retrieve", args.model, "--image", str(args.image), "-k", "5", "-q"]
    text_cmd = [*vsekit, "retrieve", args.model, "--text", "a dog", "-k", "5"]
    try:
        load_before = os.getloadavg()
        results = {
            "import_torch": repeated([sys.executable, "-c", "import torch"], env, args.repeats),
            "cli_help": repeated([*vsekit, "--help"], env, args.repeats),
            "text_query": repeated(text_cmd, env, args.repeats),
            "first_image_query": timed(image_cmd, env),
            "cached_image_query": repeated(image_cmd, env, args.repeats),
            "import_breakdown": import_breakdown(text_cmd, env),
        }
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(cache, ignore_errors=True)  # our own temporary cache
    for name, r in results.items():
        print(f"{name:>20}: {r}")
    write(args.out, {"benchmark": "retrieve_startup_and_bank_build",
                     "machine": {**machine(1), "load_average_before": load_before, "load_average_after": load_after},
                     "config": {"model": args.model, "image": args.image.name, "repeats": args.repeats,
                                "n_captions": 30000},
                     "results": results})


if __name__ == "__main__":
    main()
