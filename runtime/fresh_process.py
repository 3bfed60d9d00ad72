"""Run ``python -m MODULE ARGS...`` in a fresh interpreter and read its JSON answer.

Why a fresh process: timings taken in one process disturb each other (thread pools that keep
spinning, shared caches and allocator state; measured up to 4x off), TensorFlow's thread count can
only be set before it first runs, and a crash or a hang of one measurement must not take the caller
with it. Both ``python -m benchmarks`` (one worker per format) and the fallback's latency runs
(``export.latency``) go through :func:`run_module`, so a failure reads the same everywhere: one line
naming what ran, its exit status and the child's own last ``error:`` line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError, ProcessError

# The directory that holds the ``runtime`` package (the repository root, or site-packages when installed):
# the child must import the same code as its parent, whatever its working directory.
IMPORT_ROOT = Path(__file__).resolve().parents[1]


def _child_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    """The parent's environment, ``extra`` on top, and IMPORT_ROOT first on PYTHONPATH."""
    env = dict(os.environ)
    env.update(extra or {})
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(IMPORT_ROOT) not in paths:
        paths.insert(0, str(IMPORT_ROOT))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def last_error_line(stderr: str) -> str:
    """The child's last ``error:`` line without the prefix (the toolkit's CLIs print exactly one), else its
    last non-empty stderr line (a traceback's last line names the exception), else ''."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return lines[-1] if lines else ""


def _exit_text(status: int) -> str:
    if status < 0:  # subprocess's way of saying a signal ended it (the OOM killer's SIGKILL, a segfault)
        try:
            return f"was killed by signal {-status} ({signal.Signals(-status).name})"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


def run_module(module: str, args: Sequence[str | os.PathLike[str]] = (), *, timeout_s: float,
               env: Mapping[str, str] | None = None, result_file: str | os.PathLike[str] | None = None,
               what: str | None = None) -> Any:
    """Run ``python -m module args...`` (this interpreter) in a fresh process; return its parsed JSON.

    The JSON is read from ``result_file`` when one is named (any stale file there is removed
    first, so an old result can never pass for a new one), else from stdout. ``env`` is added to
    this process's environment. ``what`` names the run in error messages (default: the command).

    Raises :class:`runtime.errors.ProcessError` with a one-line message when the child exits
    non-zero or is killed, runs past ``timeout_s`` (it is then killed), or leaves no valid JSON.
    """
    if not timeout_s > 0:  # also refuses NaN
        raise ConfigError(f"timeout_s {timeout_s!r}: expected a number of seconds above 0")
    argv = [sys.executable, "-m", module, *(os.fspath(a) for a in args)]
    what = what or f"python -m {module}"
    result = Path(result_file) if result_file is not None else None
    if result is not None:
        result.unlink(missing_ok=True)
    try:
        proc = subprocess.run(argv, env=_child_env(env), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ProcessError(f"{what}: timed out after {timeout_s:g} s and was killed; expected it to finish sooner",
                           timed_out=True, reason=f"timed out after {timeout_s:g} s") from None
    except OSError as exc:
        raise ProcessError(f"{what}: could not start {sys.executable} ({exc.strerror or exc})",
                           reason=str(exc.strerror or exc)) from None
    if proc.returncode != 0:
        reason = last_error_line(proc.stderr) or "no message on stderr"
        raise ProcessError(f"{what}: {_exit_text(proc.returncode)}: {reason}", status=proc.returncode, reason=reason)
    if result is not None:
        try:
            text, source = result.read_text(encoding="utf-8"), str(result)
        except OSError as exc:
            raise ProcessError(f"{what}: exited with status 0 but {result} cannot be read ({exc.strerror}); "
                               "expected its JSON result there", status=0, reason=f"wrote no result to {result}") from None
    else:
        text, source = proc.stdout, "stdout"
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProcessError(f"{what}: exited with status 0 but {source} is not JSON ({exc.msg} at line {exc.lineno}); "
                           "expected one JSON document", status=0, reason=f"{source} is not JSON") from None
