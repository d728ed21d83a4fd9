"""The reference release's option names in a spec: a ``[reference]`` table.

A spec may carry a ``[reference]`` table written with the reference's own
option names (those of its ``train()``); :func:`translate` turns it into
vsekit's sections before the spec is checked::

    [reference]
    data = "f8k"          # a preset under $VSEKIT_DATA_ROOT (or give a [data] section)
    encoder = "gru"
    dim = 1024
    lrate = 0.0002

Rules:

- options not given take the reference's defaults (so a ``[reference]``
  table alone trains the reference's configuration);
- a key given explicitly in a vsekit section wins over the reference option;
  a component table (``[loss]``, ``[model.sentence_encoder]``,
  ``[model.image_encoder]``) of another ``type`` than the reference's keeps
  its type and only receives the options its config has;
- unknown options, ``optimizer`` other than ``'adam'`` and ``reload_ = true``
  are errors.

| reference option | default | vsekit spec key | note |
|---|---|---|---|
| `data` | (none) | `[data]` = `{type = "precomp", dir = "$VSEKIT_DATA_ROOT/NAME", name = "NAME"}` | `f8k`, `f30k` or `coco`; ignored when a `[data]` section is given |
| `margin` | 0.2 | `loss.margin` | `loss.type = "contrastive"` |
| `ncon` | (none) | `loss.ncon` | the reference's code ignored it and used every in-batch negative; leave it out for fidelity |
| (always) | | `loss.same_image_negatives = true` | the reference counted another caption of the same image as a negative |
| `dim` | 1024 | `model.dim` | |
| `dim_word` | 300 | `model.sentence_encoder.dim_word` | `bow` needs `dim_word == dim` |
| `encoder` | `"gru"` | `model.sentence_encoder.type` | `"gru"` or `"bow"` |
| (always) | | `model.image_encoder = {type = "linear", normalize_train = false}` | the reference's training graph did not normalize image embeddings |
| (always) | | `model.append_eos = true` | the reference fed one `<eos>` step after every caption, in training and at encode time |
| `dim_image` | 4096 | (none) | checked to be a positive integer, then dropped: vsekit takes the feature width from the data |
| `max_epochs` | 15 | `train.max_epochs` | |
| `dispFreq` | 10 | `train.disp_freq` | updates |
| `decay_c` | 0 | `train.weight_decay` = 2 * `decay_c` | the reference added `decay_c * sum(theta^2)` to the cost; its gradient `2 * decay_c * theta` is what Adam's (coupled) `weight_decay` adds |
| `grad_clip` | 2 | `train.grad_clip` | global norm; 0 turns clipping off |
| `maxlen_w` | 100 | `train.maxlen_w` | longer training captions are skipped |
| `optimizer` | `"adam"` | (Adam) | only `"adam"` is accepted |
| `batch_size` | 128 | `train.batch_size` | |
| `saveto` | (none) | `output.dir` | a trailing `.npz` is dropped: `runs/f8k.npz` -> `runs/f8k/` |
| `validFreq` | 100 | `train.valid_freq` | updates |
| `lrate` | 0.0002 | `train.lr` | |
| `reload_` | false | `vsekit run SPEC --resume` | `true` is refused: a run continues with `--resume`, not a spec option |

Known differences that remain: vsekit builds the vocabulary from the train
captions only (the reference used train + dev), and its training feeds no
``<eos>`` step (models imported from the reference do, at encode time).
"""  # noqa: E501 - a markdown table row cannot wrap; mapping_table() returns the rows whole, as README.md shows them

from __future__ import annotations

import copy
import difflib
import logging
from collections.abc import Callable
from typing import Any

from vsekit.errors import DataError, RegistryError, SpecError

log = logging.getLogger(__name__)

_INT, _FLOAT, _STR, _BOOL = "an integer", "a number", "a string", "true or false"

#: option -> (expected kind, value check (or None), check message, default (None: no default))
OPTIONS: dict[str, tuple[str, Callable[[Any], bool] | None, str, Any]] = {
    "data": (_STR, None, "", None),
    "margin": (_FLOAT, lambda v: v >= 0, "a number >= 0", 0.2),
    "ncon": (_INT, lambda v: v > 0, "an integer > 0", None),
    "dim": (_INT, lambda v: v > 0, "an integer > 0", 1024),
    "dim_image": (_INT, lambda v: v > 0, "an integer > 0", None),
    "dim_word": (_INT, lambda v: v > 0, "an integer > 0", 300),
    "encoder": (_STR, lambda v: v in ("gru", "bow"), "'gru' or 'bow'", "gru"),
    "max_epochs": (_INT, lambda v: v > 0, "an integer > 0", 15),
    "dispFreq": (_INT, lambda v: v > 0, "an integer > 0", 10),
    "decay_c": (_FLOAT, lambda v: v >= 0, "a number >= 0", 0.0),
    "grad_clip": (_FLOAT, lambda v: v >= 0, "a number >= 0", 2.0),
    "maxlen_w": (_INT, lambda v: v > 0, "an integer > 0", 100),
    "optimizer": (_STR, lambda v: v == "adam", "only 'adam' is supported (the reference's default)", "adam"),
    "batch_size": (_INT, lambda v: v >= 2, "an integer >= 2", 128),
    "saveto": (_STR, None, "", None),
    "validFreq": (_INT, lambda v: v >= 0, "an integer >= 0", 100),
    "lrate": (_FLOAT, lambda v: v > 0, "a number > 0", 0.0002),
    "reload_": (_BOOL, lambda v: v is False,
                "reload_ = true: continue a run with `vsekit run SPEC --out RUN --resume` instead", False),
}

#: option -> the vsekit key it sets (dotted), for options that set one directly
TARGETS: dict[str, str] = {
    "margin": "loss.margin", "ncon": "loss.ncon", "dim": "model.dim",
    "dim_word": "model.sentence_encoder.dim_word", "encoder": "model.sentence_encoder.type",
    "max_epochs": "train.max_epochs", "dispFreq": "train.disp_freq", "decay_c": "train.weight_decay",
    "grad_clip": "train.grad_clip", "maxlen_w": "train.maxlen_w", "batch_size": "train.batch_size",
    "saveto": "output.dir", "validFreq": "train.valid_freq", "lrate": "train.lr",
}

#: vsekit field name -> the reference option, to help people who wrote vsekit's names under [reference]
_VSEKIT_NAMES = {target.rsplit(".", 1)[1]: opt for opt, target in TARGETS.items() if opt not in ("encoder", "saveto")}
_VSEKIT_NAMES.update({"type": "encoder", "dir": "saveto"})

#: which registry kind a component table belongs to
_COMPONENTS = {("loss",): "loss", ("model", "sentence_encoder"): "sentence_encoder",
               ("model", "image_encoder"): "image_encoder"}


def mapping_table() -> str:
    """The markdown table of reference options and the vsekit keys they set."""
    return "\n".join(line for line in (__doc__ or "").splitlines() if line.startswith("|")) + "\n"


def _kind_ok(kind: str, value: Any) -> bool:
    if kind == _BOOL:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == _INT:
        return isinstance(value, int)
    if kind == _FLOAT:
        return isinstance(value, (int, float))
    return isinstance(value, str)


def _unknown_message(key: str) -> str:
    known = sorted(OPTIONS, key=str.lower)
    close = difflib.get_close_matches(key, known, n=1) or difflib.get_close_matches(
        key.lower(), {k.lower(): k for k in known}, n=1)
    if close and close[0] not in OPTIONS:
        close = [{k.lower(): k for k in known}[close[0]]]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    if not close and key in _VSEKIT_NAMES:
        hint = f"; that is vsekit's name: the reference calls it {_VSEKIT_NAMES[key]!r}"
    return f"unknown reference option — known: {', '.join(known)}{hint}"


def _set_default(table: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = table
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node.setdefault(path[-1], value)


def _config_fields(kind: str, type_name: str) -> set[str] | None:
    import attrs

    from vsekit import registry

    try:
        cls = registry.get(kind, type_name)
    except RegistryError:
        return None
    config = getattr(cls, "Config", None)
    return {f.name for f in attrs.fields(config)} if config is not None and attrs.has(config) else None


def _get(raw: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = raw
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def translate(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """``raw`` with its ``[reference]`` table turned into vsekit sections (explicit sections win).

    Raises:
        SpecError: an unknown or badly typed reference option, or an unknown dataset preset
            (every problem, one line each).
    """
    ref = raw.get("reference")
    if not isinstance(ref, dict):
        raise SpecError(f"{source}: [reference]: expected a table of the reference's options, got {ref!r}")
    problems = _option_problems(ref, source)
    if problems:
        raise SpecError("\n".join(problems))
    derived = _derived_sections(raw, ref, source)
    out = copy.deepcopy({k: v for k, v in raw.items() if k != "reference"})
    for key in ref:
        path = tuple(TARGETS[key].split(".")) if key in TARGETS else None
        if path and _get(out, path) is not None and _get(out, path) != _get(derived, path):
            log.warning("%s: [reference] %s ignored: [%s] %s is given explicitly", source, key,
                        ".".join(path[:-1]), path[-1])
    _merge_components(out, derived, ref)
    _merge(out, derived)  # plain keys: fill what the vsekit sections leave out
    return out


def _option_problems(ref: dict[str, Any], source: str) -> list[str]:
    """One message per unknown or bad option of the ``[reference]`` table ``ref``."""
    problems: list[str] = []
    for key in ref:
        if key not in OPTIONS:
            problems.append(f"{source}: [reference] {key}: {_unknown_message(key)}")
            continue
        kind, check, what, _ = OPTIONS[key]
        value = ref[key]
        if not _kind_ok(kind, value):
            problems.append(f"{source}: [reference] {key}: expected {kind}, got {value!r}")
        elif check is not None and not check(value):
            msg = what if key in ("optimizer", "reload_") else f"expected {what}"
            problems.append(f"{source}: [reference] {key}: {msg}, got {value!r}")
    if "data" in ref and isinstance(ref["data"], str):
        from vsekit.data.presets import PRESETS

        if ref["data"] not in PRESETS:
            close = difflib.get_close_matches(ref["data"], list(PRESETS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{source}: [reference] data: unknown dataset preset {ref['data']!r} — known: "
                            f"{', '.join(PRESETS)}{hint} (or give a [data] section instead)")
    return problems


def _derived_sections(raw: dict[str, Any], ref: dict[str, Any], source: str) -> dict[str, Any]:
    """The vsekit sections the reference options (``ref`` over their defaults) stand for."""
    opts = {k: v for k, v in ((k, spec[3]) for k, spec in OPTIONS.items()) if v is not None}
    opts.update(ref)
    derived: dict[str, Any] = {
        "loss": {"type": "contrastive", "same_image_negatives": True},
        "model": {"append_eos": True, "sentence_encoder": {},
                  "image_encoder": {"type": "linear", "normalize_train": False}},
    }
    for key, target in TARGETS.items():
        if key not in opts:
            continue
        value = opts[key]
        if key == "decay_c":
            value = 2.0 * value
        elif key == "saveto":
            if not value:
                continue
            value = value[: -len(".npz")] if value.endswith(".npz") else value
        _set_default(derived, tuple(target.split(".")), value)
    if "data" in ref:
        if "data" in raw:
            log.info("%s: [reference] data = %r ignored: a [data] section is given", source, ref["data"])
        else:
            from vsekit.data.presets import preset_table

            try:
                derived["data"] = preset_table(ref["data"])
            except DataError as exc:
                raise SpecError(f"{source}: [reference] data: {exc}; or give a [data] section") from None
    return derived


def _merge_components(out: dict[str, Any], derived: dict[str, Any], ref: dict[str, Any]) -> None:
    """Component tables: an explicit table keeps its type and takes only the options its config knows."""
    for path, kind in _COMPONENTS.items():
        want = _get(derived, path)
        have = _get(out, path)
        if have is None:
            continue
        if not isinstance(have, dict):
            _pop(derived, path)  # let the spec checker report the bad value
            continue
        type_name = have.get("type", want.get("type"))
        fields = _config_fields(kind, type_name) if isinstance(type_name, str) else None
        if fields is not None and type_name != want.get("type"):  # another component: only the options given
            fields &= {TARGETS[k].rsplit(".", 1)[1] for k in ref if TARGETS.get(k, "").startswith(".".join(path))}
        merged = dict(have)
        merged.setdefault("type", type_name)
        for k, v in want.items():
            if k == "type" or k in merged or fields is None or k not in fields:
                continue
            merged[k] = v
        _pop(derived, path)
        _put(out, path, merged)


def _pop(table: dict[str, Any], path: tuple[str, ...]) -> None:
    node = _get(table, path[:-1]) if len(path) > 1 else table
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _put(table: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = table
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _merge(into: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Copy ``defaults`` into ``into`` where ``into`` has no value (tables merge recursively)."""
    for k, v in defaults.items():
        if k not in into:
            into[k] = copy.deepcopy(v)
        elif isinstance(into[k], dict) and isinstance(v, dict):
            _merge(into[k], v)
