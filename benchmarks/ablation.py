"""Flickr8K ablation table: each row one change to a base spec, the mean ± std of its seeds.

Each row's runs were made with (K the seed; 2 runs at a time on the 2 cores, 1 torch thread each):

    vsekit run BASE --set train.seed=K --set train.threads=1 [--set ...] --out runs/abl/ROW_sK -q

then collected:

    python benchmarks/ablation.py --runs runs/abl --out benchmarks/results/flickr8k_ablation.json

A lever counts (``counts``) when its mean dev rsum beats its baseline row's by more than twice the seed
spread (the larger of the two rows' dev rsum standard deviations). Models are selected on dev only; the
test numbers are read, never used to choose.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from _common import machine, write

from vsekit.evaluate import COLUMNS

FAST = "examples/flickr8k_fast.toml"
MINILM = "plugins/vsekit-minilm/examples/flickr8k_minilm.toml"
GRU_BEST = "examples/flickr8k_best_gru.toml"
FT2 = "examples/flickr8k_minilm_ft2.toml"
#: paths in --set resolve from the spec file's folder, like the spec's own: the rows that set paths have base
#: specs in examples/, so "../runs/..." is the repository's runs/ folder ("../../../runs/..." from MINILM's)
#: vsekit extract efficientnet_lite0 TRAIN_IMAGES --set ten_crop=true --set view=9 -o runs/views/flip_ims.npy
VIEWS = "../runs/views/flip_ims.npy"
#: benchmarks/trunk.sh: vsekit extract efficientnet_lite0 SPLIT_IMAGES --set output=trunk -o runs/trunk/SPLIT_ims.npy
TRUNK = "../runs/trunk"
#: vsekit minilm-words SHARED/flickr8k-effnet-lite0/train_caps.txt -o runs/views/minilm_words.txt
WORDS = "../runs/views/minilm_words.txt"

#: (row, baseline row, base spec, what changed, its --set options); runs are RUNS/ROW_sK
ROWS: list[tuple[str, str | None, str, str, list[str]]] = [
    ("base", None, FAST, "flickr8k_fast.toml: GRU last state, linear image head, InfoNCE, 4 epochs cosine", []),
    ("gpo", "base", FAST, "GPO pooling over the GRU's word states", ['model.sentence_encoder.pooling="gpo"']),
    ("gpo6", "gpo", FAST, "schedule: GPO, cosine over 6 epochs instead of 4",
     ['model.sentence_encoder.pooling="gpo"', "train.max_epochs=6"]),
    ("gpv", "gpo", FAST, "GPO + per-view features (centre or mirror): examples/flickr8k_best_gru.toml",
     ['model.sentence_encoder.pooling="gpo"', f'data.train_views=["{VIEWS}"]']),
    ("gtop", "gpo", FAST, "GPO + EfficientNet-Lite0's last block + head fine-tuned (0.1 x lr) on cached trunk "
     "activations (efficientnet_top)", ['model.sentence_encoder.pooling="gpo"', f'data.dir="{TRUNK}"',
                                        'model.image_encoder.type="efficientnet_top"']),
    ("mean", "base", FAST, "mean pooling over the GRU's word states", ['model.sentence_encoder.pooling="mean"']),
    ("mlp", "base", FAST, "image side: linear + residual 2-layer MLP head", ['model.image_encoder.type="mlp"']),
    ("wd1", "base", FAST, "word dropout 0.1", ["model.sentence_encoder.word_dropout=0.1"]),
    ("views", "base", FAST, "train features: centre crop or its mirror, drawn per image each epoch",
     [f'data.train_views=["{VIEWS}"]']),
    ("views4", "views", FAST, "per-view features from 4 views: centre, its mirror, top-left and bottom-right crops",
     [f'data.train_views=["{VIEWS}", "../runs/views/view0_ims.npy", "../runs/views/view3_ims.npy"]']),
    ("gp4", "gpv", GRU_BEST, "GPO + per-view features from the 4 views of row views4",
     [f'data.train_views=["{VIEWS}", "../runs/views/view0_ims.npy", "../runs/views/view3_ims.npy"]']),
    ("mv", "base", FAST, "loss: InfoNCE for 2 epochs, then max-violation hinge (margin 0.2)",
     ['loss.type="max_violation"', 'loss.warmup_loss="infonce"', "loss.warmup_epochs=2"]),
    ("bs256", "base", FAST, "batch size 256 (same lr)", ["train.batch_size=256"]),
    ("bigru", "base", FAST, "bidirectional GRU (last states averaged)", ["model.sentence_encoder.bidirectional=true"]),
    ("t05", "base", FAST, "InfoNCE temperature 0.05 (base 0.07)", ["loss.temperature=0.05"]),
    ("t10", "base", FAST, "InfoNCE temperature 0.1 (base 0.07)", ["loss.temperature=0.1"]),
    ("warm", "base", FAST, "linear learning-rate warm-up over the first 200 steps (of 936)",
     ["train.warmup_steps=200"]),
    ("dim512", "base", FAST, "joint embedding size 512 instead of 1024 (the GRU's hidden size with it)",
     ["model.dim=512"]),
    ("mwv", "base", FAST, "not from scratch: word embeddings (384-d) start from MiniLM's word-piece embeddings",
     ["model.sentence_encoder.dim_word=384", f'model.sentence_encoder.word_vectors="{WORDS}"']),
    ("minilm", None, MINILM, "frozen MiniLM + MLP head (plugin example), 3 epochs cosine",
     ["train.max_epochs=3", 'train.lr_schedule="cosine"']),
    ("mft2", "minilm", MINILM, "MiniLM: fine-tune the top 2 layers at 0.1 x lr", [
        "train.max_epochs=3", 'train.lr_schedule="cosine"', "model.sentence_encoder.finetune_layers=2",
        "model.sentence_encoder.finetune_lr_scale=0.1"]),
    ("mtop", "minilm", MINILM, "image side: EfficientNet-Lite0's last block + head fine-tuned (0.1 x lr) on cached "
     "trunk activations (efficientnet_top)",
     ["train.max_epochs=3", 'train.lr_schedule="cosine"', f'data.dir="../../{TRUNK}"',
      'model.image_encoder.type="efficientnet_top"']),
    ("btop", "mft2", FT2, "MiniLM top 2 layers fine-tuned + EfficientNet-Lite0's last block fine-tuned: "
     "examples/flickr8k_best.toml", [f'data.dir="{TRUNK}"', 'model.image_encoder.type="efficientnet_top"']),
]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def epoch_seconds(run: Path) -> float:
    """The mean wall time of the run's epochs (``epoch`` events of metrics.jsonl)."""
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    secs = [e["seconds"] for e in events if e.get("event") == "epoch"]
    return statistics.fmean(secs)


def collect(root: Path, row: str) -> dict[str, Any] | None:
    runs = sorted(p for p in root.glob(f"{row}_s*") if (p / "results.json").is_file())
    if not runs:
        return None
    results = [json.loads((r / "results.json").read_text()) for r in runs]
    out: dict[str, Any] = {"seeds": [r["seed"] for r in results], "runs": [str(r) for r in runs]}
    for split, key in (("dev", "valid"), ("test", "test")):
        out[split] = {c: dict(zip(("mean", "std"), mean_std([r[key][c] for r in results]), strict=True))
                      for c in COLUMNS}
        out[split]["per_seed_rsum"] = [r[key]["rsum"] for r in results]
    out["best_epoch"] = [r["best_epoch"] for r in results]
    out["seconds_per_epoch"] = statistics.fmean(epoch_seconds(r) for r in runs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/abl"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    table: dict[str, Any] = {}
    for row, baseline, base, what, sets in ROWS:
        got = collect(args.runs, row)
        if got is None:
            continue
        command = " ".join([f"vsekit run {base} --set train.seed=K --set train.threads=1",
                            *(f"--set '{s}'" for s in sets), f"--out runs/abl/{row}_sK -q"])
        entry = {"what": what, "baseline": baseline, "command": command, **got}
        if baseline in table:
            b = table[baseline]["dev"]["rsum"]
            spread = max(b["std"], got["dev"]["rsum"]["std"])
            entry["dev_rsum_minus_baseline"] = got["dev"]["rsum"]["mean"] - b["mean"]
            entry["counts"] = entry["dev_rsum_minus_baseline"] > 2 * spread
        table[row] = entry
    print(f"{'row':<12}{'n':>2} {'dev rsum':>14} {'test rsum':>14}  " + " ".join(f"{c:>7}" for c in COLUMNS[:-1])
          + f" {'s/epoch':>8}  counts")
    for row, e in table.items():
        d, t = e["dev"]["rsum"], e["test"]["rsum"]
        cols = " ".join(f"{e['test'][c]['mean']:7.1f}" for c in COLUMNS[:-1])
        print(f"{row:<12}{len(e['seeds']):>2} {d['mean']:8.1f}±{d['std']:<4.1f} {t['mean']:8.1f}±{t['std']:<4.1f}  "
              f"{cols} {e['seconds_per_epoch']:8.0f}  {e.get('counts', '')}")
    note = ("each run used 1 torch thread, two runs at a time on the 2 cores (a third process extracted "
            "features during part of the first rows); seconds per epoch are wall time under that sharing")
    write(args.out, {"machine": machine(1), "note": note, "rows": table})


if __name__ == "__main__":
    main()
