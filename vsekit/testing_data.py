"""Test data for vsekit's tests and plugin authors' (re-exported by :mod:`vsekit.testing`): the packaged
Flickr8K slice as splits, folders, specs and batches, quick runs, and the shared test data folder."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from vsekit.io import record_text

F8K_MINI = "vsekit:f8k_mini"

__all__ = ["F8K_MINI", "find_shared_data", "missing_test_input", "run_quick", "shared_data", "tiny_batch",
           "tiny_dataset", "tiny_spec", "tiny_split"]


def missing_test_input(reason: str) -> NoReturn:
    """Skip the calling pytest test because data or a tool it needs is absent; under ``CI=true``, fail it.

    CI has every input (``.ci/run`` sets ``CI=true``), so a missing one there is
    a broken setup that a skip would hide.

    Raises:
        pytest.skip.Exception: outside CI. ``pytest.fail.Exception``: under ``CI=true``.
    """
    import pytest

    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
    pytest.skip(reason)


def find_shared_data(*needs: str) -> Path | None:
    """The real-data root holding every relative path in ``needs`` (e.g. ``"flickr8k/captions.txt"``), or None.

    Looked for in ``$VSEKIT_SHARED_DATA``, then ``../shared/data`` beside the vsekit
    checkout, then beside the current directory.
    """
    here = Path(__file__).resolve().parents[1]  # the checkout (an editable or source install)
    candidates = [os.environ.get("VSEKIT_SHARED_DATA"), here.parent / "shared" / "data",
                  Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c and Path(c).is_dir() and all((Path(c) / n).exists() for n in needs):
            return Path(c)
    return None


def shared_data(*needs: str) -> Path:
    """:func:`find_shared_data`, for a test: when no folder holds ``needs``, the calling test is skipped,
    or failed under ``CI=true`` (:func:`missing_test_input`)."""
    found = find_shared_data(*needs)
    if found is not None:
        return found
    missing_test_input(f"real data not found: needs {', '.join(needs) or 'the shared data folder'} under "
                       "$VSEKIT_SHARED_DATA or ../shared/data beside the checkout")


def tiny_split(split: str = "train", n_images: int = 20) -> Any:
    """The first ``n_images`` images of a split of ``vsekit:f8k_mini`` and their 5 captions each."""
    from vsekit.data.readers import PrecompReader

    reader = PrecompReader(PrecompReader.Config(dir=F8K_MINI))
    return reader.read(split).subset(n_images)


def tiny_dataset(dest: str | Path, train: int = 40, dev: int = 20, test: int = 20) -> Path:
    """Write a ``precomp`` folder with the first images of each ``vsekit:f8k_mini`` split (5 captions each).

    For components that are slow per caption (a pretrained transformer):
    ``tiny_spec(data={"type": "precomp", "dir": str(tiny_dataset(tmp_path))})``.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("dev", dev), ("test", test)):
        s = tiny_split(split, n)
        caps = dest / f"{split}_caps.txt"
        caps.write_text(record_text(s.captions, "caption", str(caps)), encoding="utf-8")
        np.save(dest / f"{split}_ims.npy", s.images)
    return dest


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and "type" not in value:
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def tiny_spec(*, sentence_encoder: dict[str, Any] | None = None, image_encoder: dict[str, Any] | None = None,
              **sections: Any) -> dict[str, Any]:
    """A spec dict over ``vsekit:f8k_mini`` that trains one epoch in seconds (32-d, one thread).

    ``sentence_encoder`` / ``image_encoder`` replace the model's component
    tables; other keyword arguments are merged into the sections of the same
    name (a table with a ``type`` replaces the section's table whole)::

        tiny_spec(sentence_encoder={"type": "mine"}, train={"max_epochs": 2})
    """
    spec: dict[str, Any] = {
        "name": "tiny",
        "data": {"type": "precomp", "dir": F8K_MINI},
        "model": {"dim": 32, "sentence_encoder": {"type": "gru", "dim_word": 32}, "image_encoder": {"type": "linear"}},
        "loss": {"type": "infonce"},
        "train": {"max_epochs": 1, "batch_size": 128, "seed": 0, "threads": 1, "lr": 0.001},
        "eval": {"split": "test"},
    }
    if sentence_encoder is not None:
        spec["model"]["sentence_encoder"] = copy.deepcopy(sentence_encoder)
    if image_encoder is not None:
        spec["model"]["image_encoder"] = copy.deepcopy(image_encoder)
    return _merge(spec, sections)


def tiny_batch(n: int = 6, split: str = "dev", with_texts: bool = True) -> tuple[Any, Any]:
    """(TextBatch, Vocab): ``n`` real captions of ``vsekit:f8k_mini``, padded, with their token lists."""
    from vsekit.data.batching import CaptionStore
    from vsekit.data.tokenize import tokenize_all
    from vsekit.data.vocab import Vocab, encode_all

    s = tiny_split(split, n_images=max(1, (n + 4) // 5))
    captions = tokenize_all(s.captions[:n], "regex")
    vocab = Vocab.build(captions)
    flat, lengths = encode_all(vocab, captions)
    store = CaptionStore(flat, lengths, captions)
    return store.batch(np.arange(len(captions)), with_texts=with_texts), vocab


# --------------------------------------------------------------------------
# running


def run_quick(spec: str | Path | dict[str, Any], out: str | Path, *overrides: str, epochs: int = 1) -> dict[str, Any]:
    """Train and evaluate ``spec`` (a file or a dict) for ``epochs`` epochs on one thread, quietly; return the results.

    ``overrides`` are ``--set`` style strings (``"model.dim=32"``) applied after
    the epoch and thread settings.
    """
    from vsekit import api

    sets = [f"train.max_epochs={epochs}", "train.threads=1", *overrides]
    return api.train(spec, out, overrides=sets, quiet=True, force=True)
