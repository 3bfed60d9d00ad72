"""``python -m export.tflite``: a thin CLI over :func:`export.tflite.export_tflite`; its options are
:class:`export.config.TFLiteExportConfig`'s fields (``export.cli``)."""

from __future__ import annotations

import sys

from ..cli import run_export
from ..config import TFLiteExportConfig


def main(argv: list[str] | None = None) -> int:
    from . import export_tflite

    return run_export(TFLiteExportConfig, export_tflite, argv)


if __name__ == "__main__":
    sys.exit(main())
