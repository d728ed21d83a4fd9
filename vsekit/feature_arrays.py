"""``.npy`` feature arrays: the header checked against the file size before anything is allocated, bounded
loading, and the value checks (NaN, inf, float64 beyond float32's range, repeated rows). Also importable from
:mod:`vsekit.io`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The (shape, dtype) a ``.npy`` file declares, read from its header alone; nothing else is read.

    Raises:
        DataError: no such file, a ``.npz`` archive (np.savez) or other file that is not a ``.npy`` array, a
            header that cannot be read, an object dtype (pickles), or a file size that does not match the shape
            and dtype the header declares (truncated, or bytes appended).
        OSError: the file cannot be opened (a folder, no permission).
    """
    import numpy as np

    from vsekit.errors import DataError

    try:
        with open(path, "rb") as fh:
            shape, dtype, offset = _read_npy_header(fh, path)
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    if dtype.hasobject:
        raise DataError(f"{path}: not a readable .npy array: it holds Python objects (dtype {dtype}), which "
                        f"vsekit does not unpickle; expected floating-point features")
    expected = offset + int(np.prod(shape, dtype=object)) * dtype.itemsize
    if size != expected:
        raise DataError(f"{path}: its header declares shape {tuple(shape)} of {dtype} ({expected:,} bytes with the "
                        f"header), but the file holds {size:,} bytes (truncated or appended to?)")
    return tuple(shape), dtype


def npy_problem(path: Path) -> str | None:
    """What :func:`npy_header` refuses in the ``.npy`` file ``path`` (one line naming it), or None; for
    ``vsekit validate``, which reads headers only."""
    from vsekit.errors import DataError

    try:
        npy_header(path)
    except DataError as exc:
        return str(exc)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return None


def _read_npy_header(fh: Any, path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) from the open ``.npy`` file ``fh``; DataError naming ``path`` otherwise."""
    import numpy as np

    from vsekit.errors import DataError

    if fh.read(4) == b"PK\x03\x04":
        raise DataError(f"{path}: a .npz archive (np.savez), expected one .npy array (np.save)")
    fh.seek(0)
    try:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read(fh)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise DataError(f"{path}: not a readable .npy array: {exc}") from None
    return tuple(shape), dtype, fh.tell()


def load_feature_rows(path: Path, *, regions: bool = False) -> np.ndarray:
    """The ``(rows, dim)`` floating-point array in the ``.npy`` file ``path`` (dtype as stored, no pickles).

    With ``regions``, a 3-D ``(rows, K, dim)`` array (K region features per row) is accepted too and
    returned memory-mapped read-only (``np.memmap``: nothing is read until rows are indexed; a COCO
    train file is tens of GB); a 2-D array is read into memory as without ``regions``. The header is checked
    (:func:`npy_header`) before anything is allocated, and the values (:func:`check_feature_values`: NaN, inf,
    float64 beyond float32's range) before the array is returned (of a 3-D file only the range: the reader's
    split checks NaN and inf, in chunks).

    Raises:
        DataError: no such file, not a readable ``.npy`` array (a ``.npz`` archive, a size that does not match
            its header), not 2-D (or 3-D with ``regions``), not floating point, or bad values (the row named).
    """
    import numpy as np

    from vsekit.errors import DataError

    shape, dtype = npy_header(path)
    if len(shape) != 2 and not (regions and len(shape) == 3):
        shapes = "a 2-D (rows, dim) or 3-D (rows, regions, dim)" if regions else "a 2-D (rows, dim)"
        raise DataError(f"{path}: expected {shapes} feature array, got shape {shape}")
    if not np.issubdtype(dtype, np.floating):
        raise DataError(f"{path}: expected floating-point features, got dtype {dtype}")
    if len(shape) == 2:  # read whole into memory (a 3-D file is memory-mapped)
        from vsekit.limits import check_memory

        check_memory(int(np.prod(shape, dtype=object)) * dtype.itemsize, f"{path}: shape {shape} of {dtype}",
                     "use fewer rows per file")
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r" if regions else None)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array: {exc}") from None
    arr = np.array(arr) if arr.ndim == 2 and regions else arr
    check_feature_values(arr, str(path), finite=arr.ndim == 2)
    return arr


#: bytes of feature rows read at a time by the checks below (bounded memory for memory-mapped region files)
CHECK_CHUNK_BYTES = 64 * 2**20


def nonfinite_rows(images: np.ndarray) -> np.ndarray:
    """The indices (int64, ascending) of the rows of ``images`` (N, ...) holding a NaN or inf, read in chunks
    of about :data:`CHECK_CHUNK_BYTES` (a memory-mapped array is never read whole into memory)."""
    import numpy as np

    return _rows_where(images, lambda chunk: ~np.isfinite(chunk))


def too_large_rows(images: np.ndarray) -> np.ndarray:
    """The indices (int64, ascending) of the rows of ``images`` (N, ...) holding a finite value beyond
    :data:`vsekit.limits.MAX_FEATURE_ABS` (a float64 value beyond float32's range among them). Chunked as
    :func:`nonfinite_rows`."""
    import numpy as np

    from vsekit.limits import MAX_FEATURE_ABS

    if images.dtype.kind == "f" and float(np.finfo(images.dtype).max) <= MAX_FEATURE_ABS:
        return np.zeros(0, dtype=np.int64)  # float16 cannot hold such values
    return _rows_where(images, lambda chunk: np.isfinite(chunk) & (np.abs(chunk) > MAX_FEATURE_ABS))


def _rows_where(images: np.ndarray, bad: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    import numpy as np

    step = max(1, CHECK_CHUNK_BYTES // max(1, images[:1].nbytes))
    found = [np.zeros(0, dtype=np.int64)]
    for start in range(0, len(images), step):
        chunk = np.asarray(images[start : start + step])
        found.append(start + np.flatnonzero(bad(chunk.reshape(len(chunk), -1)).any(axis=1)))
    return np.concatenate(found).astype(np.int64)


def check_feature_values(feats: np.ndarray, source: str, *, finite: bool = True) -> None:
    """Refuse feature rows (N, ...) that hold NaN or inf (when ``finite``) or a value beyond
    :data:`vsekit.limits.MAX_FEATURE_ABS` (float32 arithmetic of the embedding would overflow to inf; a float64
    value beyond float32's range is one); ``source`` (the file) starts the message, which names the first bad
    row (0-based) and how many rows are bad.

    Raises:
        DataError: a bad row.
    """
    from vsekit.errors import DataError

    if finite and len(rows := nonfinite_rows(feats)):
        raise DataError(f"{source}: NaN or inf in {len(rows)} row(s) of features, first row {int(rows[0])} "
                        f"(0-based); features must be finite numbers")
    if len(rows := too_large_rows(feats)):
        from vsekit.limits import MAX_FEATURE_ABS

        raise DataError(f"{source}: values too large (|x| > {MAX_FEATURE_ABS:.0e}) in {len(rows)} row(s) of "
                        f"features, first row {int(rows[0])} (0-based); features of a CNN are small numbers, and "
                        f"vsekit computes in float32, where such values overflow to inf")


def check_finite_tensors(tensors: dict[str, Any], source: str) -> None:
    """Refuse a checkpoint's tensors (name -> torch tensor or numpy array) when one holds a NaN or inf value;
    ``source`` (the weights file) starts the message, which names the first such tensor.

    Raises:
        CheckpointError: a tensor with a NaN or inf value.
    """
    import numpy as np

    from vsekit.errors import CheckpointError

    bad = [name for name, t in tensors.items()
           if not (bool(t.isfinite().all()) if hasattr(t, "isfinite") else bool(np.isfinite(np.asarray(t)).all()))]
    if bad:
        raise CheckpointError(f"{source}: tensor {bad[0]!r} holds NaN or inf values ({len(bad)} tensor(s) do); "
                              f"the run diverged or the file is damaged")


def collapse_repeated_rows(feats: np.ndarray, k: int, path: Path, *, suffix: str = "") -> np.ndarray:
    """Every ``k``-th row of ``feats`` (rows, ...) whose rows ``k i .. k i + k - 1`` are copies of one image's
    row (one row per caption, ``k`` the reader's ``caps_per_image``); a strided view: a memory-mapped file is
    compared in chunks, never read whole. ``suffix`` ends the error messages.

    Raises:
        DataError: the row count is not a multiple of ``k``, or a group's rows differ.
    """
    import numpy as np

    from vsekit.errors import DataError

    n_rows = len(feats)
    if n_rows % k:
        raise DataError(f"{path}: {n_rows} rows (one per caption) is not a multiple of caps_per_image = {k}{suffix}")
    step = k * max(1, CHECK_CHUNK_BYTES // max(1, feats[:k].nbytes))
    for start in range(0, n_rows, step):
        grouped = np.asarray(feats[start : start + step]).reshape(-1, k, int(np.prod(feats.shape[1:])))
        if not np.array_equal(grouped, np.repeat(grouped[:, :1], k, axis=1)):
            raise DataError(
                f"{path}: {n_rows} rows for {n_rows} captions, but rows {k}i..{k}i+{k - 1} are not "
                f"copies of one image row (expected one row per image, or each image row repeated "
                f"caps_per_image = {k} times){suffix}"
            )
    return feats[::k]
