"""Typed errors for user mistakes.

Every stage raises these (never ``assert``) so that a CLI can print one line naming the file,
the value and what was expected, and exit with status 2. Anything else that escapes is a bug
and keeps its traceback.
"""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type name), for one-line error reports."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class InceptionEdgeError(Exception):
    """Base class: a problem with the user's input, not with the toolkit."""


class DataError(InceptionEdgeError):
    """A data file or array is missing, unreadable, or not what the stage expects."""


class ConfigError(InceptionEdgeError):
    """An option or a combination of options is invalid."""


class OutputError(InceptionEdgeError):
    """A destination cannot be written, or would overwrite something without permission."""


class WeightsError(InceptionEdgeError):
    """Pretrained weights could not be obtained or do not fit the model."""


class ModelCardError(InceptionEdgeError):
    """A model directory or its model card is missing or malformed."""
