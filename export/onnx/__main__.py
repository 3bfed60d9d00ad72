"""``python -m export.onnx``: a thin CLI over :func:`export.onnx.export_onnx`."""

from __future__ import annotations

import argparse
import sys

from runtime.cli import DefaultsHelpFormatter, Parser, run_cli

from ..cli import add_common_arguments, common_config, print_result
from ..config import CALIBRATION_METHODS, MIN_OPSET, ONNX_TARGETS, OnnxExportConfig

EXAMPLE = ("example: python -m export.onnx --model runs/pneumonia75   # writes model_fp32.onnx and model_int8.onnx there; "
           "--target x86 writes model_int8_x86.onnx")


def build_parser() -> argparse.ArgumentParser:
    d = OnnxExportConfig.__dataclass_fields__
    p = Parser(
        prog="python -m export.onnx",
        description="Convert a trained model to fp32 ONNX with tf2onnx (checked against the SavedModel's logits on real "
                    "images), then to int8 ONNX (QDQ, per-channel int8 weights) by onnxruntime static quantization on a "
                    "class-balanced sample of its training images. Both are verified against the float SavedModel on the "
                    "val and test splits and written atomically with NAME.onnx.json (checksum, metadata, config, report).",
        epilog=EXAMPLE, formatter_class=DefaultsHelpFormatter)
    add_common_arguments(p)
    f = p.add_argument_group("format")
    f.add_argument("--target", default=d["target"].default, choices=ONNX_TARGETS,
                   help="the device the file is for: pi writes model_int8.onnx, x86 model_int8_x86.onnx; both quantize "
                        "alike (uint8 activations, int8 per-channel weights), which onnxruntime computes bit for bit "
                        "alike on the Pi's aarch64 and on x86, so the verification run here is the Pi's answer")
    f.add_argument("--calibration-method", default=d["calibration_method"].default, choices=CALIBRATION_METHODS,
                   help="how activation ranges come from the calibration images; non-default methods add a name suffix")
    f.add_argument("--opset", type=int, default=d["opset"].default, help=f"ONNX opset (>= {MIN_OPSET})")
    f.add_argument("--max-fp32-delta", type=float, default=d["max_fp32_delta"].default,
                   help="largest |logit difference| allowed between fp32 ONNX and the SavedModel")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def action() -> None:
        from . import export_onnx

        cfg = OnnxExportConfig(target=args.target, calibration_method=args.calibration_method, opset=args.opset,
                               max_fp32_delta=args.max_fp32_delta, **common_config(args))
        for result in export_onnx(cfg):
            print_result(result)

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
