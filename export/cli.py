"""Arguments every export CLI shares, and the one-line summary they print."""

from __future__ import annotations

import argparse
from typing import Any

from .config import FALLBACK_MODES, GATES, DriftLimits, ExportConfig
from .session import ExportResult, summary_line

DRIFT_HELP = ("KEY=VALUE,... over the defaults sensitivity=0.02,specificity=0.02,auc=0.01,agreement=0.97: the largest "
              "acceptable loss of sensitivity, specificity and AUC, and the least share of decisions that must agree "
              "with the float SavedModel, at every operating point; or none to report without failing. How they are "
              "checked: --gate. Beyond them the artifact is not written, its report goes to NAME.rejected.json, exit status 3")
GATE_HELP = ("noninferiority (default): the 95%% bounds must lie within --max-drift (the loss's upper bound, paired "
             "Newcombe/DeLong; agreement's lower bound, Wilson), on val, test and the training images not drawn for "
             "calibration pooled, so one image cannot flip the verdict; point: the observed changes on val and on test "
             "each alone (the older rule, which one image can flip). See docs/statistics.md")


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    d = ExportConfig.__dataclass_fields__
    p.add_argument("--model", required=True, help="model directory written by `python -m train` (SavedModel + model_card.json)")
    p.add_argument("--out", default=None, help="directory for the artifacts (default: the model directory)")
    p.add_argument("--overwrite", action="store_true", help="replace artifacts of the same name (atomically, after verification)")
    c = p.add_argument_group("calibration and verification")
    c.add_argument("--data", default=None, help="labelled data (.npz, directory of .npy or a bundled dataset's name such as pneumoniamnist) to calibrate on (train split) "
                   "and verify on (val and test); default: the file the model card names, checked by sha256")
    c.add_argument("--calibration-data", default=None, help="calibrate on these images instead: a dataset (its train split) "
                   "or a .npy of images (N,H,W[,C]) from the deployment site")
    c.add_argument("--calibration-size", type=int, default=d["calibration_size"].default,
                   help="images in the calibration sample (the TensorFlow guide advises 100-500)")
    c.add_argument("--calibration-seed", type=int, default=d["calibration_seed"].default, help="seed of the class-balanced draw")
    c.add_argument("--max-drift", default="sensitivity=0.02,specificity=0.02,auc=0.01,agreement=0.97", help=DRIFT_HELP)
    c.add_argument("--gate", default=d["gate"].default, choices=GATES, help=GATE_HELP)
    c.add_argument("--prevalence", type=float, default=None, help="share of positives where the model is used (e.g. 0.05), "
                   "for PPV and NPV with intervals in the report (default: each split's own)")
    c.add_argument("--agreement-images", type=_count_or_all, default=None, metavar="N|all",
                   help="training images not drawn for calibration on which agreement and logit drift are measured too "
                        "(default all; 0: none)")
    c.add_argument("--no-bias-correction", dest="bias_correction", action="store_false",
                   help="int8: keep the converter's output as is instead of removing the mean logit shift that int8 "
                        "rounding adds (measured on the calibration images)")
    c.add_argument("--threads", type=int, default=None, help="threads for verification (default: every core)")
    q = p.add_argument_group("accuracy-aware int8")
    q.add_argument("--layer-report-images", type=int, default=d["layer_report_images"].default,
                   help="at most this many calibration images, on which each layer's int8 error is measured and ranked in the report "
                        "(0: no per-layer report)")
    q.add_argument("--fallback", default=d["fallback"].default, choices=FALLBACK_MODES,
                   help="auto: if int8 breaks --max-drift on the val split, keep the worst layers of the per-layer report in "
                        "float, one per step, until it holds; writes NAME_fallback (e.g. model_int8_fallback.tflite) and "
                        "reports the layers kept float and the latency each cost. off: fail as usual")
    q.add_argument("--fallback-max-layers", type=int, default=d["fallback_max_layers"].default,
                   help="most fallback steps (one ranked layer and the ops reading its output each) before giving up")


def _count_or_all(text: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither all nor an integer") from None


def common_config(args: argparse.Namespace) -> dict[str, Any]:
    return {"model": args.model, "out": args.out, "overwrite": args.overwrite, "data": args.data,
            "calibration_data": args.calibration_data, "calibration_size": args.calibration_size,
            "calibration_seed": args.calibration_seed, "max_drift": DriftLimits.parse(args.max_drift),
            "threads": args.threads, "bias_correction": args.bias_correction, "gate": args.gate,
            "prevalence": args.prevalence, "agreement_images": args.agreement_images,
            "layer_report_images": args.layer_report_images, "fallback": args.fallback,
            "fallback_max_layers": args.fallback_max_layers}


def print_result(result: ExportResult) -> None:
    print(f"{result.path}  {result.sidecar['bytes'] / 1e6:.1f} MB  {summary_line(result.verification)}")
