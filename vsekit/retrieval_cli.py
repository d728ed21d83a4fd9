"""Deprecated: use :mod:`vsekit.cli.retrieval` (this module goes away in the next release)."""

from __future__ import annotations

import warnings

from vsekit.cli.retrieval import (
    COMMANDS,
    MODEL_HELP,
    add_commands,
    bank_cmd,
    encode_cmd,
    models_cmd,
    report_cmd,
    retrieve_cmd,
)

__all__ = ["COMMANDS", "MODEL_HELP", "add_commands", "bank_cmd", "encode_cmd", "models_cmd", "report_cmd",
           "retrieve_cmd"]

warnings.warn("vsekit.retrieval_cli is deprecated; use vsekit.cli.retrieval", DeprecationWarning, stacklevel=2)
