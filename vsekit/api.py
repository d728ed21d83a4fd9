"""The Python API behind the CLI: train, load a model, resolve data, evaluate."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from vsekit import checkpoint
from vsekit import spec as spec_mod
from vsekit.data.readers import DatasetReader, Split
from vsekit.data.tokenize import tokenizer_problem
from vsekit.errors import CheckpointError, DataError
from vsekit.model import JointModel


def load_spec(spec: str | Path | spec_mod.Spec | dict, overrides: Iterable[str] = ()) -> spec_mod.Spec:
    """A :class:`~vsekit.spec.Spec` from a spec file path, a plain dict or a Spec.

    A path is read as :func:`vsekit.spec.load` does and a dict structured with
    :func:`vsekit.spec.from_dict`, both after the ``overrides`` (``--set`` items);
    a Spec is returned as it is (``overrides`` are not applied to it).

    Raises:
        SpecError: the file is missing or not TOML, an override is malformed, or the spec has problems.
    """
    if isinstance(spec, spec_mod.Spec):
        return spec
    if isinstance(spec, dict):
        return spec_mod.from_dict(spec_mod.apply_overrides(spec, overrides), trust_code=True)  # the caller's own
    return spec_mod.load(spec, overrides)


def train(spec: str | Path | spec_mod.Spec | dict, out: str | Path | None = None, *, overrides: Iterable[str] = (),
          seeds: int = 1, quiet: bool = False, force: bool = False, resume: bool = False) -> dict[str, Any]:
    """Train (and evaluate) as a spec says; ``seeds > 1`` runs repeats and returns mean and std.

    ``resume=True`` continues the run in ``out`` from its latest saved state (the spec must be unchanged).
    """
    from vsekit import training

    s = load_spec(spec, overrides)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise spec_mod.SpecError(f"seeds: expected an integer >= 1, got {seeds!r}")
    if seeds > 1:
        from vsekit.limits import seed_problem

        if seed_problem(last := s.train.seed + seeds - 1):
            raise spec_mod.SpecError(f"{s.source or '<spec>'}: [train] seed: with {seeds} seeds the last is {last}; "
                                     f"{seed_problem(last)}")
        return training.fit_seeds(s, seeds, out, quiet=quiet, force=force, resume=resume)
    return training.fit(s, out, quiet=quiet, force=force, resume=resume)


def load_model(path: str | Path, device: str = "cpu", *, trust_code: bool = False) -> JointModel:
    """Load a trained model from a run folder or checkpoint (``.json`` / ``.safetensors``), an installed model's
    name (``"f8k"``, :mod:`vsekit.retrieval.models`; ``vsekit models`` lists them), or a reference release model
    (``PATH.npz`` with its ``.pkl`` sidecars).

    The model encodes with ``model.encode_sentences(list_of_str)``, ``model.encode_images(files, PIL images or
    feature rows)`` (both (N, dim) float32 unit rows) and compares with ``model.similarity(a, b)``.

    ``trust_code=True`` lets a checkpoint import the code it names (its spec's ``imports``, ``module:Class`` and
    ``file.py:Class`` components); without it such a checkpoint raises :class:`~vsekit.errors.UntrustedCodeError`
    and nothing is imported.

    Raises :class:`~vsekit.errors.CheckpointError` (nothing of that name, or an unreadable checkpoint).
    """
    if str(path).endswith(".npz"):
        from vsekit.legacy import load_legacy

        return load_legacy(path).to(device)
    model, _, _ = checkpoint.load(checkpoint_json(path), map_location=device, trust_code=trust_code)
    return model


def checkpoint_json(path: str | Path) -> Path:
    """The checkpoint ``.json`` of a run folder, checkpoint path or installed model's name.

    Raises:
        CheckpointError: none of these (naming the installed models when there are any).
    """
    from vsekit.retrieval.models import installed_models, locate_model

    models = installed_models()
    where = locate_model(path, models)
    if where is not None:
        return where.path
    try:
        return checkpoint.find(path)
    except CheckpointError as exc:
        known = f"; installed models: {', '.join(models)} (`vsekit models`)" if models else ""
        raise CheckpointError(f"{exc}{known}") from None


def resolve_split(model: JointModel, data: Any, split: str, *, trust_code: bool = False) -> Split:
    """A :class:`Split` from a Split, a reader, a spec path/Spec, or (None) the model's own spec (read with
    ``trust_code``, as :func:`load_model`)."""
    if isinstance(data, Split):
        return data
    if isinstance(data, DatasetReader):
        return data.read(split)
    if isinstance(data, str) and not data.endswith(".toml"):
        from vsekit.data.presets import resolve_preset

        reader = resolve_preset(data)
        if reader is not None:
            return reader.read(split)
    if isinstance(data, (str, Path)) and Path(data).is_dir():
        return precomp_reader(data).read(split)
    if isinstance(data, spec_mod.Spec):
        return data.data.build().read(split)
    if isinstance(data, (str, Path)):  # a spec file: only its [data] (and [eval]) are needed
        return spec_mod.load_data_spec(data).data.build().read(split)
    if data is None:
        meta_spec = getattr(model, "spec", None)
        if meta_spec is None:
            raise DataError("evalrank: pass data= (a spec file, a reader or a Split); this model records no data")
        return spec_mod.from_dict(meta_spec, base=getattr(model, "spec_base", None),
                                  trust_code=trust_code).data.build().read(split)
    raise DataError(f"evalrank: cannot read data from {data!r}")


def precomp_reader(folder: str | Path) -> DatasetReader:
    """The ``precomp`` reader of a folder (``[NAME_]SPLIT_caps.txt`` + ``[NAME_]SPLIT_ims.npy``), for ``--data
    DIR``."""
    from vsekit.data.readers import PrecompReader

    return PrecompReader(PrecompReader.Config(dir=str(Path(folder).resolve())))


#: what ``--data`` takes, for the message when a model's own data is not here
DATA_HELP = ("--data DIR_OR_SPEC: a precomp folder (train/dev/test_caps.txt, a caption a line, 5 per image, with "
             "train/dev/test_ims.npy, one feature row per image) or a spec file whose [data] reads the data")


def own_data_problem(meta_path: Path, recorded: dict[str, Any], reader: DatasetReader) -> str | None:
    """One line saying that the data a checkpoint records (``recorded``: its spec's ``[data]`` table as written,
    paths relative to the checkpoint's folder) is not on this machine and what ``--data`` takes, or None when its
    ``reader`` finds its files (:meth:`~vsekit.data.readers.DatasetReader.check`)."""
    problems = reader.check()
    if not problems:
        return None
    where = next((v for k, v in recorded.items() if k in ("dir", "path", "json") and isinstance(v, str)), None)
    return (f"{meta_path}: the data this model records ([data] type {recorded.get('type')!r}"
            f"{f', {where} from its folder' if where else ''}) is not here ({problems[0]}): pass {DATA_HELP}")


def data_source(model: JointModel, data: Any) -> Any:
    """What :func:`resolve_split` reads ``data`` from, for :func:`vsekit.evaluate.is_coco_data`: the ``[data]``
    component of a spec (path or Spec), the model's own ``[data]`` table (``data=None``), else ``data`` itself."""
    if isinstance(data, spec_mod.Spec):
        return data.data
    if isinstance(data, (str, Path)) and str(data).endswith(".toml"):
        return spec_mod.load_data_spec(data).data
    if data is None:
        return (getattr(model, "spec", None) or {}).get("data")
    return data


def evalrank(model: JointModel | str, data: Any = None, split: str = "test", folds: int | None = None, *,
             verbose: bool = True, print_table: bool = True, ties: str = "pessimistic",
             strict_protocol: bool = False, coco_1k_and_5k: bool | None = None,
             trust_code: bool = False) -> dict[str, Any]:
    """Evaluate ``model`` (or a checkpoint path) on ``split`` of ``data`` and print the reference's lines.

    ``data`` is a :class:`Split`, a dataset reader, a preset name or a spec file path (its
    ``[data]`` section is used); by default the data of the model's own spec. ``strict_protocol`` and
    ``coco_1k_and_5k`` are :func:`~vsekit.evaluate.evaluate_split`'s (COCO 1K and 5K are reported for a
    5,000-image split of COCO data unless ``coco_1k_and_5k=False``). ``trust_code``: as :func:`load_model`.
    Returns what :func:`~vsekit.evaluate.evaluate_split` returns (R@K in %, 1-based ranks, protocol, warnings).
    Raises :class:`~vsekit.errors.VsekitError` subclasses for an unreadable model or data, or a bad protocol.
    """
    from vsekit.evaluate import evaluate_split, reference_lines

    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = load_model(model, trust_code=trust_code)
    split_data = resolve_split(model, data, split, trust_code=trust_code)
    metrics = evaluate_split(model, split_data, folds=folds, verbose=verbose, ties=ties,
                             strict_protocol=strict_protocol, coco_1k_and_5k=coco_1k_and_5k,
                             data=data_source(model, data))
    if print_table:
        print(reference_lines(metrics))
    return metrics


def eval_checkpoint(path: str | Path | Sequence[str | Path], split: str = "test", data: Any = None,
                    folds: int | None = None, *, verbose: bool = True, ties: str = "pessimistic",
                    log_warnings: bool = True, strict_protocol: bool = False,
                    trust_code: bool = False) -> tuple[dict[str, Any], Path]:
    """Evaluate a checkpoint on ``split`` of its own spec's data (or ``data``); returns (metrics, checkpoint json).

    A list of paths evaluates their ensemble (the mean of the models' similarity matrices,
    :func:`~vsekit.evaluate.ensemble_embeddings`) on the first one's data (or ``data``); the metrics then hold
    ``"ensemble"``, the members' checkpoint files, and a warning when a member was trained on other data.

    The metrics are :func:`~vsekit.evaluate.evaluate_split`'s, plus ``"data"``: which data was read (``"own"``
    or the spec file given, its ``[data]`` table and the split's source). ``strict_protocol`` (or the spec's
    ``[eval] strict_protocol``: the own spec's, or the ``data`` spec file's) refuses a split with an image of
    fewer than 5 captions; that spec's ``[eval] coco_1k_and_5k`` applies (unset: the rule of
    :func:`~vsekit.evaluate.wants_coco_rows`). ``trust_code``: as :func:`load_model`.
    Raises :class:`VsekitError` subclasses for a missing checkpoint, unknown split, unreadable data or a bad
    protocol setting.
    """
    from vsekit.evaluate import evaluate_split

    paths = [path] if isinstance(path, (str, bytes)) or hasattr(path, "__fspath__") else list(path)
    members = [checkpoint.read_meta(checkpoint_json(p)) for p in paths]  # all found before any is loaded
    meta_path, meta = members[0]
    models = [checkpoint.load(mp, trust_code=trust_code)[0] for mp, _ in members]
    model = models[0] if len(models) == 1 else models
    if data is None:
        s = spec_mod.from_dict(meta["spec"], source=str(meta_path), base=meta_path.parent, trust_code=trust_code)
        reader = s.data.build()
        if split not in reader.splits:
            raise DataError(f"unknown split {split!r} for the data of {meta_path} — known: {', '.join(reader.splits)}")
        try:
            split_data = reader.read(split)
        except (DataError, OSError):
            if problem := own_data_problem(meta_path, meta["spec"].get("data") or {}, reader):
                raise DataError(problem) from None  # its files are not here: say what --data takes
            raise
        if folds is None:
            folds = s.eval.folds if split == s.eval.split else None
        strict_protocol, coco = strict_protocol or s.eval.strict_protocol, s.eval.coco_1k_and_5k
        record: dict[str, Any] = {"spec": "own", "data": s.data.to_dict()}
    else:
        split_data = resolve_split(models[0], data, split, trust_code=trust_code)
        record, coco = {"spec": str(data)}, None
        if isinstance(data, (str, Path)) and Path(data).is_dir():
            record["data"] = {"type": "precomp", "dir": str(data)}
        elif isinstance(data, (str, Path)) and str(data).endswith(".toml"):
            given = spec_mod.load_data_spec(data)
            record["data"] = given.data.to_dict()
            strict_protocol, coco = strict_protocol or given.eval.strict_protocol, given.eval.coco_1k_and_5k
    record["source"] = split_data.source
    metrics = evaluate_split(model, split_data, folds=folds, verbose=verbose, ties=ties, log_warnings=log_warnings,
                             strict_protocol=strict_protocol, coco_1k_and_5k=coco,
                             data=record.get("data", data_source(models[0], data)))
    if len(members) > 1:
        metrics["ensemble"] = [str(mp) for mp, _ in members]
        metrics["warnings"] = metrics["warnings"] + ensemble_warnings(members)
    return {**metrics, "data": record}, meta_path


def ensemble_warnings(members: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    """A warning for each ensemble member whose spec's ``[data]`` differs from the first member's (a member
    trained on other data may have seen the evaluation split), and for a member given twice."""
    found, seen = [], set()
    first_path, first = members[0]
    for mp, meta in members:
        if mp.resolve() in seen:
            found.append(f"ensemble: {mp} is given twice; it counts twice in the mean")
        seen.add(mp.resolve())
        if mp is not first_path and (meta.get("spec") or {}).get("data") != (first.get("spec") or {}).get("data"):
            found.append(f"ensemble: {mp} was trained on other data than {first_path} ([data] differs)")
    return found


def is_eval_result(path: Path) -> bool:
    """Whether the file ``path`` is what ``vsekit eval`` writes (a JSON object naming its ``checkpoint`` and
    ``split``, with ``rsum``)."""
    from vsekit.limits import read_json

    record = read_json(path)
    return isinstance(record, dict) and {"checkpoint", "split", "rsum"} <= set(record)


def eval_result_name(split: str, metrics: dict[str, Any]) -> str:
    """The default file name of an ``eval`` result, unique per data and protocol, so that evaluating on other
    data (or with other folds or ties) never overwrites an earlier result: ``eval_SPLIT[_DATA-HASH][_foldsF]
    [_ensembleN-HASH][_ties-RULE].json``, where DATA is the data spec's file stem and HASH the first 8 hex digits
    of the sha256 of its ``[data]`` table (for an ensemble of N models: of its members' checkpoint files)."""
    import hashlib
    import json
    import re

    parts = [f"eval_{split}"]
    record = metrics.get("data") or {}
    if record.get("spec", "own") != "own":
        digest = hashlib.sha256(json.dumps(record.get("data", record["spec"]), sort_keys=True).encode()).hexdigest()
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(record["spec"]).stem)[:40] or "data"
        parts.append(f"{stem}-{digest[:8]}")
    if members := metrics.get("ensemble"):  # the members, in any order, name the file
        digest = hashlib.sha256(json.dumps(sorted(members)).encode()).hexdigest()
        parts.append(f"ensemble{len(members)}-{digest[:8]}")
    protocol = metrics.get("protocol") or {}
    if protocol.get("folds", 1) != 1:
        parts.append(f"folds{protocol['folds']}")
    if protocol.get("ties", "pessimistic") != "pessimistic":
        parts.append(f"ties-{protocol['ties']}")
    return "_".join(parts) + ".json"


def check_spec(s: spec_mod.Spec) -> list[str]:
    """Problems ``vsekit validate`` reports beyond the spec's own keys and types: files and folders the spec
    names (a precomp folder's ``.npy`` headers against their file sizes too), split names, the output folder, the
    device, options of different components that disagree, and a model too large for this machine's memory
    (:func:`_size_problems`): what ``run`` would refuse before training, found without reading the data.

    Returns:
        One line per problem, ``[section] key: message``; [] when there is none.
    """
    from vsekit.training.setup import resolve_device

    problems = [f"name: {p}"] if (p := spec_mod.run_name_problem(s.name)) else []
    reader = s.data.build()
    problems += [f"[data] {p}" for p in reader.check()]
    if problem := tokenizer_problem(s.model.tokenizer):
        problems.append(f"[model] tokenizer: {problem}")
    for where, name in (("[train] valid_split", s.train.valid_split), ("[eval] split", s.eval.split)):
        if name not in reader.splits:
            problems.append(f"{where}: unknown split {name!r} — known: {', '.join(reader.splits)}")
    if s.output.dir is not None and Path(s.output.dir).exists() and not Path(s.output.dir).is_dir():
        problems.append(f"[output] dir: {s.output.dir} exists and is not a folder")
    try:
        resolve_device(s)
    except spec_mod.SpecError as exc:
        problems.append(str(exc).split(": ", 1)[-1])
    loss = s.loss.config
    temperature, max_scale = getattr(loss, "temperature", None), getattr(loss, "max_scale", None)
    if isinstance(temperature, float) and isinstance(max_scale, float) and 1.0 / temperature > max_scale:
        problems.append(f"[loss] temperature: 1/temperature = {1.0 / temperature:g} is above "
                        f"max_scale = {max_scale:g}, so the scale starts clamped and cannot learn")
    warmup = getattr(loss, "warmup_epochs", None)
    if isinstance(warmup, float) and warmup >= s.train.max_epochs:
        problems.append(f"[loss] warmup_epochs: {warmup:g} >= [train] max_epochs = {s.train.max_epochs}: "
                        f"the {s.loss.type} loss would never leave its warm-up")
    problems += _size_problems(s) + _image_input_problems(s, reader)
    t = s.train
    if t.lr_schedule == "step" and t.lr_step_epochs >= t.max_epochs:
        problems.append(f"[train] lr_step_epochs: {t.lr_step_epochs} >= max_epochs = {t.max_epochs}: "
                        f"the 'step' schedule would never lower the rate")
    return problems


def _size_problems(s: spec_mod.Spec) -> list[str]:
    """The model-memory check of :meth:`JointModel.build` (:func:`vsekit.limits.check_parameter_count`) on what
    the spec alone tells: a vocabulary of ``[vocab] max_size`` words (else 2) and 1-d image features, so the
    count is a lower bound and a spec refused here is refused by ``run`` too."""
    from vsekit.limits import check_parameter_count
    from vsekit.model import parameter_count

    n_params = parameter_count(s.model.sentence_encoder, s.model.image_encoder, s.vocab.max_size or 2,
                               s.model.dim, 1)
    try:
        check_parameter_count(n_params or 0, at_least=True)
    except spec_mod.SpecError as exc:
        return [f"[model] dim: {exc}"]
    return []


def _image_input_problems(s: spec_mod.Spec, reader: DatasetReader) -> list[str]:
    """What the image encoder says of the train features, when the reader names their file (``precomp``): built
    on torch's meta device at their width (nothing allocated, no weights read), then asked about the extractor
    their ``_extractor.json`` records (:meth:`~vsekit.image.base.ImageEncoder.check_extractor`), as ``run`` does."""
    import torch

    from vsekit.errors import VsekitError
    from vsekit.extract import recorded_extractor
    from vsekit.feature_arrays import npy_header
    from vsekit.training.setup import extractor_problems

    paths = getattr(reader, "paths", None)
    try:
        ims = paths("train")[1] if callable(paths) else None
        if ims is None or not ims.is_file():
            return []
        shape, _ = npy_header(ims)
        extractor = recorded_extractor([ims])
    except (VsekitError, OSError, ValueError):  # reader.check() reports the file
        return []
    where = f"[model.image_encoder] {s.model.image_encoder.type}: "
    try:
        with torch.device("meta"):
            encoder = s.model.image_encoder.build(shape[-1], s.model.dim)
    except VsekitError as exc:  # the encoder refuses these features
        return [str(exc) if str(exc).startswith("[model.image_encoder]") else where + str(exc)]
    return extractor_problems(s, encoder, extractor)
