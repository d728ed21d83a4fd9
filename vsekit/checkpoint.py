"""Checkpoints: safetensors weights + a JSON sidecar (spec, vocabulary, step, metrics). No pickle anywhere.

A checkpoint ``NAME`` in a folder is ``NAME.safetensors`` plus ``NAME.json``.
The JSON records the weights' sha256, which is verified on load.

Saving replaces both files without a moment where they disagree for good
(:func:`vsekit.io.commit_parts`): the new weights are written (atomically) as
``NAME.safetensors.pending``, then the JSON (atomically: the commit point),
then the pending file is renamed over ``NAME.safetensors``. A process killed
between the last two steps leaves a JSON whose checksum matches the pending
file, and loading uses that file (:func:`vsekit.io.committed_part`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from vsekit._version import __version__
from vsekit.data.tokenize import DEFAULT, tokenizer_problem
from vsekit.data.vocab import Vocab
from vsekit.errors import CheckpointError, SpecError
from vsekit.io import check_finite_tensors, commit_parts, committed_part, pending_path, sibling
from vsekit.limits import read_json
from vsekit.model import JointModel
from vsekit.spec.portable import portable_spec

log = logging.getLogger(__name__)

FORMAT = "vsekit-checkpoint/1"
REQUIRED = ("format", "spec", "vocab", "dim", "dim_image", "weights_sha256")


def vocab_digest(words: list[str]) -> str:
    """sha256 of a vocabulary's word list: recorded inside the weights file, checked against the JSON."""
    return hashlib.sha256("\n".join(words).encode("utf-8")).hexdigest()


def save(folder: str | Path, name: str, model: JointModel, spec: dict[str, Any], *, step: int = 0,
         epoch: float = 0.0, metrics: dict[str, Any] | None = None,
         extra_tensors: dict[str, torch.Tensor] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``folder/name.safetensors`` and ``folder/name.json`` (see the module notes); return the JSON path.

    The JSON records the spec with the paths it resolves made relative to ``folder``
    (:func:`vsekit.spec.portable.portable_spec`);
    :func:`load` reads them against the checkpoint's folder, so a checkpoint holds no path of the machine that
    wrote it (older checkpoints with absolute paths load as before)."""
    folder = Path(folder)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    for k, v in (extra_tensors or {}).items():
        tensors[k] = v.detach().contiguous().cpu()
    weights = folder / f"{name}.safetensors"
    header = {"format": FORMAT, "vocab_sha256": vocab_digest(model.vocab.words), "dim": str(model.dim),
              "dim_image": str(model.dim_image)}
    meta = {
        "format": FORMAT,
        "vsekit_version": __version__,
        "spec": portable_spec(spec, folder),  # paths relative to the checkpoint's folder: load() resolves them there
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
        "weights_sha256": None,  # the digest of the weights written, filled in at the commit point
        **(extra or {}),
    }
    path = folder / f"{name}.json"
    commit_parts(path, {weights: lambda tmp: save_file(tensors, tmp, metadata=header)},
                 lambda digests: json.dumps({**meta, "weights_sha256": digests[weights]}, indent=1))
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
    """The checkpoint JSON for ``path`` (found as :func:`find` does) and its checked metadata dict.

    Raises:
        CheckpointError: no checkpoint there, unreadable JSON, not vsekit's format, or a required key
            missing or of the wrong type.
    """
    meta_path = find(path)
    try:
        meta = read_json(meta_path, CheckpointError, what="JSON checkpoint")  # bounded: vsekit.limits
    except OSError as exc:
        raise CheckpointError(f"{meta_path}: not a readable JSON checkpoint: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not a vsekit checkpoint (expected format {FORMAT!r})")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"{meta_path}: missing key(s) {', '.join(missing)}")
    for key, ok, what in _TYPES:
        if key in meta and not ok(meta[key]):
            raise CheckpointError(f"{meta_path}: {key}: expected {what}, got {_short(meta[key])}")
    return meta_path, meta


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_TYPES = (
    ("spec", lambda v: isinstance(v, dict), "a table"),
    ("vocab", lambda v: isinstance(v, list) and all(isinstance(w, str) for w in v), "a list of words"),
    ("dim", lambda v: _is_int(v) and v > 0, "an integer > 0"),
    ("dim_image", lambda v: _is_int(v) and v > 0, "an integer > 0"),
    ("weights_sha256", lambda v: isinstance(v, str), "a hex string"),
    ("n_words", lambda v: v is None or (_is_int(v) and v > 0), "null or an integer > 0"),
    ("append_eos", lambda v: isinstance(v, bool), "true or false"),
    ("tokenizer", lambda v: isinstance(v, str), "a tokenizer name"),
)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def weights_path(meta_path: Path, meta: dict[str, Any]) -> Path:
    """The weights file beside ``meta_path``: ``meta["weights"]``, by default ``<stem>.safetensors``.

    Raises:
        CheckpointError: ``weights`` is not a bare file name (a path could point outside the folder).
    """
    return sibling(meta_path, meta.get("weights", meta_path.stem + ".safetensors"), "weights", CheckpointError)


def read_tensors(path: str | Path, map_location: str = "cpu") -> tuple[Path, dict[str, Any], dict[str, torch.Tensor]]:
    """The checkpoint's JSON and all its tensors, after checking the weights' checksum and header."""
    meta_path, meta = read_meta(path)
    weights = weights_path(meta_path, meta)
    if not weights.is_file() and not pending_path(weights).is_file():
        raise CheckpointError(f"{weights}: weights file missing (named by {meta_path})")
    found = committed_part(weights, meta["weights_sha256"])
    if found is None:
        raise CheckpointError(f"{weights}: checksum mismatch (file is corrupt or was changed after {meta_path} "
                              f"was written)")
    if found != weights:
        log.info("%s: using %s (the save that wrote %s was stopped before renaming it)", meta_path, found.name,
                 meta_path.name)
        weights = found
    try:
        with safe_open(str(weights), framework="pt") as fh:
            header = fh.metadata() or {}
        tensors = load_file(weights, device=map_location)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights}: cannot read safetensors: {exc}") from None
    check_finite_tensors(tensors, str(weights))
    recorded = header.get("vocab_sha256")
    if recorded is not None and (not isinstance(meta["vocab"], list) or recorded != vocab_digest(meta["vocab"])):
        raise CheckpointError(f"{weights}: weights do not fit {meta_path}: they were saved with another vocabulary "
                              f"than the one it lists (weights and JSON from different checkpoints?)")
    for key in ("dim", "dim_image"):
        if key in header and str(meta[key]) != header[key]:
            raise CheckpointError(f"{weights}: weights do not fit {meta_path}: they are {key} {header[key]}, the JSON "
                                  f"says {meta[key]!r} (weights and JSON from different checkpoints?)")
    return meta_path, meta, tensors


def load(path: str | Path, map_location: str = "cpu", *,
         trust_code: bool = False) -> tuple[JointModel, dict[str, Any], dict[str, torch.Tensor]]:
    """Rebuild the model from a checkpoint; returns (model, meta, tensors not belonging to the model).

    ``trust_code``: import the spec's ``imports`` and ``module:Class`` / ``file.py:Class`` component names (user
    code the model needs); without it a checkpoint naming any is refused before anything is imported.

    Raises:
        CheckpointError: see :func:`read_tensors`; weights that do not fit the model.
        SpecError: a component table of the spec is not valid.
        UntrustedCodeError: the checkpoint names code and ``trust_code`` is False.
    """
    from vsekit import spec as spec_mod

    meta_path, meta, tensors = read_tensors(path, map_location)
    weights = weights_path(meta_path, meta)
    model_spec = meta["spec"].get("model", {})
    base = meta_path.parent
    spec_mod.require_trust({"imports": meta["spec"].get("imports", []), "model": model_spec}, str(meta_path),
                           trust_code=trust_code)
    try:
        for module in meta["spec"].get("imports", []):  # user code that registers the model's components
            spec_mod.import_user_module(module, base)
        senc = spec_mod.build_component("sentence_encoder", model_spec.get("sentence_encoder", {"type": "gru"}),
                                        "model.sentence_encoder", base)
        ienc = spec_mod.build_component("image_encoder", model_spec.get("image_encoder", {"type": "linear"}),
                                        "model.image_encoder", base)
    except spec_mod.SpecProblems as exc:
        raise SpecError("\n".join(f"{meta_path}: [{p}] {m}" for p, m in exc.problems)) from None
    vocab = Vocab(meta["vocab"])
    tokenizer = meta.get("tokenizer", DEFAULT)  # every checkpoint so far records it; older ones used regex
    if problem := tokenizer_problem(tokenizer):
        raise CheckpointError(f"{meta_path}: tokenizer: {problem}")
    model = JointModel.build(senc, ienc, vocab, int(meta["dim"]), int(meta["dim_image"]),
                             append_eos=bool(meta.get("append_eos", False)), n_words=meta.get("n_words"),
                             tokenizer=tokenizer)
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
    extractor = meta.get("image_feature_extractor")
    model.set_origin(spec=meta["spec"], spec_base=meta_path.parent,
                     image_feature_extractor=extractor if isinstance(extractor, dict) else None, trust_code=trust_code)
    return model, meta, rest
