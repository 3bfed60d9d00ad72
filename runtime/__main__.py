"""``python -m runtime``: predict with an exported model, or evaluate it on labelled data, without TensorFlow."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .backends import BACKENDS, TFLITE_KERNELS
from .cli import Parser, run_cli
from .explain import OcclusionConfig
from .folder import SOME_FAILED_EXIT
from .parity import PARITY_CHOICES

if TYPE_CHECKING:
    from .file_sources import FileRow

EXAMPLE = ("examples:\n  python -m runtime predict runs/p75/model_int8.tflite xray1.png scan.dcm\n"
           "  python -m runtime predict runs/p75/model_int8.tflite exports/ --recursive --out results.csv\n"
           "  python -m runtime explain runs/p75/model_int8.tflite xray1.png --out xray1_map.png\n"
           "  python -m runtime eval runs/p75/model_int8.onnx --data pneumoniamnist\n"
           "  python -m runtime bench runs/p75/model_int8.tflite --threads 4 --callers 8")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m runtime", description="Run a model exported by export/ (.tflite or .onnx) on a device: "
               "numpy, pillow and one backend, never TensorFlow.", epilog=EXAMPLE,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("model", help="a .tflite or .onnx file written by python -m export.tflite / export.onnx")
        q.add_argument("--operating-point", default="youden", help="decision threshold from the model card (youden, "
                       "high_sensitivity, high_specificity)")
        q.add_argument("--backend", default=None, choices=BACKENDS, help="force a backend (default: by suffix, "
                       "ai-edge-litert before tflite-runtime)")
        q.add_argument("--threads", type=int, default=None, help="inference threads (default: every core)")
        q.add_argument("--kernels", default="default", choices=TFLITE_KERNELS, help="TFLite kernels: default (ai-edge-litert: "
                       "XNNPACK) or builtin (TFLite's own, as tflite-runtime 2.14 runs int8); both are checked by the export")
        q.add_argument("--interpreters", type=int, default=1, help="TFLite interpreters shared by caller threads "
                       "(default 1: calls take turns; more run side by side, each with --threads threads)")

    def images(q: argparse.ArgumentParser) -> None:
        q.add_argument("--parity", default="crop", choices=PARITY_CHOICES, help="train/serve parity for images larger than "
                       "the training images (28x28 for PneumoniaMNIST): crop (default) centre-crops to their aspect ratio "
                       "and area-averages down to their size, then enlarges as in training; stretch skips the crop; off "
                       "resizes straight to the model size (models trained at full resolution)")
        q.add_argument("--dicom-window", default="file", help="DICOM values to 0-255: file (default: the file's window, else "
                       "its VOI LUT, else the stored range), stored (every value the stored bits hold), minmax (this image's "
                       "own range) or CENTER,WIDTH in modality units")

    pr = sub.add_parser("predict", help="classify image files, DICOM files and folders of them",
                        description="Classify files and folders: one row per file found (a prediction, an error, or a skip "
                        "with its reason), progress on stderr, then a summary at the operating point. Exit status 0 when "
                        f"every image was classified, {SOME_FAILED_EXIT} when some could not be, 2 on a usage error (a path that "
                        "does not exist, a folder with no image and an --out that cannot be written are reported before "
                        "the model loads).")
    common(pr)
    images(pr)
    pr.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...; grayscale or RGB, any size), DICOM files "
                    "(.dcm, or any file with the DICOM marker) and folders of them")
    pr.add_argument("--recursive", action="store_true", help="also walk the subfolders of each folder")
    pr.add_argument("--out", default=None, help="write the rows to this file (.csv, .jsonl or .json), atomically, and "
                    "print only the summary")
    pr.add_argument("--format", default=None, choices=("csv", "jsonl", "json"), help="row format for --out or stdout "
                    "(default: by --out's suffix; a table on stdout)")
    pr.add_argument("--json", action="store_true", help="print the rows on stdout as a JSON list (same as --format json)")
    pr.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    pr.add_argument("--progress-every", type=float, default=2.0, help="seconds between progress lines (default 2; "
                    "0: after every file)")
    ex = sub.add_parser("explain", help="an occlusion-sensitivity map of one image, as a PNG overlay",
                        description="Hide one patch of the image at a time (the image's mean grey), run the model, and "
                        "draw how much the positive probability drops (red) or rises (blue) per region, over the region "
                        "the model saw; the title gives the probability and the decision. Works with int8 files, no "
                        "gradients needed. It shows what the output depends on, not where disease is: docs/runtime.md.")
    common(ex)
    images(ex)
    ex.add_argument("image", help="an image or DICOM file")
    ex.add_argument("--out", required=True, help="the overlay PNG to write")
    ex.add_argument("--patch", type=float, default=OcclusionConfig.patch, help="patch side as a fraction of the image "
                    "side (default 1/7, about 4 of 28 training pixels)")
    ex.add_argument("--stride", type=float, default=OcclusionConfig.stride, help="step as a fraction of the patch "
                    "(default 0.5)")
    ex.add_argument("--fill", default=OcclusionConfig.fill, help="what hides a patch: mean (the image's mean pixel, "
                    "default) or a pixel value 0-255")
    ex.add_argument("--json", action="store_true", help="also print the map's figures as JSON")
    ev = sub.add_parser("eval", help="sensitivity, specificity and ROC AUC on a labelled dataset")
    common(ev)
    ev.add_argument("--data", required=True, help="a .npz, a directory of .npy files, a folder of image files (CLASS/* or "
                    "{train,val,test}/CLASS/*, class folders named as the model's classes), a CSV manifest, or a bundled "
                    "dataset's name: pneumoniamnist (as for python -m train). A folder without split folders is "
                    "evaluated whole, as the test split; files the model was trained on are counted and warned about "
                    "when its data_files.csv is beside the model file")
    ev.add_argument("--split", default="test", help="which split to evaluate")
    ev.add_argument("--positive-label", type=int, default=None, help="label value of the positive class (default: the model's)")
    ev.add_argument("--pixel-range", default=None, help="LOW,HIGH of float images; uint8 needs none")
    ev.add_argument("--prevalence", type=float, default=None, help="share of positives where the model is used (e.g. "
                    "0.05), for PPV and NPV (default: the split's own)")
    ev.add_argument("--json", action="store_true", help="print every figure as JSON (intervals, counts, PPV/NPV) instead of a table")
    be = sub.add_parser("bench", help="load time, first inference, latency p50/p90, images per second, RSS, wrapper overhead",
                        description="Time one model in this process: cold start, load, first inference, steady latency "
                        "of the bare engine call and of predict() side by side (the wrapper's overhead), images per "
                        "second and RSS. Prints figures; asserts nothing.")
    common(be)
    be.add_argument("--runs", type=int, default=50, help="timed calls (default 50)")
    be.add_argument("--warmup", type=int, default=5, help="untimed calls before timing (default 5)")
    be.add_argument("--callers", type=int, default=0, help="also run this many threads sharing the classifier: "
                    "throughput, and a check that every answer equals the serial one (default 0: skip)")
    be.add_argument("--image", default=None, help="also time predict() from this image file (decode and resize included)")
    be.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p


def _classifier(args: argparse.Namespace):
    from .classifier import Classifier

    return Classifier(args.model, operating_point=args.operating_point, backend=args.backend, threads=args.threads,
                      interpreters=args.interpreters, kernels=args.kernels, parity=args.parity, dicom_window=args.dicom_window)


def _predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import ConfigError
    from .folder import check_run, output_kind, predict_files

    if args.json and args.format not in (None, "json"):
        raise ConfigError(f"--json with --format {args.format}: choose one")
    out = Path(args.out) if args.out else None
    given = args.format or ("json" if args.json else None)
    kind = output_kind(out, given) if out else (given or "table")
    total = check_run(args.images, args.recursive, out)  # mistakes in inputs and --out before the model loads (seconds on a Pi)
    clf = _classifier(args)
    summary = predict_files(clf, list(args.images), recursive=args.recursive, out=out, kind=kind,
                            progress=None if args.no_progress else args.progress_every, total=total)
    # the summary goes where it cannot corrupt machine-readable rows
    print(summary.line(), file=sys.stdout if out is not None or kind == "table" else sys.stderr)
    return summary.exit_code


def _explain(args: argparse.Namespace) -> None:
    from .explain import check_png_path, explain_to_png
    from .folder import check_inputs

    # every usage mistake before the model loads
    config = OcclusionConfig(patch=args.patch, stride=args.stride, fill=args.fill).validate()
    check_png_path(args.out)
    check_inputs([args.image])
    clf = _classifier(args)
    result = explain_to_png(clf, args.image, args.out, config)
    print(json.dumps(result.summary(), indent=2) if args.json else
          f"{args.out}: p = {result.probability:.4f} -> {result.label} at {result.operating_point}; "
          f"{result.evaluations} inferences ({result.patch_px} px patch, stride {result.stride_px}) in {result.seconds:.1f} s")


def _eval(args: argparse.Namespace) -> None:
    from .classifier import Classifier
    from .datasets import binary_labels, iter_pixel_batches, load_dataset
    from .errors import DataError
    from .evaluation import check_prevalence, predictive_value_text, split_summary
    from .file_sources import SPLIT_FILE, model_source_options

    prevalence = check_prevalence(args.prevalence)
    clf = Classifier(args.model, operating_point=args.operating_point, backend=args.backend, threads=args.threads,
                     pixel_range=args.pixel_range, interpreters=args.interpreters, kernels=args.kernels)
    dataset = load_dataset(args.data, model_source_options(clf.class_names, clf.training_shape, clf.image_size))
    split = dataset.split(args.split)
    if split is None:
        raise DataError(f"{args.data}: no {args.split!r} split; it has {', '.join(dataset.splits)}")
    if dataset.from_files is not None:
        _warn_trained_on(dataset.from_files.rows, args.split, Path(args.model).parent / SPLIT_FILE)
    positive = 1 if dataset.from_files is not None else (
        args.positive_label if args.positive_label is not None else clf.metadata.positive_label)
    y = binary_labels(split, positive)
    logits = np.concatenate([clf.logits(b) for b in iter_pixel_batches(split, np.arange(len(split)), 64, clf.image_size,
                                                                        clf.pixel_range, keep_uint8=True)])
    summary = split_summary(y, logits, clf.operating_points, prevalence)
    if args.json:
        print(json.dumps({"model": str(clf.path), "backend": clf.backend, "kernels": clf.engine.kernels,
                          "split": args.split, **summary.to_dict()}, indent=2))
        return
    auc, one = summary.auc_interval, summary.one_image
    print(f"{clf.path}  {args.split}: {summary.n} images, {summary.positives} positive ({clf.backend}, "
          f"{clf.engine.kernels} kernels)")
    print(f"AUC {auc.value:.4f} [{auc.low:.4f}, {auc.high:.4f}] (95%, DeLong); one image moves sensitivity by "
          f"{one.sensitivity:.4f}, specificity by {one.specificity:.4f}")
    first = next(iter(summary.points.values())).at_prevalence
    prev = f"prevalence {first.prevalence:.4g}" + ("" if first.stated else " (the split's own)")
    print(f"{'operating point':<17} {'threshold':>9}  {'sensitivity [95% Wilson]':<25} {'specificity [95% Wilson]':<25} "
          f"PPV / NPV at {prev}")
    for name, row in summary.points.items():
        print(f"{name:<17} {row.threshold:9.4f}  {row.rate_text('sensitivity'):<25} {row.rate_text('specificity'):<25} "
              f"{predictive_value_text(row, 'ppv')} / {predictive_value_text(row, 'npv')}")


def _warn_trained_on(rows: Iterable[FileRow], split: str, split_file: Path) -> None:
    """Figures on images the model trained on overstate it: say how many, by content, when its split file is known."""
    from .file_sources import trained_on

    if not split_file.is_file():
        return
    evaluated = [row for row in rows if row.split == split]
    seen = trained_on(evaluated, split_file)
    if seen:
        print(f"warning: {len(seen)} of {len(evaluated)} {split} images are files the model was trained on (same sha256 "
              f"as a train row of {split_file}), e.g. {seen[0].path}: these figures overstate the model", file=sys.stderr)


def _bench(args: argparse.Namespace) -> None:
    from .bench import BenchConfig, format_result, run_bench

    result = run_bench(BenchConfig(model=args.model, runs=args.runs, warmup=args.warmup, threads=args.threads,
                                   backend=args.backend, interpreters=args.interpreters, callers=args.callers, kernels=args.kernels,
                                   image=args.image))
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_result(result))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: {"predict": _predict, "explain": _explain, "eval": _eval, "bench": _bench}[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
