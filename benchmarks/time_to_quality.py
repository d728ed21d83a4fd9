"""Time to quality: dev rsum after each epoch of finished (or stopped) runs, and the epoch each reached a target.

    python benchmarks/time_to_quality.py --target 227 \
        --recipe fast "vsekit run examples/flickr8k_fast.toml --set train.seed=K --set train.threads=1 \
--out runs/ttq/fast_seedK" runs/ttq/fast_seed0 runs/ttq/fast_seed1 runs/ttq/fast_seed2 \
        --recipe default-8-epochs "vsekit run examples/flickr8k.toml ..." runs/flickr8k_seeds/seed0 ... \
        --out benchmarks/results/time_to_quality.json

Reads each run folder's ``metrics.jsonl`` (the ``valid`` events at epoch
ends, the ``epoch`` events' seconds) and ``results.json`` when the run
finished. An epoch is one pass over the 30,000 training captions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from _common import machine, write


def read_run(run: Path, target: float) -> dict[str, Any]:
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    dev = {}
    seconds = 0.0
    elapsed = {}
    for e in events:
        if e["event"] == "epoch":
            seconds += e["seconds"]
            elapsed[int(e["epoch"])] = seconds
        elif e["event"] == "valid" and float(e["epoch"]).is_integer():
            dev[int(e["epoch"])] = e["rsum"]
    reached = next((ep for ep in sorted(dev) if dev[ep] >= target), None)
    out: dict[str, Any] = {"run_dir": str(run), "dev_rsum_by_epoch": dev, "train_seconds_by_epoch": elapsed,
                           "epochs_to_target": reached,
                           "train_seconds_to_target": elapsed.get(reached) if reached else None}
    results = run / "results.json"
    if results.is_file():
        r = json.loads(results.read_text())
        out["test"] = r["test"]
        out["best_epoch"] = r["best_epoch"]
    else:
        out["finished"] = False
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", type=float, default=227.0, help="dev rsum to reach")
    ap.add_argument("--recipe", nargs="+", action="append", required=True, metavar=("LABEL COMMAND", "RUN"),
                    help="a label, the command that made the runs (K = seed), then the run folders")
    ap.add_argument("--note", action="append", default=[], help="free text kept in the JSON")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    recipes = {}
    print(f"dev rsum by epoch (target {args.target:g})")
    for label, command, *runs in args.recipe:
        rows = [read_run(Path(r), args.target) for r in runs]
        epochs = sorted({ep for r in rows for ep in r["dev_rsum_by_epoch"]})
        mean = {ep: float(np.mean([r["dev_rsum_by_epoch"][ep] for r in rows if ep in r["dev_rsum_by_epoch"]]))
                for ep in epochs}
        reached = [r["epochs_to_target"] for r in rows]
        recipes[label] = {"command": command, "runs": rows, "mean_dev_rsum_by_epoch": mean,
                          "epochs_to_target": reached}
        shown = "  ".join(f"e{ep} {v:.1f}" for ep, v in mean.items())
        print(f"{label:>24} (n={len(rows)}): {shown}  | epochs to {args.target:g}: {reached}")
    write(args.out, {"target_dev_rsum": args.target, "notes": args.note, "machine": machine(1), "recipes": recipes})


if __name__ == "__main__":
    main()
