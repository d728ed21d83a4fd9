"""The reference release's model files: read them safely, import them, export to them.

A reference model saved as ``PATH.npz`` is three files:

- ``PATH.npz``: a numpy ``savez`` archive of the parameters, by name;
- ``PATH.npz.pkl``: a Python 2 pickle of the options dict (``dim``, ``dim_word``, ``dim_image``, ``encoder``,
  ``n_words``, ``margin``, ...);
- ``PATH.npz.dictionary.pkl``: a Python 2 pickle of the word -> index mapping, a ``collections.OrderedDict``
  (protocol 0, as the reference's ``train.py`` wrote it with ``pkl.dump``).

Pickles are programs: :func:`vsekit.data.safe_pickle.read_pickle` reads the two and runs none of them.

Parameter mapping (reference name and shape -> vsekit tensor):

| reference | shape | vsekit |
|---|---|---|
| `Wemb` | (n_words, dim_word) | `sentence_encoder.embed.weight` |
| `encoder_W` = [W_r \\| W_u] | (dim_word, 2*dim) | `sentence_encoder.rnn.weight_ih_l0` rows 0:2*dim = [W_r^T; W_u^T] |
| `encoder_Wx` | (dim_word, dim) | `sentence_encoder.rnn.weight_ih_l0` rows 2*dim:3*dim = Wx^T |
| `encoder_b` = [b_r \\| b_u] | (2*dim,) | `sentence_encoder.rnn.bias_ih_l0[0:2*dim]` |
| `encoder_bx` | (dim,) | `sentence_encoder.rnn.bias_ih_l0[2*dim:]` |
| `encoder_U` = [U_r \\| U_u] | (dim, 2*dim) | `sentence_encoder.rnn.weight_hh_l0` rows 0:2*dim = [U_r^T; U_u^T] |
| `encoder_Ux` | (dim, dim) | `sentence_encoder.rnn.weight_hh_l0` rows 2*dim:3*dim = Ux^T |
| (none) | | `sentence_encoder.rnn.bias_hh_l0` = 0 |
| `ff_image_W` | (dim_image, dim) | `image_encoder.fc.weight` = W^T |
| `ff_image_b` | (dim,) | `image_encoder.fc.bias` |

PyTorch orders a GRU's gates (reset, update, new), the reference's update
gate ``u`` is PyTorch's ``z``, and both apply the reset gate after the
recurrent product, so the two compute the same function. For ``bow`` only
``Wemb`` is used (``dim_word == dim``). Imported models feed one ``<eos>``
step after each caption, split captions on whitespace and map word indices
``>= n_words`` to ``<unk>``, as the reference did at encode time.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from vsekit.data.presets import PRESETS
from vsekit.data.safe_pickle import read_pickle
from vsekit.data.vocab import EOS, SPECIALS, UNK, Vocab
from vsekit.errors import CheckpointError, SpecError
from vsekit.limits import MAX_WORDS
from vsekit.model import JointModel
from vsekit.reference_options import translate

log = logging.getLogger(__name__)

#: the reference's training options with their defaults (written by :func:`export_legacy`).
REFERENCE_DEFAULTS: dict[str, Any] = {
    "data": "coco", "margin": 0.2, "dim": 1024, "dim_image": 4096, "dim_word": 300, "encoder": "gru",
    "max_epochs": 15, "dispFreq": 10, "decay_c": 0.0, "grad_clip": 2.0, "maxlen_w": 100, "optimizer": "adam",
    "batch_size": 128, "saveto": "", "validFreq": 100, "lrate": 0.0002, "reload_": False,
}

GRU_PARAMS = ("encoder_W", "encoder_b", "encoder_U", "encoder_Wx", "encoder_bx", "encoder_Ux")
_GAP = "<unused {}>"  # vocabulary filler for missing indices; contains a space, so no tokenizer produces it
_GAP_RE = re.compile(r"<unused \d+>")


def sidecar_paths(path: str | Path) -> tuple[Path, Path, Path]:
    """(``PATH.npz``, ``PATH.npz.pkl``, ``PATH.npz.dictionary.pkl``)."""
    p = Path(path)
    return p, p.with_name(p.name + ".pkl"), p.with_name(p.name + ".dictionary.pkl")


def _read_params(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except ValueError as exc:  # object arrays need pickle: refused
        raise CheckpointError(f"{path}: refused: an array needs unpickling ({exc})") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable numpy .npz archive: {exc}") from None


def _int_option(options: dict[str, Any], key: str, source: Path) -> int:
    if key not in options:
        raise CheckpointError(f"{source}: options have no {key!r} (keys: {', '.join(sorted(map(str, options)))})")
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CheckpointError(f"{source}: option {key!r} must be a positive integer, got {value!r}")
    return value


def read_options(path: Path) -> dict[str, Any]:
    """The reference's options dict in the pickle ``path`` (read with :func:`read_pickle`, no code run).
    Raises :class:`CheckpointError` for an unsafe or unreadable pickle, or one that is not a dict of str keys."""
    options = read_pickle(path)
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise CheckpointError(f"{path}: expected a dict of options, got {type(options).__name__}")
    return options


def read_dictionary(path: Path, n_words: int) -> list[str]:
    """The vocabulary word list (index order, ``n_words`` long) from a word -> index pickle."""
    worddict = read_pickle(path)
    if not isinstance(worddict, dict):
        raise CheckpointError(f"{path}: expected a word -> index dict, got {type(worddict).__name__}")
    words: list[str | None] = [None] * n_words
    words[EOS], words[UNK] = SPECIALS
    for word, idx in worddict.items():
        if not isinstance(word, str) or isinstance(idx, bool) or not isinstance(idx, int):
            raise CheckpointError(f"{path}: expected str -> int entries, got {word!r} -> {idx!r}")
        if idx < 0:
            raise CheckpointError(f"{path}: word {word!r} has a negative index {idx}")
        if idx in (EOS, UNK) or idx >= n_words:
            continue  # the specials, and words beyond the n_words cutoff (they encode as <unk>)
        if word in SPECIALS or _GAP_RE.fullmatch(word):
            raise CheckpointError(f"{path}: word {word!r} at index {idx} clashes with a reserved token")
        if words[idx] is not None:
            raise CheckpointError(f"{path}: index {idx} is given to both {words[idx]!r} and {word!r}")
        words[idx] = word
    gaps = [i for i, w in enumerate(words) if w is None]
    if gaps:
        log.info("%s: %d index(es) below n_words have no word (first %d); they are never produced",
                 path, len(gaps), gaps[0])
    return [w if w is not None else _GAP.format(i) for i, w in enumerate(words)]


def _expect(params: dict[str, np.ndarray], name: str, shape: tuple[int, ...], source: Path,
            why: str) -> torch.Tensor:
    if name not in params:
        raise CheckpointError(f"{source}: parameter {name!r} is missing (has: {', '.join(sorted(params))})")
    arr = params[name]
    if tuple(arr.shape) != shape:
        raise CheckpointError(f"{source}: parameter {name!r} has shape {tuple(arr.shape)}, expected {shape} ({why})")
    if not np.issubdtype(arr.dtype, np.floating):
        raise CheckpointError(f"{source}: parameter {name!r} has dtype {arr.dtype}, expected floating point")
    if not np.isfinite(arr).all():
        raise CheckpointError(f"{source}: parameter {name!r} has NaN or inf values")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def legacy_spec(options: dict[str, Any], name: str = "reference") -> dict[str, Any]:
    """A vsekit spec dict describing an imported reference model (its data as a ``[reference]`` preset)."""
    ref = {k: options[k] for k in REFERENCE_DEFAULTS if k in options and k not in ("saveto", "reload_", "data")}
    ref["optimizer"] = "adam"
    if options.get("data") in PRESETS:
        ref["data"] = options["data"]
    try:
        raw = translate({"reference": {k: v for k, v in ref.items() if k != "data"}}, "<import>")
    except SpecError:  # odd training options must not block an import: keep what shapes the model
        raw = translate({"reference": {k: ref[k] for k in ("dim", "dim_word", "encoder") if k in ref}}, "<import>")
    raw["name"] = name
    if "data" in ref:  # resolved from VSEKIT_DATA_ROOT when the spec is used
        raw["reference"] = {"data": ref["data"]}
    return raw


class _Shape(NamedTuple):
    """What the reference's options and parameters say the model is."""

    encoder: str
    dim: int
    dim_word: int
    n_words: int
    dim_image: int


def _sidecars_present(path: str | Path) -> tuple[Path, Path, Path]:
    npz, opt_path, dict_path = sidecar_paths(path)
    for p in (npz, opt_path, dict_path):
        if not p.is_file():
            raise CheckpointError(f"{p}: no such file (a reference model is {npz.name} plus {opt_path.name} "
                                  f"and {dict_path.name} beside it)")
    return npz, opt_path, dict_path


def _shape(options: dict[str, Any], params: dict[str, np.ndarray], npz: Path, opt_path: Path) -> _Shape:
    dim = _int_option(options, "dim", opt_path)
    dim_word = _int_option(options, "dim_word", opt_path)
    n_words = _int_option(options, "n_words", opt_path)
    if not len(SPECIALS) <= n_words <= MAX_WORDS:  # bounded before the vocabulary of n_words is made
        raise CheckpointError(f"{opt_path}: n_words must be in [2, {MAX_WORDS:,}] (<eos>, UNK, words), got {n_words}")
    encoder = options.get("encoder", "gru")
    if encoder not in ("gru", "bow"):
        raise CheckpointError(f"{opt_path}: option 'encoder' must be 'gru' or 'bow', got {encoder!r}")
    if "ff_image_W" not in params:
        raise CheckpointError(f"{npz}: parameter 'ff_image_W' is missing (has: {', '.join(sorted(params))})")
    dim_image = int(params["ff_image_W"].shape[0]) if params["ff_image_W"].ndim == 2 else 0
    if "dim_image" in options:
        dim_image = _int_option(options, "dim_image", opt_path)
    if encoder == "bow" and dim_word != dim:
        raise CheckpointError(f"{opt_path}: encoder 'bow' needs dim_word == dim, got {dim_word} and {dim}")
    return _Shape(encoder, dim, dim_word, n_words, dim_image)


def _empty_model(spec_dict: dict[str, Any], words: list[str], shape: _Shape, npz: Path, opt_path: Path) -> JointModel:
    from vsekit import spec as spec_mod

    model_spec = spec_dict["model"]
    try:
        senc = spec_mod.build_component("sentence_encoder", model_spec["sentence_encoder"], "model.sentence_encoder",
                                        npz.parent)
        ienc = spec_mod.build_component("image_encoder", model_spec["image_encoder"], "model.image_encoder", npz.parent)
    except spec_mod.SpecProblems as exc:
        raise SpecError("\n".join(f"{opt_path}: [{p}] {m}" for p, m in exc.problems)) from None
    return JointModel.build(senc, ienc, Vocab(words), shape.dim, shape.dim_image, append_eos=True,
                            n_words=shape.n_words, tokenizer="split", source=str(opt_path))


@torch.no_grad()
def _copy_params(model: JointModel, params: dict[str, np.ndarray], shape: _Shape, npz: Path) -> None:
    """The reference's arrays into the model's tensors (the table in the module docstring)."""
    dim, dim_word = shape.dim, shape.dim_word
    model.sentence_encoder.embed.weight.copy_(_expect(params, "Wemb", (shape.n_words, dim_word), npz,
                                                      "n_words x dim_word"))
    model.image_encoder.fc.weight.copy_(_expect(params, "ff_image_W", (shape.dim_image, dim), npz,
                                                "dim_image x dim").t())
    model.image_encoder.fc.bias.copy_(_expect(params, "ff_image_b", (dim,), npz, "dim"))
    if shape.encoder != "gru":
        return
    W = _expect(params, "encoder_W", (dim_word, 2 * dim), npz, "dim_word x 2*dim: [reset | update]")
    b = _expect(params, "encoder_b", (2 * dim,), npz, "2*dim: [reset | update]")
    U = _expect(params, "encoder_U", (dim, 2 * dim), npz, "dim x 2*dim: [reset | update]")
    Wx = _expect(params, "encoder_Wx", (dim_word, dim), npz, "dim_word x dim")
    bx = _expect(params, "encoder_bx", (dim,), npz, "dim")
    Ux = _expect(params, "encoder_Ux", (dim, dim), npz, "dim x dim")
    rnn = model.sentence_encoder.rnn
    # PyTorch rows: [reset; update(z); new]; reference columns: [reset | update], then Wx.
    rnn.weight_ih_l0.copy_(torch.cat([W.t(), Wx.t()], dim=0))
    rnn.bias_ih_l0.copy_(torch.cat([b, bx]))
    rnn.weight_hh_l0.copy_(torch.cat([U.t(), Ux.t()], dim=0))
    rnn.bias_hh_l0.zero_()


def load_legacy(path: str | Path) -> JointModel:
    """A :class:`JointModel` (on the CPU, in eval mode) from the reference's ``PATH.npz`` and its two pickles.

    Raises:
        CheckpointError: a missing, unreadable or refused file, or options and parameters that do not fit.
        SpecError: options that name no buildable model.
    """
    npz, opt_path, dict_path = _sidecars_present(path)
    options = read_options(opt_path)
    params = _read_params(npz)
    shape = _shape(options, params, npz, opt_path)
    words = read_dictionary(dict_path, shape.n_words)
    spec_dict = legacy_spec(options, name=npz.name[: -len(".npz")] if npz.name.endswith(".npz") else npz.stem)
    model = _empty_model(spec_dict, words, shape, npz, opt_path)
    _copy_params(model, params, shape, npz)
    used = {"Wemb", "ff_image_W", "ff_image_b"} | (set(GRU_PARAMS) if shape.encoder == "gru" else set())
    unused = sorted(set(params) - used)
    if unused:
        log.info("%s: ignored arrays not used by the %s model: %s", npz, shape.encoder, ", ".join(unused))
    model.eval()
    model.set_origin(spec=spec_dict, reference_options=options)
    return model


def import_legacy(path: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Convert a reference model to a vsekit checkpoint folder; returns the checkpoint's JSON path.

    ``vsekit.load_model(out_dir)`` then loads it without reading any pickle.
    """
    from vsekit import checkpoint

    out_dir = Path(out_dir)
    if (out_dir / "best.json").exists() and not force:
        raise CheckpointError(f"{out_dir}: already holds a checkpoint (best.json); pass --force to replace it")
    model = load_legacy(path)
    options = json.loads(json.dumps(model.reference_options, default=repr))
    return checkpoint.save(out_dir, "best", model, model.spec,
                           extra={"imported_from": str(Path(path).resolve()), "reference_options": options})


def _reference_options(model: JointModel, encoder: str, dim_word: int, n_words: int, saveto: str) -> dict[str, Any]:
    """The options dict: the reference's defaults, overridden by what the model's spec records."""
    opts = dict(REFERENCE_DEFAULTS)
    spec = getattr(model, "spec", None)
    spec = spec if isinstance(spec, dict) else {}
    ref = getattr(model, "reference_options", None) or {}
    opts.update({k: v for k, v in ref.items() if k in REFERENCE_DEFAULTS})
    train, loss = spec.get("train") or {}, spec.get("loss") or {}
    if not ref:
        for ref_key, key in (("max_epochs", "max_epochs"), ("dispFreq", "disp_freq"), ("grad_clip", "grad_clip"),
                             ("maxlen_w", "maxlen_w"), ("batch_size", "batch_size"), ("validFreq", "valid_freq"),
                             ("lrate", "lr")):
            if key in train:
                opts[ref_key] = train[key]
        if "weight_decay" in train:
            opts["decay_c"] = train["weight_decay"] / 2.0
        if loss.get("type") == "contrastive" and "margin" in loss:
            opts["margin"] = loss["margin"]
    for data in ((spec.get("reference") or {}).get("data"), (spec.get("data") or {}).get("name")):
        if data in PRESETS:
            opts["data"] = data
            break
    opts.update(dim=model.dim, dim_word=dim_word, dim_image=model.dim_image, encoder=encoder, n_words=n_words,
                saveto=saveto, reload_=False, optimizer="adam")
    return opts


def _model_of(model_or_path: JointModel | str | Path, trust_code: bool = False) -> JointModel:
    """The model itself, or the one at a path: a reference ``.npz`` or a vsekit run folder / checkpoint."""
    if isinstance(model_or_path, JointModel):
        return model_or_path
    if str(model_or_path).endswith(".npz"):
        return load_legacy(model_or_path)
    from vsekit import checkpoint

    return checkpoint.load(model_or_path, trust_code=trust_code)[0]


def _gru_params(model: JointModel) -> tuple[int, dict[str, np.ndarray]]:
    """(dim_word, the reference's encoder_* arrays) of a one-layer, one-direction GRU without recurrent biases."""
    senc = model.sentence_encoder
    cfg, rnn, d = senc.config, senc.rnn, model.dim
    if cfg.layers != 1 or cfg.bidirectional:
        raise CheckpointError(f"cannot export: the reference's GRU has one layer and one direction, this one has "
                              f"{cfg.layers} layer(s){' and is bidirectional' if cfg.bidirectional else ''}")
    if rnn.bias_hh_l0.detach().abs().max().item() != 0.0:
        raise CheckpointError("cannot export: this GRU has non-zero recurrent biases (bias_hh), which the "
                              "reference cannot represent; only models imported from the reference (or trained "
                              "with bias_hh fixed at zero) export")
    w_ih, w_hh = rnn.weight_ih_l0.detach().cpu().float(), rnn.weight_hh_l0.detach().cpu().float()
    b_ih = rnn.bias_ih_l0.detach().cpu().float()
    return cfg.dim_word, dict(
        encoder_W=w_ih[: 2 * d].t().numpy(), encoder_b=b_ih[: 2 * d].numpy(),
        encoder_U=w_hh[: 2 * d].t().numpy(), encoder_Wx=w_ih[2 * d:].t().numpy(),
        encoder_bx=b_ih[2 * d:].numpy(), encoder_Ux=w_hh[2 * d:].t().numpy(),
    )


def _reference_params(model: JointModel, n_words: int) -> tuple[str, int, dict[str, np.ndarray]]:
    """(encoder name, dim_word, every reference array as float32) of a model the reference can represent."""
    from vsekit.image.linear import LinearImageEncoder
    from vsekit.text.bow import BoWEncoder
    from vsekit.text.gru import GRUEncoder

    senc, ienc = model.sentence_encoder, model.image_encoder
    if type(ienc) is not LinearImageEncoder:
        raise CheckpointError(f"cannot export: the reference has only the linear image encoder, this model has "
                              f"{type(ienc).__name__}")
    emb = senc.embed.weight.detach().cpu().float() if hasattr(senc, "embed") else None
    params: dict[str, np.ndarray] = {}
    if type(senc) is GRUEncoder:
        dim_word, gru = _gru_params(model)
        encoder = "gru"
        params.update(gru)
    elif type(senc) is BoWEncoder:
        encoder, dim_word = "bow", model.dim
    else:
        raise CheckpointError(f"cannot export: the reference has the gru and bow sentence encoders, this model has "
                              f"{type(senc).__name__}")
    params["Wemb"] = emb[:n_words].numpy()
    params["ff_image_W"] = ienc.fc.weight.detach().cpu().float().t().numpy()
    params["ff_image_b"] = ienc.fc.bias.detach().cpu().float().numpy()
    return encoder, dim_word, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in params.items()}


def export_legacy(model_or_path: JointModel | str | Path, out_path: str | Path, *, trust_code: bool = False) -> Path:
    """Write ``OUT.npz``, ``OUT.npz.pkl`` and ``OUT.npz.dictionary.pkl`` in the reference's layout; returns ``OUT.npz``.

    ``model_or_path``: a model, or the path of a run folder, checkpoint or reference ``.npz``.
    GRU models export only when the GRU is one layer, one direction and has
    no recurrent biases (the reference has none); ``bow`` models always do.

    Raises:
        CheckpointError: ``out_path`` does not end in ``.npz``, or the reference cannot represent the model.
    """
    from vsekit.io import atomic_write, atomic_write_bytes

    model = _model_of(model_or_path, trust_code)
    out = Path(out_path)
    if out.suffix != ".npz":
        raise CheckpointError(f"{out}: the reference's model files are named PATH.npz; give a path ending in .npz")
    n_words = min(len(model.vocab), model.n_words or len(model.vocab))
    encoder, dim_word, params = _reference_params(model, n_words)
    if not model.append_eos or model.tokenizer != "split":
        log.warning("exporting a model trained without the reference's encode-time conventions (an <eos> step after "
                    "each caption, whitespace tokenization): the reference code will encode captions differently")
    worddict = {"<eos>": EOS, "UNK": UNK}
    for i, w in enumerate(model.vocab.words[:n_words]):
        if i >= len(SPECIALS) and not _GAP_RE.fullmatch(w):
            worddict[w] = i
    options = _reference_options(model, encoder, dim_word, n_words, str(out))
    npz, opt_path, dict_path = sidecar_paths(out)

    def write_npz(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **params)

    atomic_write(npz, write_npz)
    atomic_write_bytes(opt_path, pickle.dumps(options, protocol=2))
    atomic_write_bytes(dict_path, pickle.dumps(worddict, protocol=2))
    return npz
