"""One writer per run folder: an OS lock on ``RUN/.lock`` for as long as a run writes there.

The lock is :func:`vsekit.io.file_lock` (vsekit's one lock: a :class:`filelock.FileLock`,
``flock`` on Unix, ``LockFileEx`` on Windows) on ``RUN/.lock``, so the operating system releases it when
the process ends, however it ends (a finished run, Ctrl-C, ``kill -9``, a
crash): a leftover ``.lock`` file that nobody holds never blocks ``--resume``.
While held, the file holds the holder's pid, for the message a second run gets
(where the platform lets another process read it; else the pid is "unknown").

Lock files (this ``.lock``, and the ``.NAME.lock`` of :func:`vsekit.io.lock_beside`) are the only files
vsekit writes in place rather than through :func:`vsekit.io.atomic_write`: a lock has to stay the same
inode while it is held, and its content (a pid) is informational only.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import filelock

from vsekit.errors import CheckpointError
from vsekit.io import file_lock

LOCK_NAME = ".lock"


def _holder(path: Path) -> str:
    """The pid written in a held lock file, or "unknown"."""
    try:
        with open(path, "rb") as fh:
            pid = fh.read(32).decode("ascii", "replace").strip()
    except OSError:
        pid = ""
    return pid if pid.isdigit() else "unknown"


def _file_lock(path: Path, on_acquired: object = None) -> filelock.BaseFileLock:
    """A non-blocking :func:`vsekit.io.file_lock` on ``path``."""
    return file_lock(path, timeout=0, on_acquired=on_acquired)  # type: ignore[arg-type]


class RunLock:
    """``with RunLock(folder):`` holds ``folder/.lock`` exclusively, or raises :class:`CheckpointError` at once.

    Raises:
        CheckpointError: another process holds the folder's lock (the message names its pid).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._lock: filelock.BaseFileLock | None = None
        self._fd: int | None = None
        self._made: tuple[bool, bool] = (False, False)  # (the folder, the lock file) made by acquire
        self._discard = False

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._lock is not None

    def _write_pid(self, fd: int) -> None:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd

    def acquire(self) -> RunLock:
        """Create the folder if needed, take the lock and write our pid into it.

        Raises:
            CheckpointError: another process holds the lock, or the folder or lock file cannot be made
                (a file in the way, no permission, ``.lock`` a link).
        """
        if self._lock is not None:
            return self
        made = (not self.folder.exists(), not os.path.lexists(self.path))
        lock = _file_lock(self.path, self._write_pid)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except filelock.Timeout:
            raise CheckpointError(busy_message(self.folder, _holder(self.path))) from None
        except OSError as exc:
            raise CheckpointError(f"{self.path}: cannot take the run folder's lock: {exc.strerror or exc}") from None
        self._lock, self._made, self._discard = lock, made, False
        return self

    def discard_on_release(self) -> None:
        """Remove the lock file (and the folder, when empty) on release if :meth:`acquire` made them.

        For a run refused after taking the lock (the folder changed since it was checked): it leaves behind
        nothing it made.
        """
        self._discard = True

    def release(self) -> None:
        """Empty the lock file (no holder recorded) and release it; nothing when not held."""
        if self._lock is None:
            return
        lock, self._lock = self._lock, None
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                os.ftruncate(fd, 0)
            if self._discard and self._made[1]:
                self.path.unlink(missing_ok=True)  # while held: a racing acquire fails at once (timeout 0)
        finally:
            lock.release()
        if self._discard and self._made[0]:
            with contextlib.suppress(OSError):
                self.folder.rmdir()  # only when empty

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def busy_message(folder: Path, pid: str) -> str:
    """The one-line refusal a run gets for a folder another process (``pid``) writes to."""
    return (f"{folder}: another vsekit run (pid {pid}) is writing to this run folder; wait for it to end, "
            f"stop it, or choose another folder with --out")


def check_free(folder: str | Path) -> None:
    """Raise :class:`CheckpointError` if a live process holds ``folder``'s lock; create nothing."""
    path = Path(folder) / LOCK_NAME
    if not path.is_file():
        return
    lock = _file_lock(path)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise CheckpointError(busy_message(Path(folder), _holder(path))) from None
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot probe the run folder's lock: {exc.strerror or exc}") from None
    lock.release()
