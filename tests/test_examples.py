"""Every example spec shipped in the repository reads as a spec (keys, types, components): a renamed option
or a typo in an example fails here, not in a user's first run."""

from __future__ import annotations

import pytest
from conftest import REPO

from vsekit import spec as spec_mod

SPECS = sorted(REPO.glob("examples/*.toml")) + sorted(REPO.glob("plugins/*/examples/*.toml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(REPO)))
def test_example_spec_reads(path):
    s = spec_mod.load(path)
    assert s.name and s.model.sentence_encoder.type and s.loss.type
