"""Deprecated: use :mod:`vsekit.cli.legacy` (this module goes away in the next release)."""

from __future__ import annotations

import warnings

from vsekit.cli.legacy import (
    COMMANDS,
    add_commands,
    export_legacy_cmd,
    import_legacy_cmd,
)

__all__ = ["COMMANDS", "add_commands", "export_legacy_cmd", "import_legacy_cmd"]

warnings.warn("vsekit.legacy_cli is deprecated; use vsekit.cli.legacy", DeprecationWarning, stacklevel=2)
