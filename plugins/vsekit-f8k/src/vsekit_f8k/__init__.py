"""vsekit-f8k: a vsekit model trained on Flickr8K, ready for ``vsekit retrieve``.

Installed, it is the model ``f8k`` of the entry-point group ``vsekit.models``
(``vsekit models`` lists it), so ``vsekit retrieve --image photo.jpg`` works
without training. The files in ``data/`` are made by ``build.py`` from a run
of ``examples/flickr8k.toml``:

* ``model.json`` + ``model.safetensors``: the checkpoint, float16 weights;
* ``model.captions.csv``: the 30,000 training captions (``image,caption``),
  encoded into the caption bank on first use and cached;
* ``model.images_bank.json`` + ``.safetensors``: the 1,000 test images'
  embeddings (ids only: Flickr8K images are not redistributed).

Flickr8K (Hodosh, Young, Hockenmaier, JAIR 2013) is for research use only,
and so is everything derived from it here: see README.md.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

DATA = Path(__file__).resolve().parent / "data"


def model_path() -> Path:
    """The packaged checkpoint's JSON (the ``vsekit.models`` entry point)."""
    return DATA / "model.json"
