"""The reference release's model files: read them safely, import them, export to them.

A reference model saved as ``PATH.npz`` is three files:

- ``PATH.npz``: a numpy ``savez`` archive of the parameters, by name;
- ``PATH.npz.pkl``: a Python 2 pickle of the options dict (``dim``,
  ``dim_word``, ``dim_image``, ``encoder``, ``n_words``, ``margin``, ...);
- ``PATH.npz.dictionary.pkl``: a Python 2 pickle of the word -> index mapping,
  a ``collections.OrderedDict`` (protocol 0, as the reference's ``train.py``
  wrote it with ``pkl.dump``).

Pickles are programs. :func:`read_pickle` runs none of them: it reads with
Python's pure-Python unpickler given an opcode table that holds only the
opcodes building dicts, lists, tuples, strings, numbers, booleans and
``None``; any other opcode (``BUILD``, ``INST``, ``OBJ``, ``NEWOBJ``,
extensions, persistent ids, ...) is refused before it runs. The one
construction Python 2.7 needs for the dictionary, ``GLOBAL collections
OrderedDict`` then ``REDUCE`` of a list of ``[key, value]`` pairs, is run by
vsekit's own code: the global pushes a marker (every other global is
refused), and REDUCE accepts only that marker and builds the OrderedDict from
the checked pairs, so nothing the file names is ever imported or called. The
file size, opcode count, object count, nesting depth, integer size and dict
key types are bounded (``MAX_PICKLE_*``). Python 2 byte strings are decoded
as UTF-8, or Latin-1 where that fails.

Why the opcode table rather than a ``pickle.Unpickler`` subclass whose
``find_class`` allows only OrderedDict: that subclass would still run every
opcode of the C unpickler (``BUILD``, ``NEWOBJ``, ``REDUCE`` of the real class
with any arguments), could not count work, and would depend on ``find_class``
alone; here an opcode that is not listed cannot run at all, the one allowed
global is never the real object, and every opcode is counted.

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

import collections
import io
import json
import logging
import pickle
import pickletools
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vsekit.data.vocab import EOS, SPECIALS, UNK, Vocab
from vsekit.errors import CheckpointError, SpecError
from vsekit.model import JointModel
from vsekit.data.presets import PRESETS
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


# --------------------------------------------------------------------------
# restricted unpickling

#: opcodes that only push or arrange plain data, run as Python's pure-Python unpickler runs them.
SAFE_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP",
    "NONE", "NEWTRUE", "NEWFALSE",
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
    "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    "EMPTY_LIST", "APPEND", "APPENDS", "LIST",
    "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS",
    "PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET", "MEMOIZE",
})
#: opcodes run by vsekit's own code: naming a global (answered by a marker, never by the object the file
#: names) and REDUCE (accepted only on that marker, building an OrderedDict from checked pairs).
GUARDED_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "REDUCE"})

#: the only global a pickle may name, and only to call it (REDUCE) with no argument or a list of pairs:
#: what Python 2.7 writes for ``collections.OrderedDict`` (and Python 3, which then adds SETITEMS).
ORDERED_DICT_GLOBAL = ("collections", "OrderedDict")

# Limits on the work and memory one pickle may take. A word dictionary of 50K words (more than the
# reference's COCO vocabulary) is ~2 MB, 0.45M opcodes and 0.1M objects as Python 2 writes it, and reads
# in about a second.
#: largest pickle file read, in bytes
MAX_PICKLE_BYTES = 64 * 2**20
#: most opcodes run, plus one per pair an OrderedDict is built from (a memoized list may be reused)
MAX_PICKLE_OPCODES = 2_000_000
#: most objects (containers, strings, numbers) in the result, a shared one counted at every place it appears
MAX_PICKLE_OBJECTS = 1_000_000
#: deepest nesting of containers in the result
MAX_PICKLE_DEPTH = 100
#: integers in the result lie in [-MAX_PICKLE_INT, MAX_PICKLE_INT)
MAX_PICKLE_INT = 2**63
#: memo indices (PUT) lie below this, as the binary opcodes' do
MAX_MEMO_INDEX = 2**32
#: integer dictionary keys lie within +-this: Python hashes them to themselves, so keys cannot be chosen to
#: collide (floats, tuples and larger ints can be, making each insertion scan all the others)
_MAX_INT_KEY = 2**60


class _Refused(Exception):
    pass


class _OrderedDictMarker:
    """What ``GLOBAL collections OrderedDict`` pushes: a marker, not the class; only REDUCE accepts it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<collections.OrderedDict, not called>"


_ORDERED_DICT = _OrderedDictMarker()


def _show(text: str, limit: int = 80) -> str:
    """``text`` as it may appear in a one-line message (non-printable characters escaped, cut at ``limit``)."""
    cut = text[:limit] + ("..." if len(text) > limit else "")
    return cut if cut.isprintable() else ascii(cut)


def _check_key(key: Any) -> None:
    if isinstance(key, (str, bytes)) or key is None:
        return
    if isinstance(key, int) and -_MAX_INT_KEY <= key <= _MAX_INT_KEY:
        return
    raise _Refused(f"a dict key of type {type(key).__name__} (keys are strings, None or small integers)")


class _RefusingDispatch(dict):
    """The unpickler's opcode table; a missing opcode is refused instead of run."""

    def __missing__(self, code: int) -> Any:
        op = pickletools.code2op.get(chr(code))
        raise _Refused(f"opcode {op.name}" if op else f"unknown opcode byte 0x{code:02x}")


def _counted(fn: Any) -> Any:
    def run(self: _DataOnlyUnpickler) -> None:
        self.charge(1)
        fn(self)

    return run


def _load_put(self: _DataOnlyUnpickler) -> None:
    line = self.readline()[:-1]
    if not line.isdigit() or len(line) > 10 or int(line) >= MAX_MEMO_INDEX:
        raise _Refused(f"opcode PUT with index {_show(line.decode('latin-1'))} (memo indices are below 2**32)")
    self.memo[int(line)] = self.stack[-1]


def _load_dict(self: _DataOnlyUnpickler) -> None:
    items = self.pop_mark()
    if len(items) % 2:
        raise pickle.UnpicklingError("DICT with an odd number of items")
    for key in items[::2]:
        _check_key(key)
    self.append({items[i]: items[i + 1] for i in range(0, len(items), 2)})


def _load_setitem(self: _DataOnlyUnpickler) -> None:
    value, key = self.stack.pop(), self.stack.pop()
    _check_key(key)
    self.stack[-1][key] = value


def _load_setitems(self: _DataOnlyUnpickler) -> None:
    items = self.pop_mark()
    if len(items) % 2:
        raise pickle.UnpicklingError("SETITEMS with an odd number of items")
    target = self.stack[-1]
    for i in range(0, len(items), 2):
        _check_key(items[i])
        target[items[i]] = items[i + 1]


def _load_reduce(self: _DataOnlyUnpickler) -> None:
    """REDUCE, accepted only as ``OrderedDict()`` or ``OrderedDict([[key, value], ...])``; nothing is called."""
    args = self.stack.pop()
    func = self.stack[-1]
    if func is not _ORDERED_DICT:
        raise _Refused(f"opcode REDUCE on a {type(func).__name__} (only collections.OrderedDict is built)")
    if type(args) is not tuple or len(args) > 1:
        raise _Refused("opcode REDUCE: collections.OrderedDict with arguments other than one list of pairs")
    pairs = args[0] if args else []
    if type(pairs) not in (list, tuple):
        raise _Refused(f"opcode REDUCE: collections.OrderedDict of a {type(pairs).__name__}, not a list of pairs")
    self.charge(len(pairs))
    built: collections.OrderedDict[Any, Any] = collections.OrderedDict()
    for pair in pairs:
        if type(pair) not in (list, tuple) or len(pair) != 2:
            raise _Refused("opcode REDUCE: collections.OrderedDict of something other than [key, value] pairs")
        _check_key(pair[0])
        built[pair[0]] = pair[1]
    self.stack[-1] = built


class _DataOnlyUnpickler(pickle._Unpickler):
    """The pure-Python unpickler with only plain-data opcodes in its table, plus one OrderedDict construction.

    An opcode outside :data:`SAFE_OPCODES` and :data:`GUARDED_OPCODES` is
    refused before it runs. :meth:`find_class` refuses every global but
    ``collections.OrderedDict``, for which it returns a marker; REDUCE
    accepts only that marker and builds the OrderedDict itself, so nothing a
    file names is ever looked up as code or called. Every opcode is counted
    against :data:`MAX_PICKLE_OPCODES`.
    """

    dispatch = _RefusingDispatch({
        code: _counted(fn) for code, fn in pickle._Unpickler.dispatch.items()
        if chr(code) in pickletools.code2op
        and pickletools.code2op[chr(code)].name in SAFE_OPCODES | {"GLOBAL", "STACK_GLOBAL"}
    })
    dispatch.update({
        pickle.PUT[0]: _counted(_load_put), pickle.DICT[0]: _counted(_load_dict),
        pickle.SETITEM[0]: _counted(_load_setitem), pickle.SETITEMS[0]: _counted(_load_setitems),
        pickle.REDUCE[0]: _counted(_load_reduce),
    })

    work = 0

    def charge(self, n: int) -> None:
        self.work += n
        if self.work > MAX_PICKLE_OPCODES:
            raise _Refused(f"more than {MAX_PICKLE_OPCODES} opcodes and pairs")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ORDERED_DICT_GLOBAL:
            return _ORDERED_DICT
        raise _Refused(f"global {_show(module + '.' + name)}")

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent id")


class _Decoder:
    """Python 2 byte strings -> str (UTF-8, else Latin-1), as a tree of fresh containers, within the limits."""

    def __init__(self) -> None:
        self.objects = 0

    def __call__(self, obj: Any, depth: int = 0) -> Any:
        self.objects += 1
        if self.objects > MAX_PICKLE_OBJECTS:
            raise _Refused(f"more than {MAX_PICKLE_OBJECTS} objects (shared ones counted at every use)")
        if depth > MAX_PICKLE_DEPTH:
            raise _Refused(f"containers nested deeper than {MAX_PICKLE_DEPTH} (or a container holding itself)")
        if isinstance(obj, bytes):
            try:
                return obj.decode("utf-8")
            except UnicodeDecodeError:
                return obj.decode("latin-1")
        if isinstance(obj, bool) or obj is None or isinstance(obj, (str, float)):
            return obj
        if isinstance(obj, int):
            if not -MAX_PICKLE_INT <= obj < MAX_PICKLE_INT:
                raise _Refused("an integer beyond 64 bits")
            return obj
        if isinstance(obj, list):
            return [self(x, depth + 1) for x in obj]
        if isinstance(obj, tuple):
            return tuple(self(x, depth + 1) for x in obj)
        if isinstance(obj, dict):  # dict or OrderedDict: keep the type and the order
            out = type(obj)()
            for k, v in obj.items():
                key = self(k, depth + 1)
                if key in out:
                    raise _Refused(f"the dict key {_show(repr(key))} appears twice (as a byte and a text string)")
                out[key] = self(v, depth + 1)
            return out
        if obj is _ORDERED_DICT:
            raise _Refused("global collections.OrderedDict left uncalled")
        raise _Refused(f"an object of type {type(obj).__name__}")  # unreachable: the opcodes build nothing else


def read_pickle(path: str | Path) -> Any:
    """Read a Python 2 or 3 pickle that holds only plain data; refuse anything else.

    Reads protocols 0-5 as far as they use the opcodes of
    :data:`SAFE_OPCODES` (dicts, lists, tuples, byte and text strings,
    integers, floats, booleans, ``None``) plus one construction,
    ``collections.OrderedDict`` of a list of ``[key, value]`` pairs, as
    Python 2.7 writes it (and Python 3's ``OrderedDict()`` then SETITEMS).
    Byte strings come back as ``str`` (UTF-8, else Latin-1); an OrderedDict
    stays one. Dict keys must be strings, ``None`` or integers within
    ``+-2**60``. The work is bounded by :data:`MAX_PICKLE_BYTES`,
    :data:`MAX_PICKLE_OPCODES`, :data:`MAX_PICKLE_OBJECTS`,
    :data:`MAX_PICKLE_DEPTH` and :data:`MAX_PICKLE_INT`.

    Raises :class:`CheckpointError` (one line naming the file and the refused
    global, opcode or limit) when the file is missing, unreadable, too large,
    damaged, or would look up or call anything else.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_PICKLE_BYTES:
            raise CheckpointError(f"{path}: refused: the pickle is {size} bytes, more than the "
                                  f"{MAX_PICKLE_BYTES} read (MAX_PICKLE_BYTES)")
        with open(path, "rb") as fh:
            data = fh.read(MAX_PICKLE_BYTES + 1)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc}") from None
    if len(data) > MAX_PICKLE_BYTES:  # grew after stat, or a special file
        raise CheckpointError(f"{path}: refused: the pickle is more than {MAX_PICKLE_BYTES} bytes (MAX_PICKLE_BYTES)")
    try:
        obj = _DataOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
        return _Decoder()(obj)
    except _Refused as exc:
        raise CheckpointError(
            f"{path}: refused: {exc}; only plain dicts, lists, tuples, strings, numbers, booleans, None and "
            f"collections.OrderedDict of [key, value] pairs are read, and nothing is called"
        ) from None
    except RecursionError:  # not expected: the unpickler is iterative and the decoder stops at MAX_PICKLE_DEPTH
        raise CheckpointError(f"{path}: refused: the pickle nests too deeply") from None
    except MemoryError:
        raise CheckpointError(f"{path}: refused: the pickle needs more memory than is free") from None
    except Exception as exc:  # only data was being built: any other failure means a damaged file
        raise CheckpointError(f"{path}: not a readable pickle: {type(exc).__name__}: "
                              f"{_show(str(exc), 200)}") from None


# --------------------------------------------------------------------------
# the three files


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


def load_legacy(path: str | Path) -> JointModel:
    """A :class:`JointModel` from the reference's ``PATH.npz`` and its two pickles."""
    from vsekit import spec as spec_mod

    npz, opt_path, dict_path = sidecar_paths(path)
    for p in (npz, opt_path, dict_path):
        if not p.is_file():
            raise CheckpointError(f"{p}: no such file (a reference model is {npz.name} plus {opt_path.name} "
                                  f"and {dict_path.name} beside it)")
    options = read_options(opt_path)
    params = _read_params(npz)
    dim = _int_option(options, "dim", opt_path)
    dim_word = _int_option(options, "dim_word", opt_path)
    n_words = _int_option(options, "n_words", opt_path)
    if n_words < len(SPECIALS):
        raise CheckpointError(f"{opt_path}: n_words must be at least 2 (<eos> and UNK), got {n_words}")
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
    words = read_dictionary(dict_path, n_words)

    spec_dict = legacy_spec(options, name=npz.name[: -len(".npz")] if npz.name.endswith(".npz") else npz.stem)
    model_spec = spec_dict["model"]
    try:
        senc = spec_mod.build_component("sentence_encoder", model_spec["sentence_encoder"], "model.sentence_encoder",
                                        npz.parent)
        ienc = spec_mod.build_component("image_encoder", model_spec["image_encoder"], "model.image_encoder", npz.parent)
    except spec_mod._SpecProblems as exc:
        raise SpecError("\n".join(f"{opt_path}: [{p}] {m}" for p, m in exc.problems)) from None
    model = JointModel.build(senc, ienc, Vocab(words), dim, dim_image, append_eos=True, n_words=n_words,
                             tokenizer="split")

    wemb = _expect(params, "Wemb", (n_words, dim_word), npz, "n_words x dim_word")
    img_w = _expect(params, "ff_image_W", (dim_image, dim), npz, "dim_image x dim")
    img_b = _expect(params, "ff_image_b", (dim,), npz, "dim")
    with torch.no_grad():
        model.sentence_encoder.embed.weight.copy_(wemb)
        model.image_encoder.fc.weight.copy_(img_w.t())
        model.image_encoder.fc.bias.copy_(img_b)
        if encoder == "gru":
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
    unused = sorted(set(params) - {"Wemb", "ff_image_W", "ff_image_b"} - (set(GRU_PARAMS) if encoder == "gru" else set()))
    if unused:
        log.info("%s: ignored arrays not used by the %s model: %s", npz, encoder, ", ".join(unused))
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


# --------------------------------------------------------------------------
# export


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


def export_legacy(model_or_path: JointModel | str | Path, out_path: str | Path) -> Path:
    """Write ``OUT.npz``, ``OUT.npz.pkl`` and ``OUT.npz.dictionary.pkl`` in the reference's layout.

    GRU models export only when the GRU is one layer, one direction and has
    no recurrent biases (the reference has none); ``bow`` models always do.
    """
    from vsekit.image.linear import LinearImageEncoder
    from vsekit.io import atomic_write, atomic_write_bytes
    from vsekit.text.bow import BoWEncoder
    from vsekit.text.gru import GRUEncoder

    if isinstance(model_or_path, JointModel):
        model = model_or_path
    else:
        from vsekit.api import load_model

        model = load_model(model_or_path)
    out = Path(out_path)
    if out.suffix != ".npz":
        raise CheckpointError(f"{out}: the reference's model files are named PATH.npz; give a path ending in .npz")
    senc, ienc = model.sentence_encoder, model.image_encoder
    if type(ienc) is not LinearImageEncoder:
        raise CheckpointError(f"cannot export: the reference has only the linear image encoder, this model has "
                              f"{type(ienc).__name__}")
    emb = senc.embed.weight.detach().cpu().float() if hasattr(senc, "embed") else None
    n_words = min(len(model.vocab), model.n_words or len(model.vocab))
    params: dict[str, np.ndarray] = {}
    if type(senc) is GRUEncoder:
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
        encoder, dim_word = "gru", cfg.dim_word
        params.update(
            encoder_W=w_ih[: 2 * d].t().numpy(), encoder_b=b_ih[: 2 * d].numpy(),
            encoder_U=w_hh[: 2 * d].t().numpy(), encoder_Wx=w_ih[2 * d:].t().numpy(),
            encoder_bx=b_ih[2 * d:].numpy(), encoder_Ux=w_hh[2 * d:].t().numpy(),
        )
    elif type(senc) is BoWEncoder:
        encoder, dim_word = "bow", model.dim
    else:
        raise CheckpointError(f"cannot export: the reference has the gru and bow sentence encoders, this model has "
                              f"{type(senc).__name__}")
    if not model.append_eos or model.tokenizer != "split":
        log.warning("exporting a model trained without the reference's encode-time conventions (an <eos> step after "
                    "each caption, whitespace tokenization): the reference code will encode captions differently")
    params["Wemb"] = emb[:n_words].numpy()
    fc = ienc.fc
    params["ff_image_W"] = fc.weight.detach().cpu().float().t().numpy()
    params["ff_image_b"] = fc.bias.detach().cpu().float().numpy()
    params = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in params.items()}

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
