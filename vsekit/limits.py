"""Every resource limit vsekit puts on its input, in one place, and the bounded readers of JSON and TOML files.

What a file or a spec can make vsekit allocate is checked against these limits *before* the allocation, so
that bad input ends in one :class:`~vsekit.errors.VsekitError` line instead of an allocator crash, a
``RecursionError`` or a machine that swaps:

- JSON and TOML files vsekit reads (specs, checkpoint JSON, results, bank and cache records) are at most
  :data:`MAX_FILE_BYTES`; dataset annotation JSON (COCO, Karpathy's ``dataset_*.json``) at most
  :data:`MAX_DATA_FILE_BYTES`; both are nested at most :data:`MAX_DEPTH` levels (:func:`read_json`,
  :func:`read_toml`);
- a model's parameters, and a feature file read into memory, fit in half of this machine's memory
  (:func:`check_parameter_count`, :func:`check_memory`);
- a vocabulary holds at most :data:`MAX_WORDS` words, and a run asks for at most :data:`MAX_THREADS` threads;
- a seed is an integer in ``[0, 2**32)`` (:data:`SEED_RANGE`), the range every generator vsekit seeds
  (Python's, numpy's legacy and new ones, torch's) takes as it is.

A ``.npy`` header's shape must match its file's size (:func:`vsekit.io.npy_header`). This module imports only
the standard library and :mod:`vsekit.errors` (layer 0).
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from vsekit.errors import DataError, SpecError, VsekitError

__all__ = [
    "MAX_DATA_FILE_BYTES", "MAX_DEPTH", "MAX_FILE_BYTES", "MAX_THREADS", "MAX_WORDS", "SEED_RANGE",
    "UNCOUNTABLE", "check_memory", "check_parameter_count",
    "memory_bytes", "nesting_depth", "read_bounded", "read_json", "read_toml", "seed_problem",
]

#: the largest JSON or TOML file of vsekit's own (spec, checkpoint JSON, results, records) it reads, in bytes
MAX_FILE_BYTES = 64 * 2**20
#: the largest dataset annotation JSON (COCO captions, Karpathy's dataset_coco.json: ~150 MB) it reads, in bytes
MAX_DATA_FILE_BYTES = 2 * 2**30
#: the deepest nesting of arrays and tables in a JSON or TOML file (vsekit's own files use fewer than 10)
MAX_DEPTH = 100
#: the most words a vocabulary may hold (``[vocab] max_size``, a reference model's ``n_words``)
MAX_WORDS = 10**8
#: seeds are integers in [lo, hi): what random.seed, np.random.seed, np.random.default_rng and torch.manual_seed
#: all take unchanged
SEED_RANGE = (0, 2**32)
#: what :func:`vsekit.model.parameter_count` says of sizes that overflow torch's 64-bit sizes (2**63 parameters)
UNCOUNTABLE = 2**63
#: the most threads ``[train] threads`` may ask for (a huge count crashes the OpenMP runtime)
MAX_THREADS = 256
#: the largest feature value accepted (a CNN's are far smaller: EfficientNet-Lite0's stay below 100): the
#: squares of larger values, summed into an embedding's norm, overflow float32 (3.4e38)
MAX_FEATURE_ABS = 1e18
#: feature files up to this size are checked against the sha256 ``vsekit extract`` recorded beside them each time
#: a reader loads them (about 2 s a GiB); larger ones (region features of COCO) are not hashed on every read
VERIFY_MAX_BYTES = 2**30
#: the share of this machine's memory a model's parameters, or a feature file read into memory, may take (the
#: rest: gradients, Adam, activations, the other splits)
MEMORY_SHARE = 0.5


def seed_problem(value: Any) -> str | None:
    """What is wrong with ``value`` as a seed (an int in :data:`SEED_RANGE`), or None when it is fine."""
    lo, hi = SEED_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value < hi:
        return f"expected an integer in [{lo}, 2**32) = [0, {hi - 1}], got {value!r}"
    return None


def memory_bytes() -> int:
    """This machine's memory in bytes: the physical RAM, or the cgroup's (container's) limit when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return total


def check_parameter_count(n_params: int, where: str | None = None, hint: str = "lower [model] dim or dim_word",
                          at_least: bool = False) -> None:
    """Refuse a model of ``n_params`` float32 parameters that would take more than :data:`MEMORY_SHARE`
    of :func:`memory_bytes` (:func:`check_memory`). ``where`` (a file, a spec) starts the message;
    ``at_least``: ``n_params`` is a lower bound (``vsekit validate`` knows neither the vocabulary nor the feature
    width yet).

    Raises:
        SpecError: too many parameters; the message gives the count, the GiB it needs and has, and ``hint``.
    """
    count = f"{'at least ' if at_least else ''}{n_params:,} parameters ({n_params * 4 / 2**30:,.1f} GiB as " \
        f"float32)" if n_params < UNCOUNTABLE else "more parameters than torch can count (2**63)"
    check_memory(n_params * 4, f"{where + ': ' if where else ''}the model would have {count}", hint, SpecError)


def check_memory(n_bytes: int, what: str, hint: str, error: type[VsekitError] = DataError) -> None:
    """Refuse to allocate ``n_bytes`` when that is more than :data:`MEMORY_SHARE` of :func:`memory_bytes`;
    ``what`` starts the message (``PATH: shape (N, D) of float32``), ``hint`` ends it.

    Raises:
        error: too large: ``WHAT, more than half of this machine's X GiB of memory; HINT``.
    """
    have = memory_bytes()
    if n_bytes > MEMORY_SHARE * have:
        raise error(f"{what}, more than half of this machine's {have / 2**30:,.1f} GiB of memory; {hint}")


def read_bounded(path: str | Path, max_bytes: int = MAX_FILE_BYTES, error: type[VsekitError] = DataError) -> bytes:
    """The bytes of the file ``path``, refused before reading when larger than ``max_bytes``.

    Raises:
        error: the file is larger than ``max_bytes`` (its size and the limit named).
        OSError: the file cannot be read (missing, a folder, no permission): callers word these themselves.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        data = fh.read(max_bytes + 1)  # a pipe or special file reports no size: read one byte past the limit
    if max(size, len(data)) > max_bytes:
        raise error(f"{path}: {max(size, len(data)):,} bytes; vsekit reads files of at most {max_bytes:,} bytes "
                    f"here (vsekit.limits)")
    return data


def nesting_depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (a scalar: 0, ``[]``: 1, ``{"a": [1]}``: 2); no recursion."""
    depth, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (list, tuple, dict)):
            depth = max(depth, level)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return depth


def _parse(parse: Any, text: str, path: Path, invalid: str, error: type[VsekitError]) -> Any:
    too_deep = f"{path}: not read: arrays or tables nested more than {MAX_DEPTH} levels deep (vsekit.limits)"
    try:
        value = parse(text)
    except RecursionError:  # the parsers recurse: very deep nesting ends here, before the depth check below
        raise error(too_deep) from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise error(f"{path}: {invalid}: {exc}") from None
    if nesting_depth(value) > MAX_DEPTH:
        raise error(too_deep)
    return value


def _text(data: bytes, path: Path, error: type[VsekitError]) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{path}: line {line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_json(path: str | Path, error: type[VsekitError] = DataError, *, what: str = "JSON file",
              max_bytes: int = MAX_FILE_BYTES) -> Any:
    """The parsed JSON file ``path``: at most ``max_bytes`` bytes of UTF-8 text nested at most :data:`MAX_DEPTH`
    deep; ``what`` it is names it in the message for bad JSON (``PATH: not a readable WHAT: ...``).

    Raises:
        error: too large, not UTF-8, not valid JSON, or nested too deeply (one line naming ``path``).
        OSError: the file cannot be read (missing, a folder, no permission): callers word these themselves.
    """
    path = Path(path)
    text = _text(read_bounded(path, max_bytes, error), path, error)
    return _parse(json.loads, text, path, f"not a readable {what}", error)


def read_toml(path: str | Path, error: type[VsekitError] = SpecError, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """The parsed TOML file ``path`` (a dict): bounded as :func:`read_json` is.

    Raises:
        error: too large, not UTF-8, not valid TOML, or nested too deeply (one line naming ``path``).
        OSError: the file cannot be read: callers word these themselves.
    """
    path = Path(path)
    text = _text(read_bounded(path, max_bytes, error), path, error)
    return _parse(tomllib.loads, text, path, "not valid TOML", error)
