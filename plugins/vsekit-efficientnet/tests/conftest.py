"""Fixtures for the vsekit-efficientnet tests: the extractor (loaded once) and the reference data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]  # plugins/vsekit-efficientnet/tests -> the vsekit checkout


def shared_data() -> Path | None:
    """$VSEKIT_SHARED_DATA, else ../shared/data beside the checkout (where CI has it)."""
    for c in (os.environ.get("VSEKIT_SHARED_DATA"), REPO.parent / "shared" / "data"):
        if c and (Path(c) / "flickr8k" / "images").is_dir() and (Path(c) / "flickr8k-effnet-lite0").is_dir():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def reference() -> Path:
    root = shared_data()
    if root is None:
        pytest.skip("reference data absent: needs ../shared/data/flickr8k/images and "
                    "../shared/data/flickr8k-effnet-lite0 beside the checkout (or $VSEKIT_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def extractor():
    """One extractor for the whole session (the network loads once); progress bar off."""
    from vsekit_efficientnet.extractor import EfficientNetLite0

    return EfficientNetLite0(EfficientNetLite0.Config(progress=False, batch_size=16))
