"""The Python API behind the CLI: train, load a model, resolve data."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from vsekit import checkpoint, spec as spec_mod
from vsekit.data.readers import DatasetReader, Split
from vsekit.errors import DataError
from vsekit.model import JointModel


def load_spec(spec: str | Path | spec_mod.Spec | dict, overrides: Iterable[str] = ()) -> spec_mod.Spec:
    if isinstance(spec, spec_mod.Spec):
        return spec
    if isinstance(spec, dict):
        return spec_mod.from_dict(spec_mod.apply_overrides(spec, overrides))
    return spec_mod.load(spec, overrides)


def train(spec: str | Path | spec_mod.Spec | dict, out: str | Path | None = None, *, overrides: Iterable[str] = (),
          seeds: int = 1, quiet: bool = False, force: bool = False) -> dict[str, Any]:
    """Train (and evaluate) as a spec says; ``seeds > 1`` runs repeats and returns mean and std."""
    from vsekit import trainer as train_mod

    s = load_spec(spec, overrides)
    if seeds > 1:
        return train_mod.train_seeds(s, seeds, out, quiet=quiet, force=force)
    return train_mod.train(s, out, quiet=quiet, force=force)


def load_model(path: str | Path, device: str = "cpu") -> JointModel:
    """Load a trained model from a run folder or checkpoint (``.json`` / ``.safetensors``),
    or a reference release model (``PATH.npz`` with its ``.pkl`` sidecars)."""
    if str(path).endswith(".npz"):
        from vsekit.legacy import load_legacy

        return load_legacy(path).to(device)
    model, _, _ = checkpoint.load(path, map_location=device)
    return model


def resolve_split(model: JointModel, data: Any, split: str) -> Split:
    """A :class:`Split` from a Split, a reader, a spec path/Spec, or (None) the model's own spec."""
    if isinstance(data, Split):
        return data
    if isinstance(data, DatasetReader):
        return data.read(split)
    if isinstance(data, str) and not data.endswith(".toml"):
        from vsekit.presets import resolve_preset

        reader = resolve_preset(data)
        if reader is not None:
            return reader.read(split)
    if isinstance(data, (str, Path, spec_mod.Spec)):
        return load_spec(data).data.build().read(split)
    if data is None:
        meta_spec = getattr(model, "spec", None)
        if meta_spec is None:
            raise DataError("evalrank: pass data= (a spec file, a reader or a Split); this model records no data")
        return spec_mod.from_dict(meta_spec).data.build().read(split)
    raise DataError(f"evalrank: cannot read data from {data!r}")


def eval_checkpoint(path: str | Path, split: str = "test", data: Any = None, folds: int | None = None,
                    verbose: bool = True) -> tuple[dict[str, Any], Path]:
    """Evaluate a checkpoint on ``split`` of its own spec's data (or ``data``); returns (metrics, checkpoint json)."""
    from vsekit.evaluate import evaluate_split

    meta_path, meta = checkpoint.read_meta(path)
    model, _, _ = checkpoint.load(meta_path)
    if data is None:
        try:
            s = spec_mod.from_dict(meta["spec"], source=str(meta_path), base=meta_path.parent)
        except spec_mod.SpecError:
            raise
        split_data = s.data.build().read(split)
        if folds is None:
            folds = s.eval.folds if split == s.eval.split else None
    else:
        split_data = resolve_split(model, data, split)
    return evaluate_split(model, split_data, folds=folds, verbose=verbose), meta_path
