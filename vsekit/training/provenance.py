"""Run provenance: package versions, the git commit, checksums of the data files read."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vsekit.io import sha256_file

PACKAGES = ("vsekit", "torch", "numpy", "scipy", "attrs", "cattrs", "pluggy", "click", "safetensors", "tqdm")


def versions() -> dict[str, str | None]:
    """The Python version and the installed version of each of :data:`PACKAGES` (None when not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(path: Path) -> dict[str, Any] | None:
    """The commit (and whether the tree is dirty) of the git checkout holding ``path``, if any."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=5)
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def collect(files: Iterable[Path], spec_source: str | None = None) -> dict[str, Any]:
    """A run's provenance record: UTC time, argv, platform, :func:`versions`, git commits, data files.

    The git commits are those of vsekit's and the spec's checkouts (None outside
    one); ``data_files`` maps each existing file of ``files`` to its SHA-256.
    """
    unique = sorted({Path(f).resolve() for f in files})
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],  # the program by name, not its path
        "platform": platform.platform(),
        "versions": versions(),
        "git": {
            "vsekit": git_commit(Path(__file__).resolve().parent),
            "spec": (git_commit(Path(spec_source).resolve().parent)
                     if spec_source and Path(spec_source).exists() else None),
        },
        "data_files": {str(f): sha256_file(f) for f in unique if f.is_file()},
    }
