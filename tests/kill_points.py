"""Kill a child process with SIGKILL at a point it has provably reached, for the killed-run tests.

The child's stderr (where every stage logs its progress) goes to a file that :func:`wait_for`
polls, so a test waits for the log line or file that proves the phase was reached, within a
bounded time, instead of sleeping a fixed time and hoping. :func:`kill` then checks that the
child was still running when the signal went and that the signal is what ended it: an export or
training run that failed at once, or finished before the kill, fails the test instead of passing
it without anything having been killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest


class Child:
    """A process started with its stdout and stderr going to ``log``."""

    def __init__(self, argv: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with open(log, "wb") as sink:
            self.proc = subprocess.Popen(argv, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT,
                                         env=None if env is None else {**os.environ, **env})

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def wait_for(self, what: str, reached: Callable[[str], bool], timeout_s: float = 300.0) -> None:
        """Poll until ``reached(log text)``; fail (killing the child) if it exits first or time runs out."""
        deadline = time.monotonic() + timeout_s
        while not reached(self.text()):
            if self.proc.poll() is not None:
                pytest.fail(f"the child exited with {self.proc.returncode} before {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"no {what} within {timeout_s:.0f} s:\n{self.tail()}")
            time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL the child, which must still be running, and check that the signal ended it."""
        assert self.proc.poll() is None, f"the child had already exited with {self.proc.returncode}:\n{self.tail()}"
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=60) == -signal.SIGKILL, self.tail()


def logged(fragment: str) -> Callable[[str], bool]:
    """A ``reached`` test: ``fragment`` appears in the log."""
    return lambda text: fragment in text
