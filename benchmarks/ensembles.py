"""Ensembles of trained Flickr8K runs on the test split, as ``vsekit eval --ensemble`` computes them.

    python benchmarks/ensembles.py --out benchmarks/results/flickr8k_ensembles.json \
        --ensemble gru3=runs/best_gru_s0,runs/best_gru_s1,runs/best_gru_s2 \
        --ensemble minilm+gru=runs/best_s0,runs/best_gru_s0

Each ``--ensemble NAME=RUN,RUN,...`` is one row: the mean of the members' similarity matrices, ranked with
the default (pessimistic) tie rule; the same as ``vsekit eval --ensemble RUN RUN ... --split test``. The
members' own test numbers (each run's ``results.json``) are listed beside it. Nothing is selected on test:
the members are the runs the table reports, each chosen on dev.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import machine, write

from vsekit import api
from vsekit.evaluate import COLUMNS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ensemble", action="append", required=True, metavar="NAME=RUN,RUN,...")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = {}
    for item in args.ensemble:
        name, _, members = item.partition("=")
        runs = [Path(m) for m in members.split(",") if m]
        t0 = time.perf_counter()
        metrics, _ = api.eval_checkpoint(runs, split=args.split, verbose=False, log_warnings=False)
        singles = [json.loads((r / "results.json").read_text())[args.split] for r in runs]
        rows[name] = {"command": f"vsekit eval --ensemble {' '.join(map(str, runs))} --split {args.split}",
                      "members": [str(r) for r in runs], "seconds": time.perf_counter() - t0,
                      **{c: metrics[c] for c in COLUMNS}, "warnings": metrics["warnings"],
                      "members_rsum": [s["rsum"] for s in singles]}
        cols = " ".join(f"{metrics[c]:6.1f}" for c in COLUMNS)
        member_rsums = ", ".join(f"{s['rsum']:.1f}" for s in singles)
        print(f"{name:<20} {cols}   members: {member_rsums}")
    write(args.out, {"machine": machine(1), "split": args.split, "ties": "pessimistic", "rows": rows})


if __name__ == "__main__":
    main()
