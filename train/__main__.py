"""``python -m train``: train the balanced InceptionV3 classifier (a thin layer over :func:`train.train`)."""

from __future__ import annotations

import argparse
import sys

from runtime.cli import DefaultsHelpFormatter, Parser, run_cli

from .config import ENGINES, FINE_TUNE_BLOCKS, SCHEDULES, TrainConfig
from .distribute import DISTRIBUTE
from .precision import PRECISIONS

EXAMPLE = "example: python -m train --data pneumoniamnist --image-size 75 --weights none --out runs/pneumonia75"


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig.__dataclass_fields__
    p = Parser(
        prog="python -m train",
        description="Train InceptionV3 (frozen base, GlobalAveragePooling2D, Dense(1) logit) on class-balanced "
                    "image arrays; write a SavedModel that takes raw 0-255 RGB pixels, a model card and the config.",
        epilog=EXAMPLE, formatter_class=DefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, help="a MedMNIST-style .npz (train_images/train_labels, optional val_*, test_*), "
                   "a directory with Xtrain.npy/Ytrain.npy (optional Xval/Yval, Xtest/Ytest), a folder of image files "
                   "(ROOT/CLASS/* or ROOT/{train,val,test}/CLASS/*: PNG, JPEG, DICOM), a CSV manifest (path,label"
                   "[,split][,patient]), or the name of a bundled dataset: pneumoniamnist (balanced PneumoniaMNIST chest "
                   "X-rays, CC BY 4.0; a local path of that name is written ./pneumoniamnist)")
    g.add_argument("--pixel-range", default=None, help="LOW,HIGH value range of float images, e.g. 0,1; required for float data, never guessed")
    g.add_argument("--positive-label", type=int, default=d["positive_label"].default, help="label value of the positive class (mapped to 1)")
    g.add_argument("--class-names", default=",".join(d["class_names"].default), help="NEGATIVE,POSITIVE names for the model card")
    g.add_argument("--val-fraction", type=float, default=d["val_fraction"].default, help="stratified hold-out from train when the data has no val split")
    g.add_argument("--no-balance", dest="balance", action="store_false", help="train on every training row instead of a balanced subset")
    g.add_argument("--subclass-labels", default=None, help=".npy of per-row subclass ids for the training split: undersample within them proportionally")
    f = p.add_argument_group("image files (a folder or CSV --data; docs/data.md)")
    f.add_argument("--positive-class", default=None, help="the positive class by name (a folder name or CSV label), "
                   "e.g. PNEUMONIA; required for image files, never taken from sort order")
    f.add_argument("--patient-pattern", default=None, help="regex on the file name whose first group is the patient id, "
                   "e.g. 'person(\\d+)_' for Kermany's files; needed to split files that come without splits")
    f.add_argument("--path-column", default=d["path_column"].default, help="CSV column of image paths (relative to the CSV)")
    f.add_argument("--label-column", default=d["label_column"].default, help="CSV column of class labels")
    f.add_argument("--split-column", default=d["split_column"].default, help="CSV column of train/val/test (optional)")
    f.add_argument("--patient-column", default=d["patient_column"].default, help="CSV column of patient ids (optional)")
    f.add_argument("--test-fraction", type=float, default=d["test_fraction"].default,
                   help="share of each class held out as test, by patient, when the files come without splits")
    f.add_argument("--skip-unreadable", action="store_true", help="train without files that cannot be decoded "
                   "(default: list every bad file and stop); the model card names the files left out")
    m = p.add_argument_group("model")
    m.add_argument("--out", required=True, help="output directory (must be new or empty unless --overwrite)")
    m.add_argument("--overwrite", action="store_true", help="replace a non-empty --out (atomically, on success only)")
    m.add_argument("--image-size", type=int, default=None, help="square input size to resize to (default 299; InceptionV3's minimum is 75)")
    m.add_argument("--no-resize", dest="resize", action="store_false", help="train at the arrays' own square size (must be >= 75)")
    m.add_argument("--weights", default=d["weights"].default, help="imagenet (Keras download), none (random), or a local .h5 of InceptionV3 without its top")
    m.add_argument("--fine-tune", default=d["fine_tune"].default, choices=("auto", "none", *FINE_TUNE_BLOCKS),
                   help="first InceptionV3 block to train; auto = none for pretrained weights, mixed8 for --weights none")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=d["epochs"].default, help="head epochs (the notebook's 20)")
    t.add_argument("--learning-rate", type=float, default=d["learning_rate"].default, help="Adam learning rate for the head")
    t.add_argument("--fine-tune-epochs", type=int, default=d["fine_tune_epochs"].default, help="epochs for the fine-tuned blocks")
    t.add_argument("--fine-tune-learning-rate", type=float, default=d["fine_tune_learning_rate"].default, help="Adam learning rate for fine-tuning")
    t.add_argument("--fine-tune-schedule", default=d["fine_tune_schedule"].default, choices=SCHEDULES,
                   help="cosine: the rate decays to 0 over exactly --fine-tune-epochs, best validation epoch kept; "
                   "plateau: cut the rate on a val_loss plateau and stop early, as the head does")
    t.add_argument("--batch-size", type=int, default=d["batch_size"].default)
    t.add_argument("--early-stopping-patience", type=int, default=d["early_stopping_patience"].default, help="epochs without val_loss improvement")
    t.add_argument("--target-sensitivity", type=float, default=d["target_sensitivity"].default, help="for the high_sensitivity operating point")
    t.add_argument("--target-specificity", type=float, default=d["target_specificity"].default, help="for the high_specificity operating point")
    t.add_argument("--prevalence", type=float, default=None, help="share of positives where the model will be used "
                   "(e.g. 0.05): the model card gives PPV and NPV at it, with intervals (default: each split's own)")
    t.add_argument("--seed", type=int, default=d["seed"].default, help="seeds balancing, splitting, initialization and shuffling")
    t.add_argument("--distribute", default=d["distribute"].default, choices=DISTRIBUTE,
                   help="mirrored: tf.distribute.MirroredStrategy over every local GPU; multiworker: "
                   "MultiWorkerMirroredStrategy over the processes the TF_CONFIG environment variable names, one per "
                   "machine, each started with the same command (the chief writes --out; docs/train.md)")
    t.add_argument("--engine", default=d["engine"].default, choices=ENGINES,
                   help="loop: the training loop under tf.distribute (every --distribute); keras-fit: the notebook's "
                   "model.fit, the slower reference (not with multiworker)")
    t.add_argument("--precision", default=d["precision"].default, choices=PRECISIONS,
                   help="bfloat16: the fine-tuning step computes in bfloat16, about 0.65x the float32 epoch at 299x299 "
                   "on CPUs with AVX512-BF16 or AMX (refused on others); weights, the saved model and its metrics stay "
                   "float32")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from runtime.errors import ConfigError

    if not args.resize and args.image_size is not None:
        raise ConfigError(f"--no-resize with --image-size {args.image_size}: choose one")
    values = vars(args).copy()
    values["image_size"] = values["image_size"] if values["image_size"] is not None else TrainConfig.image_size
    values["class_names"] = tuple(s.strip() for s in args.class_names.split(","))
    return TrainConfig(**values)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> None:
        from . import train

        result = train(config_from_args(args))
        if result.card is not None:  # a multiworker cluster's other workers write nothing; the chief prints the model
            print(result.out)

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
