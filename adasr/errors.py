"""Errors that the CLI turns into a one-line message and a non-zero exit.

Library code raises these for anything a user can cause (bad file, bad option, unsupported
mode). Everything else is a bug and is allowed to surface as a traceback.
"""

from __future__ import annotations

__all__ = ["AdasrError", "ConfigError", "InputError", "Interrupted", "ModelError", "OutputError"]


class AdasrError(Exception):
    """Base class: a user-facing problem with a one-line message."""

    exit_code = 1


class InputError(AdasrError):
    """An input file or folder is missing, unreadable, corrupt or of an unsupported kind."""

    exit_code = 2


class OutputError(AdasrError):
    """An output path cannot be written."""

    exit_code = 3


class ModelError(AdasrError):
    """A model file is damaged, of an unknown schema version, or does not fit the request."""

    exit_code = 4


class ConfigError(AdasrError):
    """An option or configuration value is invalid."""

    exit_code = 5


class Interrupted(AdasrError):
    """Ctrl-C, with a message saying what was kept (the CLI prints it and exits 130)."""

    exit_code = 130
