"""The run spec: attrs classes, the cattrs converter, TOML loading and overrides.

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
"""

from __future__ import annotations

import copy
import difflib
import tomllib
from pathlib import Path
from typing import Any, Callable, Iterable

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,  # a str subclass carrying .index and .type
    StructureHandlerNotFoundError,
)

from vsekit import registry
from vsekit.errors import RegistryError, SpecError
from vsekit.metrics import TIE_RULES

# The field helpers live in vsekit.config; importing them from here keeps working.
from vsekit.config import (  # noqa: E402,F401
    EMBEDDED_PREFIX,
    FieldError,
    check,
    component_field,
    in_range,
    non_negative,
    one_of,
    path_field,
    positive,
    resolve_path,
    resolve_paths,
)


# --------------------------------------------------------------------------
# the converter: strict primitives, no extra keys


def _strict(kind: type, accept: tuple[type, ...], reject: tuple[type, ...] = ()) -> Callable:
    def hook(value: Any, _t: Any) -> Any:
        if isinstance(value, reject) or not isinstance(value, accept):
            raise TypeError(f"expected {kind.__name__}, got {value!r}")
        return kind(value)

    return hook


def make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(int, _strict(int, (int,), (bool,)))
    conv.register_structure_hook(float, _strict(float, (int, float), (bool,)))
    conv.register_structure_hook(str, _strict(str, (str,)))
    conv.register_structure_hook(bool, _strict(bool, (bool,)))
    return conv


converter = make_converter()
converter.register_unstructure_hook_func(lambda t: t.__name__ == "Component", lambda c: c.to_dict())


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


def _messages(exc: BaseException, path: str, cls: type | None) -> list[tuple[str, str]]:
    """Flatten a cattrs error tree into (toml path, message) pairs."""
    out: list[tuple[str, str]] = []
    if isinstance(exc, ClassValidationError):
        for sub in exc.exceptions:
            notes = [n for n in getattr(sub, "__notes__", []) if hasattr(n, "name")]
            sub_cls = exc.cl if attrs.has(exc.cl) else cls
            if notes:
                note = notes[0]
                sub_path = f"{path}.{note.name}" if path else note.name
                if isinstance(sub, ClassValidationError):
                    out += _messages(sub, sub_path, sub.cl)
                else:
                    out += _messages_leaf(sub, sub_path, note.type)
            else:
                out += _messages(sub, path, sub_cls)
        return out
    if isinstance(exc, ForbiddenExtraKeysError):
        known = [f.name for f in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        for key in sorted(exc.extra_fields):
            close = difflib.get_close_matches(key, known, n=1)
            hint = f", did you mean {close[0]!r}?" if close else ""
            where = f"{path}.{key}" if path else key
            out.append((where, f"unknown key — known: {', '.join(known) or '(none)'}{hint}"))
        return out
    if isinstance(exc, FieldError):
        return [(f"{path}.{exc.name}" if path else exc.name, exc.message)]
    if isinstance(exc, TypeError) and "missing" in str(exc) and "required" in str(exc):
        return [(path, f"missing required key: {str(exc).split(':', 1)[-1].strip()}")]
    return _attrs_type_error(exc, path) or [(path, str(exc))]


def _attrs_type_error(exc: BaseException, path: str) -> list[tuple[str, str]] | None:
    """attrs' ``instance_of`` TypeError (message, attribute, type, value) as one readable problem."""
    args = getattr(exc, "args", ())
    if not (isinstance(exc, TypeError) and len(args) == 4 and isinstance(args[1], attrs.Attribute)):
        return None
    attribute, want, got = args[1], args[2], args[3]
    where = f"{path}.{attribute.name}" if path else attribute.name
    if got is None:
        return [(where, "missing required key")]
    return [(where, f"expected {_type_name(want)}, got {got!r}")]


def _messages_leaf(exc: BaseException, path: str, typ: Any) -> list[tuple[str, str]]:
    if isinstance(exc, FieldError):
        return [(path, exc.message)]
    if isinstance(exc, IterableValidationError):  # one problem per bad list item: field[index]
        out: list[tuple[str, str]] = []
        for sub in exc.exceptions:
            notes = [n for n in getattr(sub, "__notes__", []) if isinstance(n, IterableValidationNote)]
            out += _messages_leaf(sub, f"{path}[{notes[0].index}]" if notes else path,
                                  notes[0].type if notes else typ)
        return out
    msg = str(exc)
    if not msg.startswith("expected"):
        msg = f"expected {_type_name(typ)}: {msg}"
    return [(path, msg)]


def structure(data: Any, cls: type, path: str) -> Any:
    """Structure ``data`` into ``cls``; raise SpecError listing every problem under ``path``."""
    if attrs.has(cls) and not isinstance(data, dict):
        raise _SpecProblems([(path, f"expected a table, got {data!r}")])
    try:
        return converter.structure(data, cls)
    except (ClassValidationError, ForbiddenExtraKeysError, FieldError) as exc:
        problems = _messages(exc, path, cls)
        subs = exc.exceptions if isinstance(exc, ClassValidationError) else [exc]
        if any(_validator_failed(e) for e in subs):  # attrs stops at the first failing validator
            problems = _all_field_errors(data, cls, path) or problems
        elif isinstance(data, dict):  # bad types or keys stop before the validators: check the other keys too
            bad = {n.name for e in subs for n in getattr(e, "__notes__", []) if hasattr(n, "name")}
            for e in subs:
                bad |= set(getattr(e, "extra_fields", ()))
            extra = _all_field_errors({k: v for k, v in data.items() if k not in bad}, cls, path, skip=bad)
            problems += [p for p in extra if p not in problems]
        raise _SpecProblems(problems) from None
    except StructureHandlerNotFoundError as exc:  # a user Config field of a type TOML values cannot become
        raise _SpecProblems([(path, f"{_type_name(cls)} has a field vsekit cannot read from a spec: {exc}")]) from exc
    except (TypeError, ValueError) as exc:
        raise _SpecProblems([(path, str(exc))]) from None
    except Exception as exc:  # a user Config's own checks (__attrs_post_init__, converters) may raise anything
        raise _SpecProblems([(path, f"{_type_name(cls)} refused these values: {type(exc).__name__}: {exc}")]) from exc


def _validator_failed(exc: BaseException) -> bool:
    """A validator's error from ``__init__`` (a FieldError, or attrs' own ValueError), not a per-key structuring one."""
    if isinstance(exc, FieldError):
        return True
    return isinstance(exc, ValueError) and not any(hasattr(n, "name") for n in getattr(exc, "__notes__", []))


def _all_field_errors(data: Any, cls: type, path: str, skip: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Every :class:`FieldError` of ``cls``'s validators on ``data`` (not only the first one)."""
    try:
        with attrs.validators.disabled():
            inst = converter.structure(data, cls)
    except Exception:
        return []
    out = []
    for field in attrs.fields(cls):
        if field.validator is None or field.name in skip:
            continue
        try:
            field.validator(inst, field, getattr(inst, field.name))
        except FieldError as err:
            out.append((f"{path}.{err.name}" if path else err.name, err.message))
        except (TypeError, ValueError) as err:  # attrs' own validators (instance_of, gt, in_, ...) or a user's
            where = f"{path}.{field.name}" if path else field.name
            out += _attrs_type_error(err, path) or [(where, _validator_message(err, field.name))]
    return out


def _validator_message(err: BaseException, name: str) -> str:
    """attrs' validator text ``'n' must be > 0: -1`` without the field name the problem's key already gives."""
    msg = str(err.args[0]) if err.args else str(err)
    return msg.removeprefix(f"'{name}' ").strip() or type(err).__name__


class _SpecProblems(Exception):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(problems)
        self.problems = problems


# --------------------------------------------------------------------------
# components


@attrs.frozen
class Component:
    """A component chosen by ``type`` plus its structured ``config``."""

    kind: str
    type: str
    config: Any

    @property
    def cls(self) -> type:
        return registry.get(self.kind, self.type)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **converter.unstructure(self.config)}

    def build(self, *args: Any, **kwargs: Any) -> Any:
        return self.cls(self.config, *args, **kwargs)


def build_component(kind: str, table: Any, path: str, base: Path) -> Component:
    if not isinstance(table, dict):
        raise _SpecProblems([(path, f"expected a table with a 'type' key, got {table!r}")])
    table = dict(table)
    name = table.pop("type", None)
    if name is None:
        raise _SpecProblems([(path, "missing key 'type'")])
    if not isinstance(name, str):
        raise _SpecProblems([(f"{path}.type", f"expected a string, got {name!r}")])
    try:
        name = registry.canonical_name(name, base)  # file.py:Class -> absolute, so saved specs still resolve
        cls = registry.get(kind, name, base)
    except RegistryError as exc:
        raise _SpecProblems([(f"{path}.type", str(exc))]) from None
    config_cls = getattr(cls, "Config", None)
    if config_cls is None or not attrs.has(config_cls):
        raise _SpecProblems([(f"{path}.type", f"{name!r} has no attrs Config class")])
    config = resolve_paths(structure(table, config_cls, path), base)
    nested = {}
    for field in attrs.fields(config_cls):
        sub_kind = field.metadata.get("vsekit_component")
        value = getattr(config, field.name)
        if sub_kind and value is not None and not isinstance(value, Component):
            nested[field.name] = build_component(sub_kind, value, f"{path}.{field.name}", base)
    if nested:
        config = attrs.evolve(config, **nested)
    return Component(kind, name, config)


# --------------------------------------------------------------------------
# the spec sections


@attrs.frozen
class VocabSpec:
    """Vocabulary built from the training captions only."""

    min_count: int = attrs.field(default=1, validator=positive())
    max_size: int | None = attrs.field(default=None, validator=positive())


@attrs.frozen
class ModelSpec:
    dim: int = attrs.field(default=1024, validator=positive())
    #: feed one ``<eos>`` step after every caption, in training and at encode time (the reference did)
    append_eos: bool = False
    #: the name of a tokenizer in ``vsekit.data.tokenize.TOKENIZERS`` (checked by ``vsekit validate`` and when
    #: the model is built): it turns caption text into tokens in training, evaluation, encoding and retrieval
    tokenizer: str = "regex"
    sentence_encoder: Component | None = None
    image_encoder: Component | None = None


def _is_device(value: str) -> bool:
    if value == "auto":
        return True
    import torch

    try:
        torch.device(value)
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


@attrs.frozen
class TrainSpec:
    max_epochs: int = attrs.field(default=15, validator=positive())
    batch_size: int = attrs.field(default=128, validator=check(lambda v: v >= 2, "an integer >= 2"))
    lr: float = attrs.field(default=2e-4, validator=positive())
    weight_decay: float = attrs.field(default=0.0, validator=non_negative())
    grad_clip: float = attrs.field(default=2.0, validator=non_negative())
    maxlen_w: int = attrs.field(default=100, validator=positive())
    lr_schedule: str = attrs.field(default="none", validator=one_of("none", "step", "cosine"))
    lr_step_epochs: int = attrs.field(default=15, validator=positive())
    lr_gamma: float = attrs.field(default=0.1, validator=in_range(0.0, 1.0))
    early_stopping: int = attrs.field(default=0, validator=non_negative())
    disp_freq: int = attrs.field(default=10, validator=positive())
    valid_freq: int = attrs.field(default=0, validator=non_negative())
    #: also save the resumable ``last`` state every this many steps (0: at epoch ends only, which is always done)
    save_freq: int = attrs.field(default=0, validator=non_negative())
    bucket: bool = True
    seed: int = 0
    threads: int = attrs.field(default=0, validator=non_negative())
    device: str = attrs.field(default="cpu",
                              validator=check(_is_device, "'auto' or a torch device: 'cpu', 'cuda', 'cuda:1', ..."))
    precision: str = attrs.field(default="fp32", validator=one_of("fp32", "bf16", "fp16"))
    tensorboard: bool = False
    valid_split: str = "dev"


@attrs.frozen
class EvalSpec:
    split: str = "test"
    metric: Component | None = None
    folds: int | None = attrs.field(default=None, validator=positive())
    #: how the final table ranks ties: "pessimistic" (a tie counts against the query) or "reference" (the
    #: reference's stable argsort order); dev-rsum model selection always uses "pessimistic"
    ties: str = attrs.field(default="pessimistic", validator=one_of(*TIE_RULES))


@attrs.frozen
class OutputSpec:
    dir: str | None = path_field(None)
    save_last: bool = True


@attrs.frozen
class Spec:
    """A whole run: data, model, loss, training, evaluation and output."""

    data: Component
    model: ModelSpec
    loss: Component
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    output: OutputSpec = OutputSpec()
    vocab: VocabSpec = VocabSpec()
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


def from_dict(raw: dict[str, Any], source: str = "<spec>", base: Path | None = None) -> Spec:
    """Build a :class:`Spec` from parsed TOML; every problem is reported at once."""
    base = base if base is not None else Path.cwd()
    problems: list[tuple[str, str]] = []

    def attempt(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except _SpecProblems as exc:
            problems.extend(exc.problems)
            return None

    if not isinstance(raw, dict):
        raise SpecError(f"{source}: expected a TOML table at the top level")
    if "reference" in raw:  # the reference release's option names (margin, dim, lrate, ...)
        from vsekit.reference_options import translate

        raw = translate(raw, source)
    for key in sorted(set(raw) - _SECTIONS):
        close = difflib.get_close_matches(key, sorted(_SECTIONS), n=1)
        hint = f", did you mean {close[0]!r}?" if close else ""
        problems.append((key, f"unknown section — known: {', '.join(sorted(_SECTIONS))}{hint}"))

    name = raw.get("name", Path(source).stem if source != "<spec>" else "run")
    if not isinstance(name, str) or not name:
        problems.append(("name", f"expected a non-empty string, got {name!r}"))
    imports = raw.get("imports", [])
    if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
        problems.append(("imports", f"expected a list of module names, got {imports!r}"))
        imports = []
    for module in imports:
        attempt(lambda m=module: _import_user_module(m, base))

    for section in ("data", "model", "loss"):
        if section not in raw:
            problems.append((section, "missing section"))
    data = attempt(lambda: build_component("dataset_reader", raw["data"], "data", base)) if "data" in raw else None
    loss = attempt(lambda: build_component("loss", raw["loss"], "loss", base)) if "loss" in raw else None

    model = None
    if "model" in raw:
        model_raw = raw["model"]
        if not isinstance(model_raw, dict):
            problems.append(("model", f"expected a table, got {model_raw!r}"))
        else:
            model_raw = dict(model_raw)
            senc = attempt(
                lambda: build_component(
                    "sentence_encoder", model_raw.pop("sentence_encoder", DEFAULT_SENTENCE_ENCODER),
                    "model.sentence_encoder", base,
                )
            )
            ienc = attempt(
                lambda: build_component(
                    "image_encoder", model_raw.pop("image_encoder", DEFAULT_IMAGE_ENCODER), "model.image_encoder", base
                )
            )
            plain = attempt(lambda: structure(model_raw, ModelSpec, "model"))
            if plain is not None:
                model = attrs.evolve(plain, sentence_encoder=senc, image_encoder=ienc)
                if senc is not None:
                    for field, msg in senc.cls.check_config(senc.config, dim=plain.dim):
                        problems.append((f"model.sentence_encoder.{field}", msg))

    train = attempt(lambda: structure(raw.get("train", {}), TrainSpec, "train"))
    vocab = attempt(lambda: structure(raw.get("vocab", {}), VocabSpec, "vocab"))
    output = attempt(lambda: structure(raw.get("output", {}), OutputSpec, "output"))
    if output is not None:
        output = resolve_paths(output, base)
    ev = None
    ev_raw = raw.get("eval", {})
    if not isinstance(ev_raw, dict):
        problems.append(("eval", f"expected a table, got {ev_raw!r}"))
    else:
        ev_raw = dict(ev_raw)
        metric = attempt(lambda: build_component("metric", ev_raw.pop("metric", DEFAULT_METRIC), "eval.metric", base))
        plain_ev = attempt(lambda: structure(ev_raw, EvalSpec, "eval"))
        if plain_ev is not None:
            ev = attrs.evolve(plain_ev, metric=metric)

    if problems:
        raise SpecError("\n".join(f"{source}: [{_section(p)}] {_field(p)}: {m}".replace(" : ", ": ") for p, m in problems))
    return Spec(
        data=data, model=model, loss=loss, train=train, eval=ev, output=output, vocab=vocab,
        name=name, imports=tuple(str((base / i).resolve()) if i.endswith(".py") else i for i in imports), source=source,
    )


def _section(path: str) -> str:
    head, _, _ = path.rpartition(".")
    return head or path


def _field(path: str) -> str:
    head, _, tail = path.rpartition(".")
    return tail if head else ""


def _import_user_module(name: str, base: Path) -> None:
    import importlib
    import sys

    if name.endswith(".py"):
        path = Path(name) if Path(name).is_absolute() else base / name
        try:
            registry.import_file(path, "imports")
        except RegistryError as exc:
            raise _SpecProblems([("imports", str(exc))]) from None
        except Exception as exc:  # the user's file raised; --debug shows the traceback
            raise _SpecProblems([("imports", f"importing {str(path)!r} failed: {type(exc).__name__}: {exc}")]) from exc
        return
    if str(base) not in sys.path:
        sys.path.insert(0, str(base))
    try:
        importlib.import_module(name)
    except ImportError as exc:
        raise _SpecProblems([("imports", f"cannot import {name!r}: {exc}")]) from None
    except RegistryError as exc:
        raise _SpecProblems([("imports", f"importing {name!r}: {exc}")]) from None


# --------------------------------------------------------------------------
# files and overrides


def parse_override(item: str) -> tuple[list[str], Any]:
    """``train.lr=1e-4`` -> (["train", "lr"], 1e-4); values are TOML literals, else strings."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. train.lr=1e-4")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for item in overrides:
        keys, value = parse_override(item)
        node = raw
        for k in keys[:-1]:
            nxt = node.setdefault(k, {})
            if not isinstance(nxt, dict):
                raise SpecError(f"--set {item!r}: {'.'.join(keys[:-1])} is not a table")
            node = nxt
        node[keys[-1]] = value
    return raw


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text: {exc}") from None


def load(path: str | Path, overrides: Iterable[str] = ()) -> Spec:
    """Read, override and structure a spec file."""
    path = Path(path)
    raw = apply_overrides(read_toml(path), overrides)
    return from_dict(raw, source=str(path), base=path.resolve().parent)


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def dumps_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for spec dicts (tables, scalars, lists of scalars)."""
    lines: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + "".join(_TOML_ESCAPES.get(c) or (f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
                                 for c in v) + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        raise TypeError(f"cannot write {v!r} as TOML")

    def table(prefix: str, d: dict[str, Any]) -> None:
        simple = {k: v for k, v in d.items() if not isinstance(v, dict) and v is not None}
        nested = {k: v for k, v in d.items() if isinstance(v, dict)}
        if prefix:
            lines.append(f"\n[{prefix}]")
        for k, v in simple.items():
            lines.append(f"{k} = {scalar(v)}")
        for k, v in nested.items():
            table(f"{prefix}.{k}" if prefix else k, v)

    table("", data)
    return "\n".join(lines).lstrip("\n") + "\n"

