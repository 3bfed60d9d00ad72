"""``python -m benchmarks.ingest``: how fast image files become training images, and what memory it takes.

Generates full-resolution files (8-bit JPEGs and 16-bit DICOMs, each with its own noise so no two
are identical), then reads them as a folder source the way training does (hash every file, decode
each once through the runtime's reader and transform, write the store) in a fresh process per
measurement, and prints: files, seconds, images/s, peak RSS, the store's size on disk, and the time
of a second run that finds the store. Peak RSS is the figure to watch across file counts: it must
not grow with them. Prints figures; asserts nothing. The generated files are deleted at the end
unless ``--keep``.

    python -m benchmarks.ingest --work /tmp/ingest --jpegs 2000 20000 --dicoms 2000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runtime.cli import DefaultsHelpFormatter, Parser, run_cli
from runtime.image_store import ordered_map

from .xray_files import write_dicom16

CLASSES = ("NORMAL", "PNEUMONIA")


@dataclass(frozen=True)
class IngestConfig:
    work: str  # generated files and the store go here (a few GB for 20,000 1,024 px JPEGs)
    jpegs: tuple[int, ...] = (2000, 20000)  # file counts measured, each in a fresh process
    dicoms: int = 2000  # 16-bit DICOMs (0: none)
    px: int = 1024  # generated images are px x px
    size: int = 75  # training size the files are brought to
    workers: int | None = None  # decoding threads (default: every core)
    keep: bool = False  # keep the generated files (default: delete them, they are large)


@dataclass(frozen=True)
class IngestResult:
    kind: str
    files: int
    first_seconds: float
    images_per_second: float
    peak_rss_mb: float
    store_mb: float
    second_seconds: float


def _base_images(px: int) -> list[np.ndarray]:
    """A few real chest X-rays (the bundled test split) enlarged to ``px``: what the generated files vary."""
    from PIL import Image

    from runtime.datasets import load_dataset

    test = load_dataset("pneumoniamnist").splits["test"]
    return [np.asarray(Image.fromarray(test.images[i]).resize((px, px), Image.Resampling.BICUBIC)) for i in range(0, 468, 47)]


def generate(folder: Path, count: int, kind: str, px: int, workers: int) -> None:
    """``count`` files in ``folder``/CLASS/, half per class, each a base X-ray plus its own noise."""
    from PIL import Image

    bases = _base_images(px)
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)

    def write(i: int) -> None:
        rng = np.random.default_rng(i)
        noise = rng.integers(-6, 7, size=(px, px), dtype=np.int16)
        image = np.clip(bases[i % len(bases)].astype(np.int16) + noise, 0, 255).astype(np.uint8)
        path = folder / CLASSES[i % 2] / f"p{i}_0.{'jpeg' if kind == 'jpeg' else 'dcm'}"
        if kind == "jpeg":
            Image.fromarray(image).save(path, quality=90)
        else:
            write_dicom16(path, image)

    for _ in ordered_map(write, range(count), workers):
        pass


_MEASURE = """
import json, os, resource, sys, time
from pathlib import Path
from runtime.file_sources import FileSourceOptions, read_file_source
started = time.perf_counter()
splits, report = read_file_source(Path(sys.argv[1]), FileSourceOptions(size=int(sys.argv[2]), class_names=("NORMAL", "PNEUMONIA"),
                                  unsplit="test", workers=None if sys.argv[3] == "None" else int(sys.argv[3])))
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "files": len(report.rows), "store": report.store,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _measure(folder: Path, size: int, workers: int | None, cache: Path) -> dict[str, float | str]:
    env = {**os.environ, "INCEPTION_EDGE_DATA_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(folder), str(size), str(workers)], env=env, check=True,
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def measure(cfg: IngestConfig, kind: str, count: int) -> IngestResult:
    work = Path(cfg.work)
    folder, cache = work / f"{kind}_{count}", work / f"cache_{kind}_{count}"
    shutil.rmtree(cache, ignore_errors=True)
    started = time.perf_counter()
    generate(folder, count, kind, cfg.px, cfg.workers or os.cpu_count() or 1)
    print(f"generated {count} {kind} files of {cfg.px}x{cfg.px} ({_du_mb(folder):.0f} MB) in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    first = _measure(folder, cfg.size, cfg.workers, cache)
    second = _measure(folder, cfg.size, cfg.workers, cache)
    result = IngestResult(kind, count, round(float(first["seconds"]), 1), round(count / float(first["seconds"]), 1),
                          round(float(first["peak_rss_mb"]), 1), round(_du_mb(Path(str(first["store"]))), 1),
                          round(float(second["seconds"]), 1))
    if not cfg.keep:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    return result


def run(cfg: IngestConfig) -> list[IngestResult]:
    plan = [("jpeg", n) for n in cfg.jpegs] + ([("dicom", cfg.dicoms)] if cfg.dicoms else [])
    return [measure(cfg, kind, count) for kind, count in plan]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.ingest", description=__doc__.split("\n\n")[0], formatter_class=DefaultsHelpFormatter)
    p.add_argument("--work", required=True, help="folder for the generated files and their store (needs a few GB)")
    p.add_argument("--jpegs", type=int, nargs="+", default=list(IngestConfig.jpegs), help="JPEG file counts to measure")
    p.add_argument("--dicoms", type=int, default=IngestConfig.dicoms, help="16-bit DICOM files to measure (0: none)")
    p.add_argument("--px", type=int, default=IngestConfig.px, help="side of the generated images")
    p.add_argument("--size", type=int, default=IngestConfig.size, help="training size the files are brought to")
    p.add_argument("--workers", type=int, default=None, help="decoding threads (default: every core)")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> None:
        cfg = IngestConfig(args.work, tuple(args.jpegs), args.dicoms, args.px, args.size, args.workers, args.keep)
        print(f"{'kind':<6} {'files':>6} {'first s':>8} {'images/s':>9} {'peak RSS MB':>12} {'store MB':>9} {'second s':>9}")
        for r in run(cfg):
            print(f"{r.kind:<6} {r.files:>6} {r.first_seconds:>8.1f} {r.images_per_second:>9.1f} {r.peak_rss_mb:>12.1f} "
                  f"{r.store_mb:>9.1f} {r.second_seconds:>9.1f}", flush=True)
            print(json.dumps(asdict(r)), file=sys.stderr)

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
