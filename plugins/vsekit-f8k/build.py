"""Rebuild the package data of vsekit-f8k from a finished run of examples/flickr8k.toml.

    python plugins/vsekit-f8k/build.py RUN_DIR [--out plugins/vsekit-f8k/src/vsekit_f8k/data]

RUN_DIR is a run folder (its best checkpoint is used) or a checkpoint .json.
The run's spec must equal the committed spec (``--spec``, default
examples/flickr8k.toml) except for keys about how it ran (``RUNTIME_KEYS``:
seed, threads, device, logging and checkpoint frequency): the package ships
only what that spec trains. Writes into OUT:

* ``model.json`` + ``model.safetensors``: the checkpoint with float16 weights,
  recording the image feature extractor (``efficientnet_lite0``), the run it
  came from and the float16 model's test metrics; no absolute path: the
  spec's data folder is recorded relative to OUT (``vsekit.config.portable``);
* ``model.captions.csv``: the training split's captions (``image,caption``),
  Flickr8K's own text where ``--captions-csv`` is found and tokenizes to the
  trained caption exactly, else the tokenized caption;
* ``model.images_bank.*``: the test split's 1,000 image embeddings (float16);
* with ``--with-caption-bank`` also ``model.captions_bank.*`` (the 30,000
  caption embeddings, float16, about 61 MB: over the package's 25 MB budget,
  so by default the bank is built on first use and cached instead).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_OUT = HERE / "src" / "vsekit_f8k" / "data"
BUDGET_MB = 25.0
EXTRACTOR = {"type": "efficientnet_lite0"}
#: spec keys that do not change what is trained (how a run was executed, not what it learns)
RUNTIME_KEYS = {"train.seed", "train.threads", "train.device", "train.tensorboard", "train.disp_freq",
                "train.save_freq", "output.dir", "output.save_last"}


def spec_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        path = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += spec_differences(va, vb, path + ".")
        elif va != vb:
            out.append(f"{path}: run {va!r} vs spec {vb!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="run folder or checkpoint .json")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--spec", type=Path, default=REPO / "examples" / "flickr8k.toml")
    ap.add_argument("--captions-csv", type=Path, default=None,
                    help="Flickr8K captions.txt for display text (default: ../flickr8k/captions.txt beside the data)")
    ap.add_argument("--with-caption-bank", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    from vsekit import checkpoint, retrieval
    from vsekit import spec as spec_mod
    from vsekit.config import portable
    from vsekit.data.tokenize import tokenize
    from vsekit.evaluate import evaluate_split

    if args.threads:
        torch.set_num_threads(args.threads)
    model, meta, _ = checkpoint.load(args.run)
    meta_path = checkpoint.find(args.run)
    # the run's spec with its paths resolved (a checkpoint records them relative to its folder)
    run_spec = spec_mod.from_dict(meta["spec"], source=str(meta_path), base=meta_path.parent).to_dict()
    committed = spec_mod.load(args.spec).to_dict()
    diffs = [d for d in spec_differences(run_spec, committed) if d.split(":")[0] not in RUNTIME_KEYS]
    if diffs:
        print(f"error: {meta_path} was not trained by {args.spec}:\n  " + "\n  ".join(diffs), file=sys.stderr)
        return 2
    reader = spec_mod.from_dict(run_spec, source=str(meta_path), base=meta_path.parent).data.build()
    train, test = reader.read("train"), reader.read("test")
    caps_path, _ = reader.paths("train")
    data_dir = caps_path.parent
    train_ids = retrieval.read_ids(data_dir / "train_ids.txt")
    test_ids = retrieval.read_ids(data_dir / "test_ids.txt")
    assert len(train_ids) == train.n_images and len(test_ids) == test.n_images

    # display text: Flickr8K's own captions where they tokenize to the trained ones
    texts = [" ".join(c) for c in train.captions]
    cap_ids = [train_ids[i] for i in train.cap2img]
    raw_csv = args.captions_csv or data_dir.parent / "flickr8k" / "captions.txt"
    if raw_csv.is_file():
        raw_texts, raw_ids = retrieval.read_captions(raw_csv)
        by_image: dict[str, list[str]] = {}
        if raw_ids is not None:  # a plain text file has no image ids: nothing to match
            for i, t in zip(raw_ids, raw_texts, strict=True):
                by_image.setdefault(i, []).append(t)
        replaced = 0
        seen: dict[str, int] = {}
        for n, (img, toks) in enumerate(zip(cap_ids, train.captions, strict=True)):
            j = seen.get(img, 0)
            seen[img] = j + 1
            cands = by_image.get(img, [])
            if j < len(cands) and tokenize(cands[j]) == list(toks):
                texts[n] = cands[j]
                replaced += 1
        print(f"display text: {replaced} of {len(texts)} captions from {raw_csv}")
    else:
        print(f"display text: tokenized captions ({raw_csv} not found)")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.half()
        spec_path = args.spec.resolve()
        # no path of this machine in the package: the spec's data paths relative to where model.json will live
        # (from a checkout beside ../shared they still resolve; elsewhere `vsekit eval f8k` asks for --data)
        shipped_spec = portable(run_spec, args.out)
        extra = {
            "image_feature_extractor": EXTRACTOR,
            "built_from": {"run": portable(str(meta_path.resolve()), REPO), "weights_sha256": meta["weights_sha256"],
                           "spec_file": portable(str(spec_path), REPO),
                           "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
            "license": "Flickr8K-derived: research use only (see the package README)",
        }
        new_meta = checkpoint.save(tmp, "model", model, shipped_spec, step=meta.get("step", 0),
                                   epoch=meta.get("epoch", 0.0), metrics=meta.get("metrics"), extra=extra)
        # reload exactly as users will (float16 weights into a float32 model), then evaluate and encode with it
        m16, meta16, _ = checkpoint.load(new_meta)
        m16.set_origin(weights_sha256=meta16["weights_sha256"])
        t0 = time.time()
        test_metrics = evaluate_split(m16, test)
        print("float16 model, test split: " + ", ".join(f"{k} {v:.1f}" for k, v in test_metrics.items()
                                                          if k.endswith(("r1", "r5", "r10", "medr")) or k == "rsum")
              + f" ({time.time() - t0:.0f} s)")
        meta16["test_metrics"] = {k: round(float(v), 3) for k, v in test_metrics.items()}
        new_meta.write_text(json.dumps(meta16, indent=1), encoding="utf-8")

        retrieval.write_captions_csv(tmp / "model.captions.csv", texts, cap_ids)
        ibank = retrieval.build_image_bank(m16, test.images, test_ids, extractor=EXTRACTOR,
                                           source="Flickr8K test split (flickr8k-effnet-lite0)")
        ibank.save(tmp / "model.images_bank")
        if args.with_caption_bank:
            cbank = retrieval.build_caption_bank(m16, texts, cap_ids, source="Flickr8K train split", verbose=True)
            cbank.save(tmp / "model.captions_bank")

        args.out.mkdir(parents=True, exist_ok=True)
        for old in args.out.glob("model.*"):
            old.unlink()
        total = 0
        for f in sorted(tmp.iterdir()):
            shutil.copy2(f, args.out / f.name)
            size = f.stat().st_size
            total += size
            print(f"  {args.out / f.name}: {size / 1e6:.1f} MB")
    print(f"total {total / 1e6:.1f} MB" + ("" if total / 1e6 < BUDGET_MB or args.with_caption_bank
                                            else f" — over the {BUDGET_MB} MB budget"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
