"""Image files -> a feature file, resumable: ``vsekit extract`` and the ``flickr8k`` reader's cache.

A feature file is a pair (plus a small record of what made it)::

    features.npy            float32 or float16, one row per image
    features_ids.txt        the image file names, one per line, row order
    features_extractor.json the extractor's type and options

The ids file is the ``.npy`` path with ``.npy`` replaced by ``_ids.txt``,
except that a trailing ``_ims`` is dropped first, so ``test_ims.npy`` pairs
with ``test_ids.txt``: the layout of the ``precomp`` reader and of the
``precomputed`` extractor, which read such folders as they are.

Every write is atomic (:func:`vsekit.io.atomic_write`), and new rows are
saved every ``chunk`` images. A rerun skips the images already in the file
and appends the others, so an interrupted extraction resumes where it
stopped. Images that cannot be read are reported by name and never stop
the batch (they are not written, so a rerun tries them again).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import attrs
import numpy as np

from vsekit.data import files
from vsekit.errors import DataError, SpecError
from vsekit.image.base import Extracted, ImageFeatureExtractor
from vsekit.io import atomic_write, atomic_write_text, read_lines

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = files.IMAGE_SUFFIXES  # one suffix set: vsekit.data.files
#: Extractor options that do not change the numbers: a file extracted with other values of these is reused.
RUNTIME_OPTIONS = frozenset({"batch_size", "workers", "threads", "device", "progress"})
DTYPES = ("float32", "float16")


def _base(out: Path) -> str:
    stem = out.name[: -len(".npy")] if out.name.endswith(".npy") else out.name
    return stem[: -len("_ims")] if stem.endswith("_ims") and len(stem) > len("_ims") else stem


def ids_path(out: str | Path) -> Path:
    """The ids file beside a feature file: ``X.npy`` -> ``X_ids.txt``, ``X_ims.npy`` -> ``X_ids.txt``."""
    out = Path(out)
    return out.with_name(_base(out) + "_ids.txt")


def meta_path(out: str | Path) -> Path:
    """The record of the extractor beside a feature file: ``X_extractor.json``."""
    out = Path(out)
    return out.with_name(_base(out) + "_extractor.json")


# --------------------------------------------------------------------------
# inputs


def list_images(inputs: Iterable[str | Path]) -> list[Path]:
    """The images to extract (:func:`vsekit.data.files.list_images`), refusing two with the same file name.

    Raises:
        DataError: as :func:`vsekit.data.files.list_images`, and for two images with the same file name
            (ids are file names).
    """
    paths = files.list_images(inputs)
    seen: dict[str, Path] = {}
    for p in paths:
        if p.name in seen and seen[p.name] != p:
            raise DataError(f"two images named {p.name!r} ({seen[p.name]} and {p}): ids are file names, "
                            "extract them into separate files")
        seen[p.name] = p
    return list(dict.fromkeys(paths))


def resolve_extractor(name_or_file: str | Path, options: Sequence[str] = ()) -> Any:
    """A :class:`vsekit.spec.Component` from a registered name, a component TOML file or a spec.

    The TOML file holds either one component table (``type = "..."`` and its
    options at the top level) or a whole spec whose ``[data.features]`` names
    the extractor. ``options`` are ``KEY=VALUE`` overrides of its options
    (values are TOML literals, e.g. ``ten_crop=true``).
    """
    from vsekit import spec as spec_mod

    arg = str(name_or_file)
    path = Path(arg)
    if arg.endswith(".toml") or path.is_file():
        raw = spec_mod.read_toml(path)
        base, where = path.resolve().parent, str(path)
        data = raw.get("data")
        if "type" in raw:
            table, section = dict(raw), "extractor"
        elif isinstance(data, dict) and isinstance(data.get("features"), dict):
            table, section = dict(data["features"]), "data.features"
        else:
            raise SpecError(f"{path}: no image feature extractor: expected 'type = ...' at the top level "
                            "or a [data.features] table")
    else:
        table, section, base, where = {"type": arg}, "extractor", Path.cwd(), arg
    for item in options:
        keys, value = spec_mod.parse_override(item)
        if len(keys) != 1:
            raise SpecError(f"--set {item!r}: expected an option of the extractor, e.g. ten_crop=true")
        table[keys[0]] = value
    try:
        return spec_mod.build_component("image_feature_extractor", table, section, base)
    except spec_mod.SpecProblems as exc:
        raise SpecError("\n".join(f"{where}: [{p}] {m}" for p, m in exc.problems)) from None


def describe(extractor: ImageFeatureExtractor) -> dict[str, Any]:
    """``{"type": ..., options...}`` for an extractor instance (its class path and attrs config)."""
    from vsekit.spec import converter

    cls = type(extractor)
    config = getattr(extractor, "config", None)
    options = converter.unstructure(config) if attrs.has(type(config)) else {}
    return {"type": f"{cls.__module__}:{cls.__qualname__}", **options}


# --------------------------------------------------------------------------
# the feature file


@attrs.define
class FeatureFile:
    """A feature file in memory: rows, ids (file names) and the extractor record."""

    out: Path
    features: np.ndarray
    ids: list[str]
    meta: dict[str, Any] = attrs.Factory(dict)

    @property
    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.ids)}

    @classmethod
    def read(cls, out: str | Path) -> "FeatureFile | None":
        """The file at ``out``, or None when there is none yet.

        Rows past the end of the ids file (an extraction stopped between the
        two writes) are dropped with a warning: they are extracted again.
        """
        out = Path(out)
        ids_file, meta_file = ids_path(out), meta_path(out)
        if not out.exists():
            return None
        try:
            feats = np.load(out, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{out}: not a readable .npy array ({exc}); delete it or use --force") from None
        if feats.ndim != 2 or feats.dtype.name not in DTYPES:
            raise DataError(f"{out}: expected a 2-D float32/float16 array, got {feats.dtype} {feats.shape}")
        ids = read_lines(ids_file, "image id", allow_empty_file=True) if ids_file.exists() else []
        if len(ids) > len(feats):
            raise DataError(f"{ids_file} has {len(ids)} ids but {out} has {len(feats)} rows")
        if len(ids) < len(feats):
            log.warning("%s: %d row(s) without an id in %s (interrupted?) dropped", out, len(feats) - len(ids),
                        ids_file.name)
            feats = feats[: len(ids)]
        if len(set(ids)) != len(ids):
            raise DataError(f"{ids_file}: an image id appears twice")
        meta: dict[str, Any] = {}
        if meta_file.exists():
            try:
                meta = json.loads(meta_file.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise DataError(f"{meta_file}: not valid JSON ({exc})") from None
        return cls(out, feats, ids, meta)

    def write(self) -> None:
        """Record, rows, then ids; each atomically (rows without ids are dropped on read)."""

        def save(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, self.features, allow_pickle=False)

        atomic_write_text(meta_path(self.out), json.dumps(self.meta, indent=1) + "\n")
        atomic_write(self.out, save)
        atomic_write_text(ids_path(self.out), "".join(f"{i}\n" for i in self.ids))


def _same_extractor(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same class (by registered name or ``module:Class``) and the same options, runtime options aside."""
    from vsekit import registry

    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in RUNTIME_OPTIONS and k != "type"}

    def cls(d: dict[str, Any]) -> Any:
        try:
            return registry.get("image_feature_extractor", str(d.get("type")))
        except Exception:  # no longer importable: compare the names
            return d.get("type")

    return strip(a) == strip(b) and (a.get("type") == b.get("type") or cls(a) == cls(b))


def recorded_extractor(files: Iterable[str | Path]) -> dict[str, Any] | None:
    """The extractor that made these feature files, from the ``X_extractor.json`` records beside them.

    Args:
        files: data files (e.g. a split's ``files``); each ``.npy`` is looked up
            with :func:`meta_path`, other files are ignored.

    Returns:
        The record's extractor table ``{"type": NAME, option: value, ...}``
        without the options that do not change the numbers
        (:data:`RUNTIME_OPTIONS`), or None when no file has a record.

    Raises:
        DataError: a record is unreadable, or two records name different
            extractors (features made by different extractors do not mix).
    """
    found: tuple[Path, dict[str, Any]] | None = None
    for f in dict.fromkeys(Path(f) for f in files):
        record = meta_path(f)
        if f.suffix != ".npy" or not record.is_file():
            continue
        try:
            table = json.loads(record.read_text(encoding="utf-8")).get("extractor")
        except (ValueError, UnicodeDecodeError, AttributeError) as exc:
            raise DataError(f"{record}: not a readable extractor record ({exc})") from None
        if not isinstance(table, dict) or not isinstance(table.get("type"), str):
            raise DataError(f"{record}: expected {{\"extractor\": {{\"type\": NAME, ...}}}}, got {table!r}")
        table = {k: v for k, v in table.items() if k not in RUNTIME_OPTIONS}
        if found is None:
            found = (record, table)
        elif not _same_extractor(found[1], table):
            raise DataError(f"{record} names another image feature extractor ({json.dumps(table)}) than "
                            f"{found[0]} ({json.dumps(found[1])}): features of different extractors do not mix")
    return found[1] if found else None


@attrs.define
class ExtractReport:
    """What :func:`extract_folder` did."""

    out: Path
    ids_file: Path
    rows: int
    added: int
    skipped: int
    errors: dict[str, str]
    seconds: float
    dim: int | None

    @property
    def images_per_s(self) -> float | None:
        return self.added / self.seconds if self.added and self.seconds > 0 else None


def update(extractor: ImageFeatureExtractor, paths: Sequence[str | Path], out: str | Path, *,
           spec: dict[str, Any] | None = None, dtype: str | None = None, force: bool = False,
           progress: bool = True, chunk: int = 256) -> tuple[FeatureFile, ExtractReport]:
    """Add the features of ``paths`` missing from the file ``out`` (created if needed); return it and a report.

    ``spec``: the extractor's type and options as written in the record
    (default: :func:`describe`); a file made with other options that change
    the numbers is refused. ``dtype``: ``float32`` or ``float16`` (default:
    the existing file's, else float32). ``force``: start a new file.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    paths = [Path(p) for p in paths]
    if dtype is not None and dtype not in DTYPES:
        raise DataError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    spec = spec if spec is not None else describe(extractor)
    current = None if force else FeatureFile.read(out)
    if current is not None:
        old = current.meta.get("extractor")
        if old is not None and not _same_extractor(old, spec):
            raise DataError(f"{out} was made by another extractor ({json.dumps(old)}), not {json.dumps(spec)}: "
                            "choose another output, or start over (vsekit extract --force)")
        if dtype is not None and current.features.dtype.name != dtype and len(current.ids):
            raise DataError(f"{out} holds {current.features.dtype} rows, not {dtype}: choose another output, "
                            "or start over (--force)")
    if current is None:
        dim = extractor.dim or 0
        current = FeatureFile(out, np.zeros((0, dim), dtype or "float32"), [])
    current.meta = {"extractor": spec, "dim": current.features.shape[1] or extractor.dim}

    have = current.index
    skipped = sum(p.name in have for p in paths)
    todo: list[Path] = []
    for p in paths:  # each id once, first occurrence
        if p.name not in have:
            have[p.name] = -1
            todo.append(p)
    errors: dict[str, str] = {}
    added = 0
    start = time.perf_counter()
    inner = getattr(extractor, "progress", None)
    bar = tqdm(total=len(todo), unit="img", desc=f"extract {out.name}", disable=not progress or not todo,
               dynamic_ncols=True)
    try:
        if inner is not None:
            extractor.progress = False  # one bar, this one
        for lo in range(0, len(todo), chunk):
            part = todo[lo: lo + chunk]
            got = extractor.extract(part)
            errors.update(got.errors)
            rows = np.asarray(got.features)
            good = [p.name for p, ok in zip(part, got.ok) if ok]
            if good:
                if current.ids and rows.shape[1] != current.features.shape[1]:
                    raise DataError(f"{out}: holds {current.features.shape[1]}-d rows, the extractor gives "
                                    f"{rows.shape[1]}-d ones")
                base = current.features if current.ids else current.features.reshape(0, rows.shape[1])
                current.features = np.concatenate([base, rows.astype(base.dtype)])
                current.ids += good
                current.meta["dim"] = int(rows.shape[1])
                current.write()
                added += len(good)
            bar.update(len(part))
            if errors:
                bar.set_postfix(unreadable=len(errors))
    finally:
        bar.close()
        if inner is not None:
            extractor.progress = inner
    if not added and not current.ids and force:
        current.write()  # --force on nothing readable still leaves an empty, consistent file
    seconds = time.perf_counter() - start
    report = ExtractReport(out, ids_path(out), len(current.ids), added, skipped, errors, seconds,
                           int(current.features.shape[1]) or extractor.dim)
    return current, report


def extract_cached(extractor: ImageFeatureExtractor, paths: Sequence[str | Path], out: str | Path, *,
                   spec: dict[str, Any] | None = None, progress: bool | None = None) -> Extracted:
    """Features of ``paths`` through the feature file ``out``: extract only images not in it yet.

    Returns an :class:`Extracted` for ``paths`` in order, as
    ``extractor.extract(paths)`` would (images unreadable now are not ``ok``).
    ``progress``: default, the extractor's own ``progress`` setting (if any).
    """
    if progress is None:
        progress = bool(getattr(extractor, "progress", True))
    current, report = update(extractor, paths, out, spec=spec, progress=progress)
    index = current.index
    names = [Path(p).name for p in paths]
    ok = np.array([n in index for n in names], dtype=bool)
    rows = [index[n] for n in names if n in index]
    dim = current.features.shape[1]
    feats = current.features[rows].astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    errors = {n: report.errors.get(n, "not in the feature file") for n, good in zip(names, ok) if not good}
    return Extracted(feats, ok, errors, [Path(out), ids_path(out)])


def extract_folder(extractor: Any, inputs: Iterable[str | Path], out: str | Path = "features.npy", *,
                   dtype: str | None = None, force: bool = False, progress: bool = True,
                   chunk: int = 256) -> ExtractReport:
    """Extract the features of image folders and files into ``out`` (see the module docstring).

    ``extractor``: a registered name (``"efficientnet_lite0"``), a
    :class:`vsekit.spec.Component`, or an :class:`ImageFeatureExtractor`.
    Resumable: images already in ``out`` are skipped, new ones appended.
    """
    from vsekit.spec import Component

    paths = list_images(inputs)
    if isinstance(extractor, (str, Path)):
        extractor = resolve_extractor(extractor)
    spec = None
    if isinstance(extractor, Component):
        spec = extractor.to_dict()
        extractor = extractor.build()
    if not isinstance(extractor, ImageFeatureExtractor):
        raise SpecError(f"{extractor!r} is not an image feature extractor")
    _, report = update(extractor, paths, out, spec=spec, dtype=dtype, force=force, progress=progress, chunk=chunk)
    return report
