"""``python -m benchmarks.train_speed``: today's training against the previous one, side by side, seed by seed.

Runs ``python -m train`` on the bundled data in a fresh process per run, alternating the two recipes seed by seed
(previous, current, current, previous, ...) so that a machine that slows down mid-run slows both alike, and prints
for each run the wall time of the whole command, the fine-tuning epochs and their mean time, and the test ROC AUC
with its 95% DeLong interval, then the ratio of the two recipes' total times. Prints figures; asserts nothing.

- ``previous``: the notebook's ``model.fit`` engine (``--engine keras-fit``) and the fine-tuning it ran with
  (mixed9..mixed10, Adam at 3e-4, LR divided by 10 after 2 epochs without improvement, up to 30 epochs, early
  stopping after 3).
- ``current``: the defaults (``train.loop``; mixed8..mixed10, 8 epochs on a cosine schedule), with ``--precision``
  as given (bfloat16 fine-tuning pays at 299x299 on CPUs with AVX512-BF16 or AMX; ``train.precision``).

    python -m benchmarks.train_speed --image-size 75 --seeds 0 1 2 --work runs/train_speed
    python -m benchmarks.train_speed --image-size 299 --seeds 0 --precision bfloat16 --work runs/train_speed
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.cli import DefaultsHelpFormatter, Parser, run_cli
from train.card import ModelCard
from train.precision import PRECISIONS

ROOT = Path(__file__).resolve().parents[1]
RECIPES: dict[str, list[str]] = {
    "previous": ["--engine", "keras-fit", "--fine-tune", "mixed9", "--fine-tune-schedule", "plateau",
                 "--fine-tune-epochs", "30", "--fine-tune-learning-rate", "3e-4"],
    "current": [],
}


@dataclass(frozen=True)
class SpeedConfig:
    work: str  # one model directory per run goes here
    image_size: int = 75  # 75: the tests' reference model; 299: the product's size (about 26 minutes a run before)
    seeds: tuple[int, ...] = (0, 1, 2)
    data: str = "pneumoniamnist"
    precision: str = "float32"  # the current recipe's --precision; the previous recipe always ran float32


@dataclass(frozen=True)
class RunResult:
    recipe: str
    precision: str
    seed: int
    wall_seconds: float  # the whole command: imports, data, features, training, export, evaluation
    fine_tune_epochs: int
    seconds_per_epoch: float
    test_auc: float
    test_auc_interval: tuple[float, float]
    youden_sensitivity: float
    youden_specificity: float


def train_once(cfg: SpeedConfig, recipe: str, seed: int) -> RunResult:
    precision = cfg.precision if recipe == "current" else "float32"
    out = Path(cfg.work) / f"{recipe}_{precision}_{cfg.image_size}_seed{seed}"
    argv = [sys.executable, "-m", "train", "--data", cfg.data, "--image-size", str(cfg.image_size), "--weights", "none",
            "--seed", str(seed), "--out", str(out), "--overwrite", *RECIPES[recipe], "--precision", precision]
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    wall = time.perf_counter() - started
    card = ModelCard.load(out)
    stage = card.training["stages"]["fine_tune"]  # the stage record train.loop (or model.fit) wrote
    test = card.metrics["test"]
    youden = test.points["youden"]
    return RunResult(recipe, precision, seed, round(wall, 1), stage["epochs_run"], round(stage["seconds"] / stage["epochs_run"], 2),
                     round(test.auc, 4), (round(test.auc_interval.low, 4), round(test.auc_interval.high, 4)),
                     round(youden.sensitivity, 3), round(youden.specificity, 3))


def run(cfg: SpeedConfig) -> list[RunResult]:
    results = []
    for i, seed in enumerate(cfg.seeds):
        order = ("previous", "current") if i % 2 == 0 else ("current", "previous")
        for recipe in order:
            result = train_once(cfg, recipe, seed)
            print(json.dumps(asdict(result)), file=sys.stderr, flush=True)
            results.append(result)
    return results


def report(results: list[RunResult]) -> str:
    lines = ["| recipe | precision | seed | wall s | fine-tune epochs | s/epoch | test AUC (95% CI) | Youden sens | Youden spec |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for r in sorted(results, key=lambda r: (r.seed, r.recipe != "previous")):
        lo, hi = r.test_auc_interval
        lines.append(f"| {r.recipe} | {r.precision} | {r.seed} | {r.wall_seconds:.0f} | {r.fine_tune_epochs} | {r.seconds_per_epoch:.1f} | "
                     f"{r.test_auc:.3f} ({lo:.3f}-{hi:.3f}) | {r.youden_sensitivity:.3f} | {r.youden_specificity:.3f} |")
    total = {name: sum(r.wall_seconds for r in results if r.recipe == name) for name in RECIPES}
    if total["previous"]:
        lines.append(f"\ncurrent / previous wall time: {total['current'] / total['previous']:.2f} "
                     f"({total['current']:.0f} s against {total['previous']:.0f} s over {len(results) // 2} seed(s))")
    inside = [c.test_auc_interval[0] <= p.test_auc <= c.test_auc_interval[1]
              for p in results if p.recipe == "previous" for c in results if c.recipe == "current" and c.seed == p.seed]
    lines.append(f"previous test AUC inside the current run's 95% interval: {sum(inside)} of {len(inside)} seeds")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.train_speed", description=__doc__.split("\n\n")[0],
               formatter_class=DefaultsHelpFormatter)
    p.add_argument("--work", required=True, help="folder for the trained models (one per run)")
    p.add_argument("--image-size", type=int, default=SpeedConfig.image_size, help="training size (75 or 299)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SpeedConfig.seeds), help="seeds, each trained with both recipes")
    p.add_argument("--data", default=SpeedConfig.data, help="training data (as python -m train takes it)")
    p.add_argument("--precision", default=SpeedConfig.precision, choices=PRECISIONS,
                   help="the current recipe's --precision (python -m train --help)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> None:
        print(report(run(SpeedConfig(args.work, args.image_size, tuple(args.seeds), args.data, args.precision))))

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
