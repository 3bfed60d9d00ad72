"""Shared CLI behaviour: user mistakes print one line and exit 2; bugs keep their traceback."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from .errors import InceptionEdgeError, first_line


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up banner is noise in a CLI


def run_cli(action: Callable[[], None]) -> int:
    setup_logging()
    try:
        action()
    except InceptionEdgeError as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
