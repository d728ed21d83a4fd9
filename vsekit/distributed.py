"""Deprecated: moved to :mod:`vsekit.training.distributed`; this module re-exports its names for one release."""

from __future__ import annotations

import warnings

from vsekit.training.distributed import Dist, GlobalBatchLoss, PeerFailed, from_env, gather_rows, setup

warnings.warn("vsekit.distributed is deprecated; use vsekit.training.distributed", DeprecationWarning, stacklevel=2)

__all__ = ["Dist", "GlobalBatchLoss", "PeerFailed", "from_env", "gather_rows", "setup"]
