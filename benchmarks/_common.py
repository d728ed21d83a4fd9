"""Shared helpers for the hand-run benchmarks: machine info, medians, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
F8K_FEATURES = SHARED / "flickr8k-effnet-lite0"


def machine(threads: int) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": threads,
        "python": platform.python_version(),
    }


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def write(path: str | Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": "python " + " ".join(sys.argv), **payload}
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path}")
