#!/bin/bash
# The trunk activations of Flickr8K's three splits for the efficientnet_top image encoder: what enters
# EfficientNet-Lite0's last block (192 x 7 x 7 per image, float16), in the reference folder's row order,
# with its captions linked beside them: a precomp folder (default runs/trunk, about 150 MB).
# Run from the repository root with vsekit-efficientnet installed:   bash benchmarks/trunk.sh [OUT]
# Measured: 75 s (dev), 80 s (test), about 8 min (train) on one thread beside two training runs.
set -euo pipefail
out=${1:-runs/trunk}
shared=$(cd ../shared/data && pwd)
mkdir -p "$out"
for s in dev test train; do
  sed "s#^#$shared/flickr8k/images/#" "$shared/flickr8k-effnet-lite0/${s}_ids.txt" > "$out/${s}_list.txt"
  ln -sf "$shared/flickr8k-effnet-lite0/${s}_caps.txt" "$out/${s}_caps.txt"
  xargs -a "$out/${s}_list.txt" vsekit extract efficientnet_lite0 --set output=trunk --set top_blocks=1 \
    --set threads=1 --set workers=1 --dtype float16 -o "$out/${s}_ims.npy" -q
done
