"""One writer per run folder: an OS lock on ``RUN/.lock`` for as long as a run writes there.

The lock is ``fcntl.flock`` on an open file, so the kernel releases it when
the process ends, however it ends (a finished run, Ctrl-C, ``kill -9``, a
crash): a stale ``.lock`` file never blocks ``--resume``. The file holds the
holder's pid, for the message a second run gets.

``.lock`` is the one file vsekit writes in place rather than through
:func:`vsekit.io.atomic_write`: a lock has to stay the same inode while it is
held, and its content (a pid) is informational only.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from vsekit.errors import CheckpointError

LOCK_NAME = ".lock"


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        pid = ""
    return pid or "unknown"


class RunLock:
    """``with RunLock(folder):`` holds ``folder/.lock`` exclusively, or raises :class:`CheckpointError` at once."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        """Create the folder if needed, take the lock and write our pid into it."""
        if self._fd is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            raise CheckpointError(busy_message(self.folder, pid)) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def busy_message(folder: Path, pid: str) -> str:
    return (f"{folder}: another vsekit run (pid {pid}) is writing to this run folder; wait for it to end, "
            f"stop it, or choose another folder with --out")


def check_free(folder: str | Path) -> None:
    """Raise :class:`CheckpointError` if a live process holds ``folder``'s lock; create nothing."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(busy_message(Path(folder), _holder(fd))) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
