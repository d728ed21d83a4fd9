"""The run's metrics log: JSON lines in ``metrics.jsonl`` (and TensorBoard scalars when asked and installed)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from vsekit.io import atomic_write_bytes

log = logging.getLogger(__name__)


class MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (and to TensorBoard when asked and installed).

    The file is an append log; a resumed run first cuts it back (atomically)
    to the byte offset its state recorded, so it holds exactly the lines of
    the steps the state has seen.
    """

    def __init__(self, path: Path, tensorboard: bool, truncate_at: int | None = None,
                 purge_step: int | None = None) -> None:
        self.path = path
        if truncate_at is not None:
            data = path.read_bytes() if path.exists() else b""
            if len(data) < truncate_at:
                log.warning("%s: %d bytes, shorter than the %d the saved state recorded; lines were lost",
                            path, len(data), truncate_at)
            atomic_write_bytes(path, data[:truncate_at])
        self.fh = open(path, "ab")  # noqa: SIM115 - held for the whole run (every write appends); close() closes it
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(path.parent / "tensorboard"), purge_step=purge_step)
            except ImportError:
                log.warning("tensorboard requested but not installed (pip install tensorboard); "
                            "metrics go to JSONL only")

    def write(self, event: str, step: int, **values: Any) -> None:
        """Append one line ``{"event": event, "step": step, **values}``; numbers also go to TensorBoard."""
        self.fh.write((json.dumps({"event": event, "step": step, **values}) + "\n").encode("utf-8"))
        self.fh.flush()
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(f"{event}/{k}", v, step)

    def offset(self) -> int:
        """Bytes written so far, on disk (fsync'd) before a state that records them is saved."""
        self.fh.flush()
        os.fsync(self.fh.fileno())
        return self.fh.tell()

    def close(self) -> None:
        """Close the file (and the TensorBoard writer)."""
        self.fh.close()
        if self.tb is not None:
            self.tb.close()


class NoLog:
    """The metrics log of ranks other than 0: they write nothing."""

    def write(self, event: str, step: int, **values: Any) -> None:
        """Write nothing."""

    def offset(self) -> int:
        """Always 0."""
        return 0

    def close(self) -> None:
        """Nothing to close."""
