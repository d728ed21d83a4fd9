"""Let the tests run from a source checkout too (pip install -e plugins/vsekit-minilm is the normal way)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__file__).resolve().parent.parent

try:
    import vsekit_minilm  # noqa: F401
except ImportError:  # not installed: use the source folder
    sys.path.insert(0, str(PLUGIN_DIR))

@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
