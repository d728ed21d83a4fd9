"""The run spec: attrs classes, TOML loading and ``--set`` overrides.

A spec is a TOML file. Component tables name their ``type``; the remaining
keys of the table are structured into that component's own frozen attrs
``Config`` with extra keys forbidden::

    [loss]
    type = "contrastive"
    margin = 0.2

The component class is resolved from the registry first, then its config is
structured: there is no global union over every class. Every problem becomes
one :class:`~vsekit.errors.SpecError` line: file, TOML path, what was
expected, what was found.

The package: :mod:`vsekit.spec.convert` (the cattrs converter and the
problems it finds), :mod:`vsekit.spec.component` (component tables and the
spec's ``imports``), :mod:`vsekit.spec.sections` (the plain sections),
:mod:`vsekit.spec.files` (TOML files and overrides); this module puts them
together into a :class:`Spec`.
"""

from __future__ import annotations

import difflib
import unicodedata
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path, PureWindowsPath
from typing import Any

import attrs

from vsekit import config
from vsekit.errors import SpecError
from vsekit.spec.component import Component, build_component, code_names, import_user_module, require_trust
from vsekit.spec.convert import SpecProblems, converter, make_converter, structure
from vsekit.spec.files import apply_overrides, dumps_toml, parse_override, read_toml, text_problem
from vsekit.spec.sections import EvalSpec, ModelSpec, OutputSpec, TrainSpec, VocabSpec

__all__ = [
    "Component", "EvalSpec", "ModelSpec", "OutputSpec", "Spec", "SpecProblems", "TrainSpec", "VocabSpec",
    "apply_overrides", "build_component", "code_names", "converter", "dumps_toml", "from_dict", "import_user_module",
    "load", "make_converter", "parse_override", "read_toml", "require_trust", "run_name_problem", "structure",
    "text_problem",
]


@attrs.frozen
class Spec:
    """A whole run: data, model, loss, training, evaluation and output."""

    data: Component
    model: ModelSpec
    loss: Component
    train: TrainSpec = attrs.Factory(TrainSpec)
    eval: EvalSpec = attrs.Factory(EvalSpec)
    output: OutputSpec = attrs.Factory(OutputSpec)
    vocab: VocabSpec = attrs.Factory(VocabSpec)
    name: str = "run"
    imports: tuple[str, ...] = ()
    source: str | None = None  # the file it came from, for messages

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain TOML-able data (round-trips through :func:`from_dict`)."""
        out: dict[str, Any] = {"name": self.name}
        if self.imports:
            out["imports"] = list(self.imports)
        out["data"] = self.data.to_dict()
        model: dict[str, Any] = {"dim": self.model.dim}
        if self.model.append_eos:
            model["append_eos"] = True
        if self.model.tokenizer != "regex":  # the default is left out: run folders written before it stay equal
            model["tokenizer"] = self.model.tokenizer
        if self.model.sentence_encoder is not None:
            model["sentence_encoder"] = self.model.sentence_encoder.to_dict()
        if self.model.image_encoder is not None:
            model["image_encoder"] = self.model.image_encoder.to_dict()
        out["model"] = model
        out["loss"] = self.loss.to_dict()
        out["train"] = converter.unstructure(self.train)
        ev = {"split": self.eval.split}
        if self.eval.folds is not None:
            ev["folds"] = self.eval.folds
        if self.eval.ties != "pessimistic":  # unset keys keep specs of earlier versions equal for --resume
            ev["ties"] = self.eval.ties
        if self.eval.strict_protocol:
            ev["strict_protocol"] = True
        if self.eval.coco_1k_and_5k is not None:
            ev["coco_1k_and_5k"] = self.eval.coco_1k_and_5k
        if self.eval.metric is not None:
            ev["metric"] = self.eval.metric.to_dict()
        out["eval"] = ev
        out["output"] = {k: v for k, v in converter.unstructure(self.output).items() if v is not None}
        out["vocab"] = {k: v for k, v in converter.unstructure(self.vocab).items() if v is not None}
        return out


_SECTIONS = {"name", "imports", "data", "model", "loss", "train", "eval", "output", "vocab", "reference"}
DEFAULT_SENTENCE_ENCODER = {"type": "gru"}
DEFAULT_IMAGE_ENCODER = {"type": "linear"}
DEFAULT_METRIC = {"type": "recall"}


class _Problems(list):
    """The (toml path, message) pairs found so far; :meth:`attempt` runs one step and collects its problems."""

    def attempt(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except SpecProblems as exc:
            self.extend(exc.problems)
            return None


def from_dict(raw: dict[str, Any], source: str = "<spec>", base: Path | None = None, *,
              required: tuple[str, ...] = ("data", "model", "loss"), trust_code: bool = False) -> Spec:
    """Build a :class:`Spec` from parsed TOML; every problem is reported at once.

    ``base`` (default: the current directory) is where relative paths and ``file.py:Class`` names resolve.
    ``required``: the sections that must be there; ``("data",)`` reads a data spec (``vsekit eval --data``),
    whose absent ``model`` and ``loss`` are None. ``trust_code``: import the ``imports`` and the
    ``module:Class`` / ``file.py:Class`` names it holds; without it such a spec is refused before anything is
    imported (:func:`~vsekit.spec.component.require_trust`). Pass True for a spec the user wrote (:func:`load`
    does); a spec read from a model file gets the caller's ``trust_code``.

    Raises:
        SpecError: one line per problem: ``SOURCE: [section] key: message``.
        UntrustedCodeError: it names code to import and ``trust_code`` is False.
    """
    base = base if base is not None else Path.cwd()
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: expected a TOML table at the top level")
    _refuse_nul(raw, source)
    require_trust(raw, source, trust_code=trust_code)  # before any name is resolved (translate resolves some)
    if "reference" in raw:  # the reference release's option names (margin, dim, lrate, ...)
        from vsekit.reference_options import translate

        raw = translate(raw, source)
        require_trust(raw, source, trust_code=trust_code)
    problems = _Problems()
    for key in sorted(set(raw) - _SECTIONS):
        close = difflib.get_close_matches(key, sorted(_SECTIONS), n=1)
        hint = f", did you mean {close[0]!r}?" if close else ""
        problems.append((key, f"unknown section — known: {', '.join(sorted(_SECTIONS))}{hint}"))
    name = raw.get("name", Path(source).stem if source != "<spec>" else "run")
    if not isinstance(name, str) or not name:
        problems.append(("name", f"expected a non-empty string, got {name!r}"))
    imports = _imports(raw, base, problems)
    for section in required:
        if section not in raw:
            problems.append((section, "missing section"))
    data = problems.attempt(lambda: build_component("dataset_reader", raw["data"], "data", base)) if "data" in raw \
        else None
    loss = problems.attempt(lambda: build_component("loss", raw["loss"], "loss", base)) if "loss" in raw else None
    model = _model(raw["model"], base, problems) if "model" in raw else None
    train = problems.attempt(lambda: structure(raw.get("train", {}), TrainSpec, "train"))
    vocab = problems.attempt(lambda: structure(raw.get("vocab", {}), VocabSpec, "vocab"))
    output = problems.attempt(lambda: structure(raw.get("output", {}), OutputSpec, "output"))
    if output is not None:
        output = config.resolve_paths(output, base)
    ev = _eval(raw.get("eval", {}), base, problems)
    if problems:
        lines = (f"{source}: [{_section(p)}] {_field(p)}: {m}".replace(" : ", ": ") for p, m in problems)
        raise SpecError("\n".join(lines))
    return Spec(
        data=data, model=model, loss=loss, train=train, eval=ev, output=output, vocab=vocab,
        name=name, imports=tuple(str((base / i).resolve()) if i.endswith(".py") else i for i in imports), source=source,
    )


def _refuse_nul(raw: dict[str, Any], source: str) -> None:
    """SpecError naming every value of ``raw`` (any depth) holding a NUL character: no path, name or text of a
    spec can hold one (TOML allows the escape ``"\\u0000"``; the OS refuses it in a file name)."""
    found, todo = [], [((), raw)]
    while todo:
        path, value = todo.pop()
        if isinstance(value, dict):
            todo += [((*path, str(k)), v) for k, v in value.items()]
        elif isinstance(value, list):
            todo += [((*path[:-1], f"{path[-1]}[{i}]" if path else f"[{i}]"), v) for i, v in enumerate(value)]
        elif isinstance(value, str) and "\0" in value:
            found.append((".".join(path), f"{value!r} holds a NUL character"))
    if found:
        raise SpecError("\n".join(f"{source}: [{_section(p)}] {_field(p)}: {m}".replace(" : ", ": ")
                                   for p, m in sorted(found)))


def run_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a run's name, or None. A run's folder is ``runs/NAME``, so the name must be one
    folder name: not empty, ``.`` or ``..``; no ``/`` or ``\\``, no drive (``C:``); no control character
    (NUL included); UTF-8 text. Checked where a spec is run or validated (:func:`vsekit.api.check_spec`,
    :func:`vsekit.training.rundir.run_dir`), not where a stored spec is read: runs of earlier versions load."""
    if problem := text_problem(name):
        return problem
    if name in (".", ".."):
        return f"{name!r} is not a name; expected a folder name for runs/NAME"
    if "/" in name or "\\" in name or PureWindowsPath(name).drive:
        return (f"{name!r} is a path, expected a name (one folder name under runs/, no / or \\); "
                f"to choose the folder, use [output] dir or --out")
    if any(unicodedata.category(c) == "Cc" for c in name):
        return f"{name!r} holds a control character; expected a folder name for runs/NAME"
    return None


def _imports(raw: dict[str, Any], base: Path, problems: _Problems) -> list[str]:
    """The spec's ``imports`` list, each imported (so its ``@register`` calls run); [] if it is malformed."""
    imports = raw.get("imports", [])
    if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
        problems.append(("imports", f"expected a list of module names, got {imports!r}"))
        return []
    for module in imports:
        problems.attempt(lambda m=module: import_user_module(m, base))
    return imports


def _model(model_raw: Any, base: Path, problems: _Problems) -> ModelSpec | None:
    """``[model]`` with its two encoder components (defaults: gru and linear), checked against each other."""
    if not isinstance(model_raw, dict):
        problems.append(("model", f"expected a table, got {model_raw!r}"))
        return None
    model_raw = dict(model_raw)
    senc = problems.attempt(lambda: build_component(
        "sentence_encoder", model_raw.pop("sentence_encoder", DEFAULT_SENTENCE_ENCODER), "model.sentence_encoder",
        base))
    ienc = problems.attempt(lambda: build_component(
        "image_encoder", model_raw.pop("image_encoder", DEFAULT_IMAGE_ENCODER), "model.image_encoder", base))
    plain = problems.attempt(lambda: structure(model_raw, ModelSpec, "model"))
    if plain is None:
        return None
    if senc is not None:
        for field, msg in senc.cls.check_config(senc.config, dim=plain.dim):
            problems.append((f"model.sentence_encoder.{field}", msg))
    return attrs.evolve(plain, sentence_encoder=senc, image_encoder=ienc)


def _eval(ev_raw: Any, base: Path, problems: _Problems) -> EvalSpec | None:
    """``[eval]`` with its metric component (default: recall)."""
    if not isinstance(ev_raw, dict):
        problems.append(("eval", f"expected a table, got {ev_raw!r}"))
        return None
    ev_raw = dict(ev_raw)
    metric = problems.attempt(
        lambda: build_component("metric", ev_raw.pop("metric", DEFAULT_METRIC), "eval.metric", base))
    plain_ev = problems.attempt(lambda: structure(ev_raw, EvalSpec, "eval"))
    return attrs.evolve(plain_ev, metric=metric) if plain_ev is not None else None


def _section(path: str) -> str:
    head, _, _ = path.rpartition(".")
    return head or path


def _field(path: str) -> str:
    head, _, tail = path.rpartition(".")
    return tail if head else ""


def load(path: str | Path, overrides: Iterable[str] = (), *,
         required: tuple[str, ...] = ("data", "model", "loss")) -> Spec:
    """Read, override (``--set`` items) and structure the spec file at ``path`` (``required``: as :func:`from_dict`).

    The user's own spec: its ``imports`` and class names are imported (``trust_code=True``).

    Raises:
        SpecError: the file is missing or not TOML, an override is malformed, or the spec has problems.
    """
    path = Path(path)
    raw = apply_overrides(read_toml(path), overrides)
    return from_dict(raw, source=str(path), base=path.resolve().parent, required=required, trust_code=True)


def load_data_spec(path: str | Path) -> Spec:
    """The spec file at ``path`` read for its data: only ``[data]`` is required (``[eval]`` is read too), so a
    file holding just the data a model is evaluated on will do.

    Raises:
        SpecError: as :func:`load`.
    """
    return load(path, required=("data",))


#: the field helpers that moved to :mod:`vsekit.config`; importing them from here warns (for one release)
_MOVED_TO_CONFIG = ("EMBEDDED_PREFIX", "FieldError", "check", "component_field", "in_range", "non_negative",
                    "one_of", "path_field", "positive", "resolve_path", "resolve_paths")


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_CONFIG:
        warnings.warn(f"vsekit.spec.{name} is deprecated; use vsekit.config.{name}", DeprecationWarning,
                      stacklevel=2)
        return getattr(config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
