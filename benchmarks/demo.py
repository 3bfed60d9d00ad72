"""``python -m benchmarks.demo``: the whole pipeline in one command, offline, in about 5.5 minutes on 2 cores.

It trains the reference model (InceptionV3 at 75x75, its minimum, with random weights: nothing
is downloaded), exports int8 TFLite and ONNX (fp32 and int8, the preset for this CPU family),
benchmarks every format against the float SavedModel and prints the report. It runs on the chest
X-rays bundled with the package (``pneumoniamnist``) unless ``--data`` names other data;
``--data synthetic`` generates a small synthetic dataset instead and says so in the report
(``benchmarks.reference.synthetic_dataset``: not medical data).

The exports are written whatever their drift (``--max-drift none``) and the benchmark judges them
against the default limits, so the demo always shows every format and what int8 cost. A real
export refuses an artifact beyond the limits instead.

At 75x75 with random weights the numbers show the pipeline working, not a clinical model: train
at 299x299 with ImageNet weights for that (see the README). Random weights are also what int8
handles worst: on the synthetic data the int8 exports flip up to 5% of the test decisions.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runtime.cli import Parser, run_cli
from runtime.datasets import load_dataset
from runtime.fileio import check_output_dir

from .reference import (
    REFERENCE_DATA,
    export_reference,
    reference_train_config,
    synthetic_dataset,
)

log = logging.getLogger(__name__)
SYNTHETIC = "synthetic"  # the --data value that generates data in code instead of reading a file


@dataclass(frozen=True)
class DemoResult:
    out: Path
    data: str
    synthetic: bool
    report: Path
    seconds: float


def run_demo(out: str | Path, data: str | Path = REFERENCE_DATA, overwrite: bool = False, runs: int = 30) -> DemoResult:
    """Train, export, benchmark into ``out`` (new or empty; ``overwrite`` clears it first).

    ``data`` is a path, a bundled dataset's name, or ``"synthetic"``.
    """
    from train import train

    from .config import BenchmarkConfig
    from .run import run_benchmarks

    started = time.monotonic()
    out = check_output_dir(out, overwrite)
    model, report = out / "model", out / "benchmark"
    cfg = BenchmarkConfig(model=str(model), out=str(report), runs=runs)  # bad options fail now, not after training
    synthetic = data == SYNTHETIC
    if not synthetic:
        load_dataset(data)  # a missing or malformed dataset fails now, not after training
    if overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if synthetic:
        data = synthetic_dataset(out / "synthetic_data.npz")
        log.warning("using a SYNTHETIC dataset generated in code (%s; 400 + 300 + 300 images per class). "
                    "It is not medical data; its numbers only show the pipeline working.", data)
    log.info("1/3 train: InceptionV3 at 75x75, random weights, seed 0 -> %s", model)
    train(reference_train_config(data, model))
    log.info("2/3 export: int8 TFLite, ONNX fp32 and int8, written whatever their drift: the benchmark judges it")
    export_reference(model, max_drift=None)
    log.info("3/3 benchmark: every format in its own process")
    command = f"python -m benchmarks.demo --out {out}" + ("" if data == REFERENCE_DATA else
                                                          f" --data {SYNTHETIC if synthetic else data}")
    note = ("SYNTHETIC data generated in code (benchmarks.reference.synthetic_dataset), not chest X-rays: "
            "these numbers only show the pipeline working.") if synthetic else ""
    run_benchmarks(cfg, command=command, note=note)
    return DemoResult(out, str(data), synthetic, report, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m benchmarks.demo", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
               formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog="writes OUT/model (SavedModel, model card, exports with their reports) and OUT/benchmark "
                      "(benchmark.md, benchmark.json, plots)")
    p.add_argument("--out", default="runs/demo", help="output directory, new or empty (default runs/demo)")
    p.add_argument("--overwrite", action="store_true", help="delete OUT's contents first")
    p.add_argument("--data", default=REFERENCE_DATA, help=f"labelled images: a .npz, a directory of .npy files, a bundled "
                   f"dataset's name, or {SYNTHETIC!r} for a small synthetic dataset generated in code, not medical data "
                   f"(default: {REFERENCE_DATA}, the chest X-rays bundled with the package)")
    p.add_argument("--runs", type=int, default=30, help="timed batch-1 calls per format and thread count (default 30)")
    args = p.parse_args(argv)

    def go() -> None:
        result = run_demo(args.out, args.data, args.overwrite, args.runs)
        print((result.report / "benchmark.md").read_text(encoding="utf-8"))
        print(f"report: {result.report / 'benchmark.md'} (with benchmark.json and plots); model and exports: {result.out / 'model'}")
        if result.synthetic:
            print(f"NOTE: trained and scored on SYNTHETIC data ({result.data}), not on chest X-rays.")
        print(f"done in {result.seconds / 60:.1f} minutes: {result.out}")

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
