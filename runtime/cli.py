"""Shared CLI behaviour: user mistakes print one line and exit 2; bugs keep their traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from .errors import InceptionEdgeError, first_line


class Parser(argparse.ArgumentParser):
    """argparse with the toolkit's error contract: a usage mistake is one line on stderr and exit 2.

    (argparse's default prints the whole usage block first; the usage stays one ``--help`` away.)
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default once, where it tells the reader something.

    argparse's own formatter appends "(default: None)" to required options and to options whose help already says
    what happens by default, and "(default: True)" to a --no-... switch; those read as contradictions.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.required or action.nargs == 0 or action.default is None or "default" in text:
            return text
        return super()._get_help_string(action)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up banner is noise in a CLI


def run_cli(action: Callable[[], int | None]) -> int:
    """Run a CLI's action; its return value (None: 0) is the exit status, a user mistake is one line and 2."""
    setup_logging()
    try:
        code = action()
    except InceptionEdgeError as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        for line in getattr(exc, "details", ()):  # e.g. the files a data source cannot use, one per line
            print(f"  {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return code or 0
