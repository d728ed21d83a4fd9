"""Benchmark retrieval: one image query over the 30,000-caption bank of the packaged Flickr8K model.

Usage (from the repository root, with vsekit-f8k and vsekit-efficientnet installed)::

    python benchmarks/bench_retrieve.py [--model f8k] [--image IMG] [--repeats 15] [--cli-repeats 3] \
        [--out benchmarks/results/retrieve.json]

Cases, each at 1 and 2 torch threads, median of ``--repeats`` runs after one
warm-up (all raw timings kept):

* ``warm_image_query`` -- Python API, model and bank loaded: extract the
  image's features (EfficientNet-Lite0: decode, resize, crop, forward), embed,
  top-5 over the caption bank. Target < 200 ms. Without an image feature
  extractor installed this case is left out (see ``notes``).
* ``search`` -- top-5 over the caption bank for an embedding already
  computed (``bank.search``: one matrix-vector product and ``torch.topk``).
  Target < 50 ms.
* ``warm_text_query`` -- embed a caption (GRU) and top-5 over the image bank.
* ``load`` -- ``Retriever.load`` plus loading the caption bank (cold in-process).
* ``cli_image`` / ``cli_text`` -- the whole command (``vsekit retrieve --image
  IMG`` / ``--text ...``) in a fresh process, threads set by
  ``OMP_NUM_THREADS``: Python start, imports, loading, the query, printing.

The caption bank must exist (it is built on first use and cached: minutes on a
CPU); the script builds it first if needed and says so.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, SHARED, machine, summary, write

TEXT = "a dog runs on the beach"
TARGETS_MS = {"warm_image_query": 200.0, "search": 50.0}


def timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def ms(values: list[float]) -> dict[str, Any]:
    s = summary([round(v, 2) for v in values])
    return {"median_ms": round(s["median"], 2), "min_ms": s["min"], "max_ms": s["max"], "runs_ms": s["runs"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="f8k", help="installed model name or run folder (default: f8k)")
    ap.add_argument("--image", type=Path, default=None, help="default: the first Flickr8K test image")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--cli-repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "retrieve.json")
    args = ap.parse_args()

    import torch

    from vsekit import retrieval

    image = args.image
    if image is None:
        first = (SHARED / "flickr8k-effnet-lite0" / "test_ids.txt").read_text().split()[0]
        image = SHARED / "flickr8k" / "images" / first
    notes: list[str] = []
    load_before = os.getloadavg()

    t0 = time.perf_counter()
    r = retrieval.Retriever.load(args.model)
    have_bank = any(retrieval.bank_files(p)[0].is_file() for p in r.default_bank_paths("captions"))
    if not have_bank:
        print("building the caption bank first (once; cached) ...", flush=True)
        notes.append("the caption bank was built by this run before timing")
    cbank = r.caption_bank
    load_ms = (time.perf_counter() - t0) * 1000
    ibank = r.image_bank
    try:
        r.extractor  # noqa: B018 - resolves the image feature extractor
        has_extractor = True
    except Exception as exc:  # e.g. vsekit-efficientnet not installed
        has_extractor = False
        notes.append(f"no image feature extractor ({exc}); warm_image_query and cli_image left out")

    cases: dict[str, Any] = {}
    if has_extractor:
        q = r.embed_image(image)
    else:
        q = retrieval.embed_features(r.model, torch.zeros(r.model.dim_image).numpy())
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        key = f"{threads}_thread" + ("s" if threads > 1 else "")
        if has_extractor:
            cases.setdefault("warm_image_query", {})[key] = ms(timed(lambda: r.captions_for_image(image, k=5),
                                                                     args.repeats))
            cases.setdefault("extract_features_only", {})[key] = ms(timed(lambda: r.image_features([image]),
                                                                          args.repeats))
        cases.setdefault("search", {})[key] = ms(timed(lambda: cbank.search(q, k=5), args.repeats * 3))
        cases.setdefault("warm_text_query", {})[key] = ms(timed(lambda: r.images_for_caption(TEXT, k=5), args.repeats))
    cases["load"] = {"ms": round(load_ms, 1), "note": "Retriever.load + caption bank load, in this process"}

    # cold: the whole command in a fresh process
    vsekit = str(Path(sys.executable).with_name("vsekit"))
    commands = {"cli_text": [vsekit, "retrieve", args.model, "--text", TEXT, "-k", "5"]}
    if has_extractor:
        commands["cli_image"] = [vsekit, "retrieve", args.model, "--image", str(image), "-k", "5"]
    for name, cmd in commands.items():
        for threads in [int(t) for t in args.threads.split(",")]:
            env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
            runs = []
            for _ in range(args.cli_repeats):
                t = time.perf_counter()
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                runs.append((time.perf_counter() - t) * 1000)
                if proc.returncode != 0:
                    raise SystemExit(f"{shlex.join(cmd)} failed:\n{proc.stderr}")
            key = f"{threads}_thread" + ("s" if threads > 1 else "")
            cases.setdefault(name, {"command": shlex.join(cmd)})[key] = ms(runs)
    top = [h.to_dict() for h in r.captions_for_image(image, k=5)] if has_extractor else None

    met = {}
    for name, target in TARGETS_MS.items():
        if name in cases:
            met[name] = {k: v["median_ms"] < target for k, v in cases[name].items() if isinstance(v, dict)}
    payload = {
        "machine": machine(torch.get_num_threads()),
        "model": str(r.ref.path) if r.ref else args.model,
        "caption_bank": {"path": str(cbank.path), "captions": len(cbank), "dim": cbank.dim, "dtype": cbank.dtype},
        "image_bank": {"path": str(ibank.path), "images": len(ibank)},
        "image": str(image),
        "targets_ms": TARGETS_MS,
        "target_met": met,
        "cases": cases,
        "top5_for_image": top,
        "load_average_1_5_15min": {"before": load_before, "after": os.getloadavg()},
        "notes": [*notes, "shared 2-core machine; other jobs may have been running: compare medians, not single runs"],
    }
    write(args.out, payload)
    for name, v in cases.items():
        if name == "load":
            print(f"{name:>22}: {v['ms']:.0f} ms")
            continue
        print(f"{name:>22}: " + ", ".join(f"{k} {x['median_ms']:.1f} ms" for k, x in v.items() if isinstance(x, dict)))


if __name__ == "__main__":
    main()
