"""Checkpoints: safetensors weights + a JSON sidecar (spec, vocabulary, step, metrics). No pickle anywhere.

A checkpoint ``NAME`` in a folder is ``NAME.safetensors`` plus ``NAME.json``.
The JSON records the weights' sha256, which is verified on load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vsekit import __version__
from vsekit.data.vocab import Vocab
from vsekit.errors import CheckpointError, SpecError
from vsekit.io import atomic_write, atomic_write_text, sha256_file
from vsekit.model import JointModel

FORMAT = "vsekit-checkpoint/1"
REQUIRED = ("format", "spec", "vocab", "dim", "dim_image", "weights_sha256")


def save(folder: str | Path, name: str, model: JointModel, spec: dict[str, Any], *, step: int = 0,
         epoch: float = 0.0, metrics: dict[str, Any] | None = None, extra_tensors: dict[str, torch.Tensor] | None = None,
         extra: dict[str, Any] | None = None) -> Path:
    """Write ``folder/name.safetensors`` then ``folder/name.json`` (each atomically); return the JSON path."""
    folder = Path(folder)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    for k, v in (extra_tensors or {}).items():
        tensors[k] = v.detach().contiguous().cpu()
    weights = folder / f"{name}.safetensors"
    atomic_write(weights, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
    meta = {
        "format": FORMAT,
        "vsekit_version": __version__,
        "spec": spec,
        "vocab": model.vocab.words,
        "dim": model.dim,
        "dim_image": model.dim_image,
        "append_eos": model.append_eos,
        "n_words": model.n_words,
        "tokenizer": model.tokenizer,
        "step": step,
        "epoch": epoch,
        "metrics": metrics or {},
        "weights": weights.name,
        "weights_sha256": sha256_file(weights),
        **(extra or {}),
    }
    path = folder / f"{name}.json"
    atomic_write_text(path, json.dumps(meta, indent=1))
    return path


def find(path: str | Path) -> Path:
    """The checkpoint JSON for a run folder (its best), a ``.json``, a ``.safetensors`` or a stem."""
    p = Path(path)
    candidates = []
    if p.is_dir():
        candidates = [p / "best.json", p / "last.json"]
    elif p.suffix == ".json":
        candidates = [p]
    elif p.suffix == ".safetensors":
        candidates = [p.with_suffix(".json")]
    else:
        candidates = [p.with_name(p.name + ".json")]
    for c in candidates:
        if c.is_file():
            return c
    raise CheckpointError(f"{path}: no vsekit checkpoint here (looked for {', '.join(str(c) for c in candidates)})")


def read_meta(path: str | Path) -> tuple[Path, dict[str, Any]]:
    meta_path = find(path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{meta_path}: not a readable JSON checkpoint: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not a vsekit checkpoint (expected format {FORMAT!r})")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"{meta_path}: missing key(s) {', '.join(missing)}")
    return meta_path, meta


def load(path: str | Path, map_location: str = "cpu") -> tuple[JointModel, dict[str, Any], dict[str, torch.Tensor]]:
    """Rebuild the model from a checkpoint; returns (model, meta, tensors not belonging to the model)."""
    from vsekit import spec as spec_mod

    meta_path, meta = read_meta(path)
    weights = meta_path.with_name(meta.get("weights", meta_path.stem + ".safetensors"))
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file missing (named by {meta_path})")
    digest = sha256_file(weights)
    if digest != meta["weights_sha256"]:
        raise CheckpointError(f"{weights}: checksum mismatch (file is corrupt or was changed after {meta_path} was written)")
    try:
        tensors = load_file(weights, device=map_location)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: cannot read safetensors: {exc}") from None
    model_spec = meta["spec"].get("model", {})
    base = meta_path.parent
    try:
        senc = spec_mod.build_component("sentence_encoder", model_spec.get("sentence_encoder", {"type": "gru"}),
                                        "model.sentence_encoder", base)
        ienc = spec_mod.build_component("image_encoder", model_spec.get("image_encoder", {"type": "linear"}),
                                        "model.image_encoder", base)
    except spec_mod._SpecProblems as exc:
        raise SpecError("\n".join(f"{meta_path}: [{p}] {m}" for p, m in exc.problems)) from None
    vocab = Vocab(meta["vocab"])
    model = JointModel.build(senc, ienc, vocab, int(meta["dim"]), int(meta["dim_image"]),
                             append_eos=bool(meta.get("append_eos", False)), n_words=meta.get("n_words"),
                             tokenizer=meta.get("tokenizer", "regex"))
    own = {k: v for k, v in tensors.items() if k.startswith(("sentence_encoder.", "image_encoder."))}
    rest = {k: v for k, v in tensors.items() if k not in own}
    try:
        result = model.load_state_dict(own, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights}: weights do not fit the model described in {meta_path}: "
                              f"{str(exc).splitlines()[-1].strip()}") from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{weights}: weights do not fit the model in {meta_path}: missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}"
        )
    model.eval()
    model.spec = meta["spec"]
    return model, meta, rest
