"""``python -m benchmarks --model DIR``: every export of a model against its float SavedModel, in one table."""

from __future__ import annotations

import argparse
import shlex
import sys

from export.config import DriftLimits
from runtime.cli import Parser, run_cli

from .config import FLAGS, BenchmarkConfig

EXAMPLE = """examples:
  python -m benchmarks --model runs/p299 --data pneumoniamnist
  python -m benchmarks --model runs/p299 --formats model_int8.tflite,model_int8.onnx --runs 100 --out bench299
  python -m benchmarks.demo          # the whole pipeline, offline: train, export, benchmark (about 5.5 minutes on 2 cores)

writes OUT/benchmark.md (tables), OUT/benchmark.json (every figure, the machine, the versions, the command),
OUT/benchmark_config.json, and OUT/roc.png, latency.png, size.png"""


def _csv(kind: type, flag: str):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} {text!r}: expected a comma-separated list of {kind.__name__}") from None
    return parse


def build_parser() -> argparse.ArgumentParser:
    d = BenchmarkConfig
    p = Parser(prog="python -m benchmarks",
               description="Measure the float SavedModel and every exported artifact (TFLite, ONNX) of a model directory: "
               "size, load time, batch-1 latency at 1 thread and at every core, batch throughput, peak RSS, ROC AUC and "
               "sensitivity/specificity at every operating point of the model card, and the change of each against the "
               "float model. Each format runs in its own process. An export that failed shows as failed in the table.",
               epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a model directory (python -m train's --out, with the exports in it)")
    p.add_argument("--data", default=None, help="labelled images (.npz, a directory of .npy, a folder or CSV of image files, "
                   "or a bundled dataset's name, as for python -m train); default: the data the model card names, if its "
                   "sha256 still matches (a model trained from files: every file its data_files.csv lists)")
    p.add_argument("--split", default=d.split, help=f"the split to score on (default {d.split}: no training or export "
                   "choice has seen it)")
    p.add_argument("--formats", type=_csv(str, "--formats"), default=(), help="comma-separated file names to measure, e.g. "
                   "model_int8.tflite,model_fp32.onnx (default: every .tflite and .onnx in the model directory; the "
                   "SavedModel always runs as the reference)")
    p.add_argument("--out", default=None, help="report directory (default: MODEL/benchmark); must be new or empty")
    p.add_argument("--overwrite", action="store_true", help="replace the report directory, atomically and only on success")
    p.add_argument("--runs", type=int, default=d.runs, help=f"timed batch-1 calls per process (default {d.runs})")
    p.add_argument("--rounds", type=int, default=d.rounds, help="fresh processes per format at the widest thread count, "
                   "the formats taking turns; the speed comparison's interval is taken over them (at least 2 for one; "
                   f"default {d.rounds})")
    p.add_argument("--warmup", type=int, default=d.warmup, help=f"untimed calls before timing (default {d.warmup})")
    p.add_argument("--threads", type=_csv(int, "--threads"), default=(), help="thread counts to time at, e.g. 1,4 "
                   "(default: 1 and every core of this machine)")
    p.add_argument("--throughput-batch", type=int, default=d.throughput_batch,
                   help=f"batch size of the throughput run (default {d.throughput_batch}; 0 skips it)")
    p.add_argument("--max-drift", default="", help="limits the report judges each format's drift by, KEY=VALUE,... over "
                   f"{DriftLimits().spec()} (the exports' defaults), or none")
    p.add_argument("--flag", default=d.flag, choices=FLAGS, help="when a format's drift on the split is flagged: "
                   "inferiority (default) when the whole 95%% interval of a change lies beyond a limit (the export's gate, "
                   "on thousands of pooled images, showed it lies within); point when an observed change lies beyond a "
                   "limit, as the exporters' --gate point judges (one image can flip it)")
    p.add_argument("--prevalence", type=float, default=None, help="share of positives where the model is used, for PPV "
                   "and NPV with intervals (default: the split's own)")
    p.add_argument("--timeout-s", type=float, default=d.timeout_s, help=f"limit per worker process (default {d.timeout_s:.0f})")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return p


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    return BenchmarkConfig(model=args.model, data=args.data, split=args.split, formats=args.formats, out=args.out,
                           overwrite=args.overwrite, runs=args.runs, rounds=args.rounds, warmup=args.warmup, threads=args.threads,
                           throughput_batch=args.throughput_batch, max_drift=args.max_drift, flag=args.flag,
                           prevalence=args.prevalence, timeout_s=args.timeout_s, plots=not args.no_plots)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)

    def go() -> None:
        from .run import run_benchmarks

        cfg = config_from_args(args)
        run_benchmarks(cfg, command=shlex.join(["python", "-m", "benchmarks", *argv]))
        print((cfg.out_dir / "benchmark.md").read_text(encoding="utf-8"))
        print(cfg.out_dir)

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
