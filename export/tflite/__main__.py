"""``python -m export.tflite``: a thin CLI over :func:`export.tflite.export_tflite`."""

from __future__ import annotations

import argparse
import sys

from runtime.cli import DefaultsHelpFormatter, Parser, run_cli

from ..cli import add_common_arguments, common_config, print_result
from ..config import (
    TFLITE_INPUT_TYPES,
    TFLITE_KERNELS,
    TFLITE_MODES,
    TFLiteExportConfig,
)

EXAMPLE = "example: python -m export.tflite --model runs/pneumonia75   # writes runs/pneumonia75/model_int8.tflite"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m export.tflite",
        description="Convert a trained model to TFLite (full-integer int8 by default: int8 kernels only, per-channel "
                    "weights, raw uint8 pixels in), calibrated on a class-balanced sample of its training images, then "
                    "verify it against the float SavedModel on the val and test splits. Writes NAME.tflite and "
                    "NAME.tflite.json (checksum, metadata, config, verification report) atomically.",
        epilog=EXAMPLE, formatter_class=DefaultsHelpFormatter)
    add_common_arguments(p)
    f = p.add_argument_group("format")
    f.add_argument("--mode", default="int8", choices=TFLITE_MODES,
                   help="int8 (model_int8.tflite), float16 (model_float16.tflite: half-size weights, float compute) or "
                        "dynamic (model_dynamic.tflite: int8 weights, float activations)")
    f.add_argument("--input-type", default="uint8", choices=TFLITE_INPUT_TYPES,
                   help="int8 mode: uint8 takes raw pixels; int8 takes pixel-128 (model_int8_int8input.tflite)")
    f.add_argument("--verify-kernels", default=",".join(TFLITE_KERNELS), type=lambda t: tuple(t.split(",")),
                   help="TFLite kernel sets the artifact must pass --max-drift on: default (ai-edge-litert's XNNPACK) and "
                        "builtin (TFLite's own int8 kernels, which tflite-runtime 2.14 runs); drop builtin only if no "
                        "device will use tflite-runtime")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def action() -> None:
        from . import export_tflite

        cfg = TFLiteExportConfig(mode=args.mode, input_type=args.input_type, verify_kernels=args.verify_kernels,
                                 **common_config(args))
        print_result(export_tflite(cfg))

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
