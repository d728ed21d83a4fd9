"""Deprecated: use :mod:`vsekit.cli.extract` (this module goes away in the next release)."""

from __future__ import annotations

import warnings

from vsekit.cli.extract import COMMANDS, LIST_AT_MOST, add_commands, extract_cmd

__all__ = ["COMMANDS", "LIST_AT_MOST", "add_commands", "extract_cmd"]

warnings.warn("vsekit.extract_cli is deprecated; use vsekit.cli.extract", DeprecationWarning, stacklevel=2)
