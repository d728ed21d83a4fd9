"""A pickle reader that runs no code: the reference release's Python 2 option and dictionary pickles.

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

Why the opcode table rather than a subclass of the C ``Unpickler`` whose
``find_class`` allows only OrderedDict: that subclass would still run every
opcode of the C unpickler (``BUILD``, ``NEWOBJ``, ``REDUCE`` of the real class
with any arguments), could not count work, and would depend on ``find_class``
alone; here an opcode that is not listed cannot run at all, the one allowed
global is never the real object, and every opcode is counted.
"""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
from pathlib import Path
from typing import Any

from vsekit.errors import CheckpointError

__all__ = [
    "GUARDED_OPCODES",
    "MAX_MEMO_INDEX",
    "MAX_PICKLE_BYTES",
    "MAX_PICKLE_DEPTH",
    "MAX_PICKLE_INT",
    "MAX_PICKLE_OBJECTS",
    "MAX_PICKLE_OPCODES",
    "SAFE_OPCODES",
    "read_pickle",
]


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
