"""The user-facing error type.

Anything a person can fix (a bad spec, a missing file, a caption/feature count
mismatch, an unknown component) is raised as :class:`VsekitError` with a
message that names the file, the field and what was expected. The CLI prints
the message alone and exits with status 2 (as for a full disk or out of memory); other exceptions are bugs:
one ``internal error`` line and status 70 (:func:`vsekit.cli.user_errors`).
"""

from __future__ import annotations


class VsekitError(Exception):
    """An error caused by input the user can fix. ``str(err)`` is the whole message."""

    exit_code = 2


class SpecError(VsekitError):
    """A spec file (or a ``--set`` override) is not valid."""


class DataError(VsekitError):
    """A data file is missing, empty or inconsistent."""


class CheckpointError(VsekitError):
    """A checkpoint or run folder cannot be read or written."""


class RegistryError(VsekitError):
    """A component name is unknown or registered twice."""


class ProtocolError(VsekitError, ValueError):
    """An evaluation protocol setting (folds, tie rule, captions per image) does not fit the data."""


class UntrustedCodeError(VsekitError):
    """A model file (or a spec read from one) names code to import, and the caller did not opt in with
    ``trust_code=True`` / ``--trust-code``."""
