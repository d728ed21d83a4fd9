"""Collect repeated runs (one ``results.json`` per run folder) into mean ± std, and save it as a result.

    CMD="vsekit run examples/flickr8k.toml --set train.seed=K --set train.threads=1 --out runs/flickr8k_seeds/seedK"
    python benchmarks/summarize_seeds.py runs/flickr8k_seeds/seed0 runs/flickr8k_seeds/seed1 \
        runs/flickr8k_seeds/seed2 --out benchmarks/results/flickr8k_gru_infonce_3seeds.json \
        --produced-by "$CMD"

The same summary as ``vsekit run --seeds N`` writes, for runs made separately
(e.g. in parallel, one process per seed).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import machine, write

from vsekit.evaluate import format_table
from vsekit.training import summarize_runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", required=True)
    ap.add_argument("--produced-by", required=True, help="the command that made each run")
    args = ap.parse_args()
    runs = [json.loads((r / "results.json").read_text()) for r in args.runs]
    summary = summarize_runs(runs, args.runs[0].parent, quiet=True)
    label = f"{runs[0]['name']}: mean of {len(runs)} seeds"
    print(format_table({label: summary["mean"]}, std={label: summary["std"]}))
    write(args.out, {"produced_by": args.produced_by, "machine": machine(1), **summary})


if __name__ == "__main__":
    main()
