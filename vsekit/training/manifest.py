"""A run folder's manifest, ``RUN/.vsekit-run``: the files vsekit wrote there, the only ones ``--force`` removes.

The manifest is JSON, ``{"format": "vsekit-run/1", "written": ["best.json", "seed0/", ...]}``: paths relative
to the run folder, ``/``-separated, a trailing ``/`` for a folder vsekit made (a seed's run folder,
``tensorboard/``). It is rewritten atomically each time a writer lists a file, before the file is written, so a
run stopped at any moment lists everything it left. A folder without a manifest was not made by vsekit (or by
a vsekit before 0.2.0) and is never cleared.

:func:`clear_listed` removes what the manifest lists and nothing else: it never follows a symbolic link (a
listed name that is a link loses the link, not its target), never goes through a linked or missing folder,
and removes a listed folder only once it is empty. Every writer into a run folder calls
:func:`record_written`: training (:mod:`vsekit.training.rundir`), ``vsekit eval`` (``eval_*.json``), the
report (``report/``) and banks (:meth:`vsekit.retrieval.banks.Bank.save`).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from vsekit.errors import CheckpointError, VsekitError
from vsekit.io import atomic_write_text
from vsekit.limits import read_json
from vsekit.training.lock import LOCK_NAME

MANIFEST_NAME = ".vsekit-run"
FORMAT = "vsekit-run/1"


def manifest_path(folder: str | Path) -> Path:
    """``folder/.vsekit-run``."""
    return Path(folder) / MANIFEST_NAME


def _safe_entry(entry: object) -> bool:
    """Whether a manifest entry is a plain relative path (no ``..``, no root, no NUL, no backslash), and not the
    manifest or the run lock themselves."""
    if not isinstance(entry, str) or not entry or "\0" in entry or "\\" in entry or entry.startswith("/"):
        return False
    parts = PurePosixPath(entry.rstrip("/")).parts
    return bool(parts) and not any(p in ("", ".", "..") for p in parts) and parts[0] not in (MANIFEST_NAME, LOCK_NAME)


def read_manifest(folder: str | Path) -> list[str] | None:
    """The entries of ``folder``'s manifest (relative paths, ``/`` at the end of folders); None when it has none.

    Raises:
        CheckpointError: the manifest is a link or a folder, unreadable, not ``vsekit-run/1`` JSON, or lists
            a path outside the folder (``..``, absolute).
    """
    path = manifest_path(folder)
    try:
        st = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: expected the run folder's manifest file, found a link or a folder; "
                              f"vsekit wrote none of it: move it away or choose another --out")
    try:
        data = read_json(path, CheckpointError, what="run folder manifest")  # bounded (vsekit.limits)
    except (OSError, CheckpointError) as exc:
        raise CheckpointError(f"{path}: unreadable run folder manifest ({exc}); refusing to touch the folder: "
                              f"move it away or choose another --out") from None
    written = data.get("written") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(written, list):
        raise CheckpointError(f"{path}: not a vsekit run folder manifest (expected JSON with \"format\": "
                              f"{FORMAT!r} and a \"written\" list); refusing to touch the folder")
    bad = [e for e in written if not _safe_entry(e)]
    if bad:
        raise CheckpointError(f"{path}: lists {bad[0]!r}, not a path inside the run folder; refusing to touch it")
    return list(written)


def write_manifest(folder: str | Path, entries: list[str]) -> None:
    """Write ``folder``'s manifest (atomically) listing ``entries`` (duplicates dropped, order kept)."""
    body = {"format": FORMAT, "written": list(dict.fromkeys(entries))}
    atomic_write_text(manifest_path(folder), json.dumps(body, indent=1) + "\n")


def _run_folder_of(path: Path) -> Path | None:
    """The nearest folder at or above ``path.parent`` that holds a manifest, or None."""
    for folder in (path.parent, *path.parent.parents):
        if manifest_path(folder).is_file():
            return folder
    return None


def record_written(*paths: str | Path, folders: Iterable[str | Path] = ()) -> None:
    """List each of ``paths`` (files) and ``folders`` (folders vsekit makes) in the manifest of the nearest run
    folder above it.

    Call it just before writing the file or making the folder. A path in no run folder (no ``.vsekit-run``
    above it) is left alone, so writers may call it for any output path. Paths are made absolute first; one
    of ``paths`` that is an existing folder is listed as a folder too (with a trailing ``/``).

    Raises:
        CheckpointError: that run folder's manifest is unreadable (see :func:`read_manifest`).
    """
    groups: dict[Path, list[str]] = {}
    marked = [(Path(os.path.abspath(p)), False) for p in paths] + [(Path(os.path.abspath(f)), True) for f in folders]
    for p, is_dir in marked:
        folder = _run_folder_of(p)
        if folder is None:
            continue
        rel = p.relative_to(folder).as_posix()
        is_dir = is_dir or (p.is_dir() and not p.is_symlink())
        groups.setdefault(folder, []).append(rel + "/" if is_dir else rel)
    for folder, new in groups.items():
        old = read_manifest(folder) or []
        if not set(new) <= set(old):
            write_manifest(folder, old + new)


def forget_written(folder: str | Path, *names: str) -> None:
    """Drop ``names`` (relative paths) from ``folder``'s manifest, after vsekit removed those files itself."""
    old = read_manifest(folder)
    if old is not None and set(names) & set(old):
        write_manifest(folder, [e for e in old if e not in names])


def _real_folder(folder: Path, rel_parts: tuple[str, ...]) -> Path | None:
    """``folder/rel_parts...`` when every step is a real folder (no link, nothing missing), else None."""
    here = folder
    for part in rel_parts:
        here = here / part
        try:
            if not stat.S_ISDIR(here.lstat().st_mode):
                return None
        except OSError:
            return None
    return here


def clear_listed(folder: str | Path) -> list[str]:
    """Remove what ``folder``'s manifest lists (see the module notes) and empty the list; returns what stays.

    A listed folder holding a manifest of its own (a seed's run) is cleared the same way first, and stays a
    run folder; a listed folder that still holds something afterwards stays, as does every name the
    manifest does not list.
    Returns the entries that could not be removed (a folder not empty), which stay listed.

    Raises:
        CheckpointError: the manifest is unreadable (see :func:`read_manifest`); nothing is removed then.
    """
    folder = Path(folder)
    entries = read_manifest(folder) or []
    kept = []
    for entry in sorted(entries, key=lambda e: (-e.rstrip("/").count("/"), e.endswith("/"), e)):
        parts = PurePosixPath(entry.rstrip("/")).parts
        parent = _real_folder(folder, parts[:-1])
        if parent is None:
            continue
        target = parent / parts[-1]
        try:
            mode = target.lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(mode) != entry.endswith("/"):
            continue  # a listed file that is a folder now, or the reverse: not what vsekit wrote
        if stat.S_ISDIR(mode):
            if manifest_path(target).is_file():
                clear_listed(target)  # a seed's run folder: it keeps its (emptied) manifest and its lock
            try:
                target.rmdir()  # only when empty
            except OSError:
                kept.append(entry)
        else:
            target.unlink()  # a link loses the link, not its target
    write_manifest(folder, kept)
    return kept


def is_vsekit_run(out: Path) -> bool:
    """Whether the folder ``out`` shows it is a vsekit run folder: a manifest (:func:`read_manifest`, which
    refuses a bad one), or, for one of vsekit < 0.3, a ``provenance.json`` recording vsekit's version. A folder
    of the user's that merely holds a ``spec.toml`` is not one."""
    if read_manifest(out) is not None:
        return True
    path = out / "provenance.json"
    try:
        record = read_json(path, CheckpointError) if path.is_file() and not path.is_symlink() else None
    except (OSError, CheckpointError):
        return False
    return isinstance(record, dict) and isinstance(record.get("versions"), dict) \
        and bool(record["versions"].get("vsekit"))


def listed_as_written(path: str | Path) -> bool:
    """Whether ``path`` is listed in the manifest of the nearest run folder above it (vsekit wrote it there)."""
    path = Path(path).absolute()
    folder = _run_folder_of(path)
    if folder is None:
        return False
    try:
        entries = read_manifest(folder) or []
    except CheckpointError:
        return False
    return path.relative_to(folder).as_posix() in entries


def refuse_foreign(path: str | Path, ours: Callable[[Path], bool], what: str) -> None:
    """Refuse to replace ``path`` when it exists and vsekit did not write it: not listed in a run folder's
    manifest (:func:`listed_as_written`) and ``ours(path)`` (what the file holds says ``what`` wrote it) False.
    A link or a folder there is never replaced.

    Raises:
        VsekitError: one line naming the file.
    """
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_file() and not path.is_symlink() and (listed_as_written(path) or _safely(ours, path)):
        return
    raise VsekitError(f"{path}: exists and was not written by {what}: vsekit does not overwrite files it did not "
                      f"write; choose another output, or move the file away")


def _safely(ours: Callable[[Path], bool], path: Path) -> bool:
    try:
        return bool(ours(path))
    except Exception:  # an unreadable or foreign file is simply not ours
        return False
