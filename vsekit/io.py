"""Atomic file writes and checksums (nothing vsekit writes is ever half-written), data files committed with the
record naming their checksums (:func:`commit_parts`), the one file lock (:func:`file_lock`), and the one record
rule of line files. The ``.npy`` feature arrays live in :mod:`vsekit.feature_arrays` (re-exported here)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import filelock

#: suffix of a data file written but not yet renamed into place (see :func:`commit_parts`)
PENDING = ".pending"

_UMASK = os.umask(0)  # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` for a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _mode(path))  # mkstemp makes 0600; give the file the mode a plain open() would
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        code = os_error_number(exc)
        if code is not None:  # name the file meant, not the temporary one; an OSError of the writer's own type too
            raise OSError(code, os.strerror(code), str(path)) from exc
        raise
    _fsync_dir(path.parent)


#: what a writer that wraps the OS error in its own type says of it (safetensors: "... Os { code: 28, ...")
_OS_ERROR_TEXT = (("code: 28,", 28), ("code: 27,", 27), ("No space left on device", 28), ("File too large", 27))


def os_error_number(exc: BaseException) -> int | None:
    """The errno behind ``exc``: an OSError's own, or the full disk (ENOSPC) or file-size limit (EFBIG) that a
    writer (safetensors, torch) reports in its own exception's text; None for anything else."""
    if isinstance(exc, OSError):
        return exc.errno
    text = str(exc)
    return next((code for needle, code in _OS_ERROR_TEXT if needle in text), None)


def _mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777  # replacing a file keeps its mode
    except OSError:
        return 0o666 & ~_UMASK


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (where the OS lets a folder be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); missing folders are made."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` UTF-8 encoded to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 hex digest of the file ``path``, read ``chunk`` bytes at a time (``OSError`` if unreadable)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def pending_path(path: str | Path) -> Path:
    """``PATH.pending``: where :func:`commit_parts` writes ``path``'s new content before its commit point."""
    path = Path(path)
    return path.with_name(path.name + PENDING)


def commit_parts(record: str | Path, parts: dict[Path, Callable[[str], None]],
                 make_record: Callable[[dict[Path, str]], str]) -> None:
    """Replace data files and the record (a JSON text) naming their sha256 as one change.

    ``parts`` maps each data file to a ``write(tmp_path)`` function; ``make_record`` gets ``{data file: sha256
    hex}`` and returns the record's text. Steps: each part to ``PART.pending`` (atomically), the record
    (atomically: the commit point), then each pending file renamed over its part. A process stopped before the
    commit point leaves the old record with the old parts; stopped after it, the record names the pending files'
    digests and :func:`committed_part` finds them (and the next commit renames them first). Raises ``OSError``.
    """
    record = Path(record)
    _roll_forward(record, parts)
    digests = {}
    for path, write in parts.items():
        atomic_write(pending_path(path), write)
        digests[path] = sha256_file(pending_path(path))
    atomic_write_text(record, make_record(digests))
    for path in parts:
        os.replace(pending_path(path), path)
    _fsync_dir(record.parent)


def _roll_forward(record: Path, parts: dict[Path, Callable[[str], None]]) -> None:
    """Rename pending files the current record names (a commit stopped after its commit point) into place."""
    try:
        text = record.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    for path in parts:
        pending = pending_path(path)
        if pending.is_file() and f'"{sha256_file(pending)}"' in text:
            os.replace(pending, path)


def committed_part(path: str | Path, sha256: str) -> Path | None:
    """The file holding the data a record says has digest ``sha256``: ``path``, else ``PATH.pending`` (a
    :func:`commit_parts` stopped after its commit point), else None (missing, changed, or from another commit)."""
    path = Path(path)
    for candidate in (path, pending_path(path)):
        if candidate.is_file() and sha256_file(candidate) == sha256:
            return candidate
    return None


def file_lock(path: str | Path, timeout: float = -1, on_acquired: Callable[[int], None] | None = None
              ) -> filelock.BaseFileLock:
    """vsekit's one inter-process lock: a :class:`filelock.FileLock` on ``path`` (an OS lock, released when the
    process ends however it ends), left in place when released.

    ``timeout``: seconds to wait (-1: for ever; 0: fail at once); ``acquire`` raises ``filelock.Timeout`` after
    it. ``on_acquired(fd)`` is called with the lock file's descriptor once held. Where the platform has no OS
    lock, filelock's marker file is the lock, removed when released.
    """
    import filelock

    if issubclass(filelock.FileLock, filelock.SoftFileLock):  # the marker file is the lock: it has to go
        return filelock.FileLock(path, timeout=timeout)
    return filelock.FileLock(path, timeout=timeout, preserve_lock_file=True,
                             on_acquired=on_acquired)  # type: ignore[arg-type]


def lock_beside(path: str | Path) -> AbstractContextManager:
    """The blocking :func:`file_lock` that serialises writers of the file ``path``: ``.NAME.lock`` beside it (the
    folder is made if missing). ``with lock_beside(path):`` re-read, change, commit. In a folder this process
    cannot write (a read-only cache it only reads), a no-op: no lock file can be made there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        return nullcontext()
    return file_lock(path.with_name(f".{path.name}.lock"))


def sibling(record: str | Path, name: object, key: str, error: type[Exception] | None = None) -> Path:
    """The file ``name`` that the JSON file ``record`` names under ``key``: a bare file name in ``record``'s folder.

    Raises:
        ``error`` (default :class:`~vsekit.errors.DataError`): ``name`` is not a non-empty string, holds a
            ``/`` or ``\\``, is ``.`` or ``..``, or is absolute (a path could point outside the folder).
    """
    from vsekit.errors import DataError

    record = Path(record)
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or Path(name).is_absolute() or ":" in name[:2]:
        raise (error or DataError)(f"{record}: {key!r} must be a file name in the same folder (no '/', '..' or "
                                   f"absolute path), got {name!r}")
    return record.with_name(name)


#: The byte order mark: dropped at the start of a line file, refused anywhere else (see :func:`read_lines`).
BOM = "\ufeff"


def read_lines(path: str | Path, what: str = "line", *, allow_empty_file: bool = False) -> list[str]:
    """The records of a line-oriented text file (captions, ids, splits, vocabularies): vsekit's one rule.

    A record is a line ended by ``\\n`` (the last may lack it); one trailing
    ``\\r`` is stripped from each; a UTF-8 BOM (U+FEFF) at the very start of
    the file is dropped, and one anywhere else (two files joined together, an
    editor's slip) is refused with its line: it would silently become part of
    an id or a caption that then matches nothing. Trailing
    empty or whitespace-only lines are ignored; any other empty or
    whitespace-only record is refused, so record ``i`` is always line ``i + 1``
    and whatever is computed from the records lines up with the file. Other
    Unicode line breaks (``\\x0b``, ``\\u2028``, ...) are part of a record, not
    line ends. Records keep their inner and surrounding spaces.

    Returns a list of str, one per record, in file order.
    Raises :class:`~vsekit.errors.DataError` naming ``path`` (and the 1-based
    line, as ``sed -n Np`` counts: ``\\n`` ends a line) for a missing file,
    text that is not UTF-8, a BOM past the start, an empty ``what`` record, or
    a file without records (unless ``allow_empty_file``).
    """
    from vsekit.errors import DataError

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a text file of one {what} a line") from None
    try:
        text = data.decode("utf-8")  # split_records drops a leading BOM
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return split_records(text, str(path), what, allow_empty_file=allow_empty_file)


def split_records(text: str, source: str, what: str = "line", *, allow_empty_file: bool = False) -> list[str]:
    """:func:`read_lines`'s rule applied to text already read (a leading BOM dropped); ``source`` names it in errors.

    Returns a list of str, one per record. Raises :class:`~vsekit.errors.DataError` as :func:`read_lines`.
    """
    from vsekit.errors import DataError

    records = text.removeprefix(BOM).split("\n")
    if records[-1] == "":
        records.pop()  # the final "\n" ends the last record; it does not start another
    records = [r.removesuffix("\r") for r in records]
    while records and not records[-1].strip():
        records.pop()
    if not records:
        if allow_empty_file:
            return []
        raise DataError(f"{source}: empty file: expected one {what} a line")
    for i, r in enumerate(records):
        if not r.strip():
            raise DataError(f"{source}: line {i + 1}: empty {what} (every line up to the last must hold one, so that "
                            f"rows line up with lines)")
        if BOM in r:
            raise DataError(f"{source}: line {i + 1}: a byte order mark (U+FEFF) inside the file (expected one only "
                            f"at the very start; were two files joined?): remove it")
    return records


def record_text(records: Iterable[str], what: str, where: str, *, allow_empty: bool = False) -> str:
    """The text of a line file holding ``records`` (each ended by ``\\n``), which :func:`read_lines` reads
    back as the same records: the writers' half of the one rule. ``allow_empty``: empty records pass (a
    field of a CSV row may be empty; a line file's record may not).

    Raises:
        DataError: ``{where}: {what} N 'TEXT' contains a line break: ...`` (N 1-based), for a record holding
            ``\\n`` or ``\\r`` (it would become two lines or lose a character), a U+FEFF, or nothing but spaces.
    """
    from vsekit.errors import DataError

    out = []
    for i, r in enumerate(records, 1):
        why = _unwritable(r)
        if why and not (allow_empty and r == ""):
            raise DataError(f"{where}: {what} {i} {r[:60]!r} {why}: it cannot be written as one line of a line file")
        out.append(r + "\n")
    return "".join(out)


def _unwritable(record: str) -> str:
    if "\n" in record or "\r" in record:
        return "contains a line break"
    if BOM in record:
        return "contains a byte order mark (U+FEFF)"
    return "" if record.strip() else "is empty"


# the .npy feature arrays (vsekit.feature_arrays), importable from here as before
from vsekit.feature_arrays import (  # noqa: E402, F401
    CHECK_CHUNK_BYTES,
    check_feature_values,
    check_finite_tensors,
    collapse_repeated_rows,
    load_feature_rows,
    nonfinite_rows,
    npy_header,
    npy_problem,
    too_large_rows,
)
