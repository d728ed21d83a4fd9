"""Deprecated: the data presets moved to :mod:`vsekit.data.presets`."""

import warnings

from vsekit.data.presets import ENV_ROOT, PRESETS, data_root, preset_table, resolve_preset

warnings.warn("vsekit.presets is deprecated; use vsekit.data.presets", DeprecationWarning, stacklevel=2)

__all__ = ["ENV_ROOT", "PRESETS", "data_root", "preset_table", "resolve_preset"]
