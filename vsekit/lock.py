"""Deprecated: moved to :mod:`vsekit.training.lock`; this module re-exports its names for one release."""

from __future__ import annotations

import warnings

from vsekit.training.lock import LOCK_NAME, RunLock, busy_message, check_free

warnings.warn("vsekit.lock is deprecated; use vsekit.training.lock", DeprecationWarning, stacklevel=2)

__all__ = ["LOCK_NAME", "RunLock", "busy_message", "check_free"]
