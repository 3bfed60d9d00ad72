"""What train/serve parity is worth: the model on enlarged copies of its own test images.

A clinic sends full-resolution X-rays; the model trained on 28x28 ones. To measure the effect
without other full-resolution data, every test image is enlarged to 224 and 1024 px, once
smoothly (bicubic) and once sharply (nearest neighbour), then classified with parity on
(``--parity crop``: area-averaged back to 28 px, then enlarged as in training) and off (resized
straight to the model size). Each run's decisions are compared with those on the 28 px
originals: agreement with its Wilson interval and the AUC with its DeLong interval.

A second table compares downsampling filters by how close they bring an enlarged image back to
its original (mean absolute pixel difference), the reason ``runtime.parity`` uses an area
average.

    python -m benchmarks.parity runs/p75/model_int8.tflite
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from runtime.classifier import Classifier
from runtime.cli import Parser, run_cli
from runtime.datasets import binary_labels, load_dataset
from runtime.errors import ConfigError, DataError
from runtime.parity import area_resize
from runtime.stats import auc_interval, wilson

UPSAMPLING = {"smooth (bicubic)": Image.Resampling.BICUBIC, "sharp (nearest)": Image.Resampling.NEAREST}
# "area" is runtime.parity's own (averaged in float, rounded once); the others are PIL's uint8 filters
FILTERS = {"area (runtime.parity)": None, "bilinear": Image.Resampling.BILINEAR,
           "lanczos": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST}
_CHUNK = 16  # enlarged images held at once: 16 x 1024 x 1024 bytes


@dataclass(frozen=True)
class ParityConfig:
    model: str
    data: str = "pneumoniamnist"
    split: str = "test"
    sizes: tuple[int, ...] = (224, 1024)  # a typical CNN input and a detector's full resolution
    operating_point: str = "youden"
    threads: int | None = None


def _enlarged(images: np.ndarray, size: int, method: Image.Resampling) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), method)) for im in images])


def _logits(clf: Classifier, images: np.ndarray, size: int | None, method: Image.Resampling | None) -> np.ndarray:
    out = []
    for start in range(0, len(images), _CHUNK):
        chunk = images[start:start + _CHUNK]
        if size is not None:
            chunk = _enlarged(chunk, size, method)  # type: ignore[arg-type]
        out.append(clf.logits(clf.pixels(chunk)))
    return np.concatenate(out)


def filter_errors(images: np.ndarray, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """Mean |pixel difference| to the original after enlarging and bringing back with each filter."""
    h, w = images.shape[1:3]
    rows = []
    for size in sizes:
        for up_name, up in UPSAMPLING.items():
            errors = {name: 0.0 for name in FILTERS}
            for start in range(0, len(images), _CHUNK):
                chunk = images[start:start + _CHUNK]
                for big, original in zip(_enlarged(chunk, size, up), chunk):
                    for name, down in FILTERS.items():
                        back = (area_resize(big, h, w) if down is None
                                else np.asarray(Image.fromarray(big).resize((w, h), down))).astype(np.int64)
                        errors[name] += float(np.abs(back - original).mean())
            rows.append({"size": size, "upsampling": up_name, **{k: v / len(images) for k, v in errors.items()}})
    return rows


def run_parity(cfg: ParityConfig) -> dict[str, Any]:
    """Agreement and AUC of every (size, upsampling, parity) run against the 28 px originals."""
    if any(s < 28 for s in cfg.sizes):
        raise ConfigError(f"--sizes {','.join(map(str, cfg.sizes))}: expected sizes larger than the training images")
    started = time.perf_counter()
    parity_on = Classifier(cfg.model, operating_point=cfg.operating_point, threads=cfg.threads, parity="crop")
    parity_off = Classifier(cfg.model, operating_point=cfg.operating_point, threads=cfg.threads, parity="off")
    if parity_on.training_shape is None:
        raise DataError(f"{cfg.model}: records no training image size; re-export it to measure parity")
    dataset = load_dataset(cfg.data)
    split = dataset.split(cfg.split)
    if split is None:
        raise DataError(f"{cfg.data}: no {cfg.split!r} split; it has {', '.join(dataset.splits)}")
    images = np.asarray(split.images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(f"{cfg.data}: {cfg.split} images are {images.dtype} {images.shape}; expected uint8 grayscale")
    y = binary_labels(split, parity_on.metadata.positive_label)
    threshold_logit = float(np.log(parity_on.threshold / (1 - parity_on.threshold)))
    base = _logits(parity_off, images, None, None)
    base_decisions = base >= threshold_logit
    rows = [{"size": int(images.shape[1]), "upsampling": "none (the originals)", "parity": "-",
             "agreement": wilson(len(y), len(y)).to_dict(), "auc": auc_interval(y, base).to_dict(),
             "mean_abs_delta_logit": 0.0}]
    for size in cfg.sizes:
        for up_name, up in UPSAMPLING.items():
            for label, clf in (("on (crop)", parity_on), ("off", parity_off)):
                logits = _logits(clf, images, size, up)
                same = int(np.sum((logits >= threshold_logit) == base_decisions))
                rows.append({"size": size, "upsampling": up_name, "parity": label,
                             "agreement": wilson(same, len(y)).to_dict(), "auc": auc_interval(y, logits).to_dict(),
                             "mean_abs_delta_logit": float(np.mean(np.abs(logits - base)))})
    return {"config": asdict(cfg), "model": str(parity_on.path), "backend": parity_on.backend, "images": len(y),
            "one_image": 1 / len(y), "operating_point": cfg.operating_point, "rows": rows,
            "filters": filter_errors(images, cfg.sizes), "seconds": round(time.perf_counter() - started, 1)}


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['model']} ({report['backend']}), {report['config']['split']} split: {report['images']} images, "
             f"decisions at {report['operating_point']} compared with those on the originals (one image = "
             f"{report['one_image']:.4f}); {report['seconds']} s", "",
             "| size | upsampling | parity | agreement [95% Wilson] | AUC [95% DeLong] | mean abs d logit |",
             "| ---: | --- | --- | --- | --- | ---: |"]
    for r in report["rows"]:
        a, auc = r["agreement"], r["auc"]
        lines.append(f"| {r['size']} | {r['upsampling']} | {r['parity']} | {a['value']:.4f} [{a['low']:.4f}, {a['high']:.4f}] | "
                     f"{auc['value']:.4f} [{auc['low']:.4f}, {auc['high']:.4f}] | {r['mean_abs_delta_logit']:.4f} |")
    lines += ["", "Mean |pixel difference| (0-255) to the original after enlarging and downsampling back:", "",
              "| size | upsampling | " + " | ".join(FILTERS) + " |", "| ---: | --- |" + " ---: |" * len(FILTERS)]
    for r in report["filters"]:
        lines.append(f"| {r['size']} | {r['upsampling']} | " + " | ".join(f"{r[k]:.2f}" for k in FILTERS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m benchmarks.parity", description=__doc__.split("\n\n")[1],
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an exported .tflite or .onnx file (a model file is positional, as for python -m runtime; "
                   "--model names a model directory)")
    p.add_argument("--data", default="pneumoniamnist", help="labelled data at the training resolution (default: the bundled file)")
    p.add_argument("--split", default="test", help="which split (default test)")
    p.add_argument("--sizes", default="224,1024", help="enlarged sizes, comma separated (default 224,1024)")
    p.add_argument("--operating-point", default="youden", help="decision threshold from the model card")
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: every core)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)

    def action() -> None:
        try:
            sizes = tuple(int(s) for s in args.sizes.split(","))
        except ValueError:
            raise ConfigError(f"--sizes {args.sizes!r}: expected integers such as 224,1024") from None
        report = run_parity(ParityConfig(args.model, args.data, args.split, sizes, args.operating_point, args.threads))
        print(json.dumps(report, indent=2) if args.json else format_report(report))

    return run_cli(action)


if __name__ == "__main__":
    sys.exit(main())
