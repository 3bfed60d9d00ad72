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

    exit_code = 2  # what a CLI exits with; 2 is the convention for usage errors


class DataError(InceptionEdgeError):
    """A data file or array is missing, unreadable, or not what the stage expects."""


class BadFilesError(DataError):
    """Some files of a source cannot be used: one line for the whole source, then one line per file (the first 20)."""

    LISTED = 20

    def __init__(self, source: str, problems: list[str], hint: str) -> None:
        self.problems = problems
        self.details = tuple(problems[:self.LISTED]) + ((f"... and {len(problems) - self.LISTED} more",)
                                                         if len(problems) > self.LISTED else ())
        super().__init__(f"{source}: {len(problems)} bad file{'s' if len(problems) != 1 else ''} or entr"
                         f"{'ies' if len(problems) != 1 else 'y'} (listed below); {hint}")


class ConfigError(InceptionEdgeError):
    """An option or a combination of options is invalid."""


class OutputError(InceptionEdgeError):
    """A destination cannot be written, or would overwrite something without permission."""


class WeightsError(InceptionEdgeError):
    """Pretrained weights could not be obtained or do not fit the model."""


class ModelCardError(InceptionEdgeError):
    """A model directory or its model card is missing or malformed."""


class ModelFileError(InceptionEdgeError):
    """A model file (.tflite, .onnx) is missing, corrupt, of an unsupported kind, or lacks its metadata."""


class BackendError(InceptionEdgeError):
    """The inference package a model needs is not installed or cannot run it."""


class ExportError(InceptionEdgeError):
    """A converter refused the model or produced something that does not match it."""


class DriftError(InceptionEdgeError):
    """An export ran but its outputs drift from the float model beyond the allowed limits.

    Not a usage error, so CLIs exit with 3 rather than 2: scripts can tell "you called me wrong"
    from "the artifact is not good enough".
    """

    exit_code = 3


class ClusterError(InceptionEdgeError):
    """A process of a multi-worker training cluster stopped or became unreachable, so the others cannot go on.

    Not the user's mistake, so CLIs exit with 4: a scheduler can tell a lost peer (worth a restart) from bad options
    (2) or a model that missed its limits (3).
    """

    exit_code = 4


class ProcessError(InceptionEdgeError):
    """A step run in a fresh Python process failed, timed out, or gave no readable result.

    The one-line message names what ran and why it failed; the parts are kept as attributes so
    that a caller which records failures (``python -m benchmarks`` writes a failed row and goes
    on) can word them its own way.
    """

    def __init__(self, message: str, *, status: int | None = None, reason: str = "", timed_out: bool = False) -> None:
        super().__init__(message)
        self.status = status  # the child's exit status; None when it timed out or never started
        self.reason = reason  # the child's last "error:" line without the prefix, else its last stderr line
        self.timed_out = timed_out
