"""``python -m export.onnx``: a thin CLI over :func:`export.onnx.export_onnx`; its options are
:class:`export.config.OnnxExportConfig`'s fields (``export.cli``)."""

from __future__ import annotations

import sys

from ..cli import run_export
from ..config import OnnxExportConfig


def main(argv: list[str] | None = None) -> int:
    from . import export_onnx

    return run_export(OnnxExportConfig, export_onnx, argv)


if __name__ == "__main__":
    sys.exit(main())
