"""Deprecated: moved to :mod:`vsekit.training.provenance`; this module re-exports its names for one release."""

from __future__ import annotations

import warnings

from vsekit.training.provenance import PACKAGES, collect, git_commit, versions

warnings.warn("vsekit.provenance is deprecated; use vsekit.training.provenance", DeprecationWarning, stacklevel=2)

__all__ = ["PACKAGES", "collect", "git_commit", "versions"]
