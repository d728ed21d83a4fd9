"""Fixtures for the vsekit-efficientnet tests: the extractor (loaded once) and the reference data."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]  # plugins/vsekit-efficientnet/tests -> the vsekit checkout


@pytest.fixture(scope="session")
def reference() -> Path:
    """The Flickr8K images and reference features; skips when absent, fails under CI=true."""
    from vsekit import testing

    return testing.shared_data("flickr8k/images", "flickr8k-effnet-lite0/test_ids.txt")


@pytest.fixture(scope="session")
def extractor():
    """One extractor for the whole session (the network loads once); progress bar off."""
    from vsekit_efficientnet.extractor import EfficientNetLite0

    return EfficientNetLite0(EfficientNetLite0.Config(progress=False, batch_size=16))
