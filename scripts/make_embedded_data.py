"""Build the embedded default dataset ``vsekit/datasets/f8k_mini`` from the reference features.

    python scripts/make_embedded_data.py [--src ../shared/data/flickr8k-effnet-lite0]

Takes the first 1000 train / 200 dev / 200 test images of the official
Flickr8K splits (in split order) with their 5 captions each, and their
EfficientNet-Lite0 features as float16 (one row per image).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

SIZES = {"train": 1000, "dev": 200, "test": 200}
DEST = Path(__file__).resolve().parent.parent / "vsekit" / "datasets" / "f8k_mini"

README = """# f8k_mini: an embedded slice of Flickr8K (research use only)

The first {train} train, {dev} dev and {test} test images of the official Flickr8K
splits, in split order, with their 5 captions each (lowercased and tokenized
with `\\w+|'\\w+|[^\\w\\s]`), and their EfficientNet-Lite0 ImageNet features
(1280-d, L2-normalized, float16; one row per image), in the `precomp` layout:
`SPLIT_caps.txt`, `SPLIT_ims.npy`, `SPLIT_ids.txt`, and `SPLIT_extractor.json`
(the image feature extractor that reproduces the rows, which a model trained on
them records, so `vsekit retrieve --image` knows how to embed a new photo).

Made by `python scripts/make_embedded_data.py` from the reference feature
release `flickr8k-effnet-lite0` (see its README for the exact preprocessing:
shorter side 256, centre crop 224, EfficientNet-Lite0 pooled features).
Source file sha256: {hashes}

## Terms and attribution
Flickr8K: M. Hodosh, P. Young, J. Hockenmaier, "Framing Image Description as a
Ranking Task: Data, Models and Evaluation Metrics", JAIR 47 (2013). The images
belong to their Flickr owners and the captions to the Flickr8K authors; both
are distributed for research use only. This derived sample (features and
captions, no images) is shipped under the same research-use-only terms: do not
use it commercially. Note: most source images were 224x224-squashed copies
(see the dataset's SOURCES.md).
"""


EXTRACTOR = {"extractor": {"type": "efficientnet_lite0"}, "dim": 1280,
             "note": "rows copied from the reference features flickr8k-effnet-lite0; the efficientnet_lite0 "
                     "extractor with its defaults reproduces them (cosine > 0.999)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared/data/flickr8k-effnet-lite0")
    args = ap.parse_args()
    DEST.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for split, n in SIZES.items():
        ims = np.load(args.src / f"{split}_ims.npy")
        caps = (args.src / f"{split}_caps.txt").read_text(encoding="utf-8").splitlines()
        ids = (args.src / f"{split}_ids.txt").read_text(encoding="utf-8").splitlines()
        assert len(caps) == 5 * len(ims) == 5 * len(ids), split
        np.save(DEST / f"{split}_ims.npy", ims[:n].astype(np.float16))
        (DEST / f"{split}_caps.txt").write_text("\n".join(caps[: 5 * n]) + "\n", encoding="utf-8")
        (DEST / f"{split}_ids.txt").write_text("\n".join(ids[:n]) + "\n", encoding="utf-8")
        (DEST / f"{split}_extractor.json").write_text(json.dumps(EXTRACTOR, indent=1) + "\n", encoding="utf-8")
        for name in (f"{split}_ims.npy", f"{split}_caps.txt", f"{split}_ids.txt"):
            hashes[name] = hashlib.sha256((args.src / name).read_bytes()).hexdigest()[:16]
    text = README.format(**SIZES, hashes=", ".join(f"{k} {v}" for k, v in sorted(hashes.items())))
    (DEST / "README.md").write_text(text, encoding="utf-8")
    print(f"wrote {DEST}")


if __name__ == "__main__":
    main()
