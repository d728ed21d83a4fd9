"""Let the tests run from a source checkout too (pip install -e plugins/vsekit-faiss is the normal way)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__file__).resolve().parent.parent

try:
    import vsekit_faiss  # noqa: F401
except ImportError:  # not installed: use the source folder
    sys.path.insert(0, str(PLUGIN_DIR))


@pytest.fixture(autouse=True)
def _few_threads():
    """Tests share two cores: one faiss / torch thread."""
    import faiss
    import torch

    old_faiss, old_torch = faiss.omp_get_max_threads(), torch.get_num_threads()
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    yield
    faiss.omp_set_num_threads(old_faiss)
    torch.set_num_threads(old_torch)
