"""Deprecated: moved to :mod:`vsekit.training.provenance`; this module re-exports its names for one release."""

from __future__ import annotations

import warnings

from vsekit.training.provenance import PACKAGES, collect, git_commit, versions  # noqa: F401

warnings.warn("vsekit.provenance is deprecated; use vsekit.training.provenance", DeprecationWarning, stacklevel=2)
