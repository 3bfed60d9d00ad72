"""``pytest benchmarks/``: the accuracy-drift checks, on a cached small model or on any trained model directory.

Options (each also read from an environment variable, for CI jobs that cannot change the command):

- ``--bench-model DIR`` (``INCEPTION_EDGE_BENCH_MODEL``): a model directory with its exports. Default:
  the small reference model (75x75, seed 0) trained and exported from the bundled PneumoniaMNIST
  arrays once and cached in ``.pytest_cache`` (see ``benchmarks.reference``).
- ``--bench-data PATH`` (``INCEPTION_EDGE_BENCH_DATA``): the labelled data to score on; default:
  the data file the model card names.
- ``--max-drift SPEC`` (``INCEPTION_EDGE_MAX_DRIFT``): the limits, as for the exports, e.g.
  ``sensitivity=0.03,agreement=0.97``; unnamed keys keep the exports' defaults (export.config.DriftLimits).
  Each int8 artifact must have passed its export's non-inferiority gate at limits no looser than
  these (on thousands of pooled images), and the benchmark's own split must show no change beyond
  them at 95% confidence (docs/statistics.md).
- ``--bench-runs N`` (``INCEPTION_EDGE_BENCH_RUNS``): timed calls per process (default 30; three processes per
  format, at every core).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.reference import REFERENCE_DATA, REFERENCE_EXPORTS

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tests/conftest.py: the trainer's kernels in every process

_OPTIONS = (("--bench-model", "INCEPTION_EDGE_BENCH_MODEL", None, "model directory to check (default: the cached small model)"),
            ("--bench-data", "INCEPTION_EDGE_BENCH_DATA", None, "labelled data (default: the file the model card names)"),
            ("--max-drift", "INCEPTION_EDGE_MAX_DRIFT", "", "drift limits KEY=VALUE,... (sensitivity, specificity, auc, agreement)"),
            ("--bench-runs", "INCEPTION_EDGE_BENCH_RUNS", "30", "timed batch-1 calls per process (three per format)"))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("inception-edge benchmarks")
    for flag, env, default, text in _OPTIONS:
        group.addoption(flag, default=None, help=f"{text}; env {env}" + (f"; default {default}" if default else ""))


def option(config: pytest.Config, flag: str) -> str | None:
    """A benchmark option: the command line first, then its environment variable, then its default."""
    _, env, default, _ = next(o for o in _OPTIONS if o[0] == flag)
    value = config.getoption(flag)
    return value if value is not None else os.environ.get(env, default)


def _int8_names(config: pytest.Config) -> list[str]:
    model = option(config, "--bench-model")
    if not model:
        return [n for n in REFERENCE_EXPORTS if "int8" in n]
    from benchmarks.formats import discover_formats
    from train.card import ModelCard

    try:
        formats = discover_formats(Path(model), ModelCard.load(model))
    except Exception:  # noqa: BLE001 - reported by the fixture, with its typed message, when the tests run
        return ["(model directory unreadable)"]
    return [n for n, f in formats.items() if f.int8]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "int8_artifact" in metafunc.fixturenames:
        metafunc.parametrize("int8_artifact", _int8_names(metafunc.config))


@pytest.fixture(scope="session")
def drift_limits(request):
    from export.config import DriftLimits

    spec = option(request.config, "--max-drift")
    limits = DriftLimits.parse(spec) if spec else DriftLimits()
    if limits is None:
        pytest.fail("--max-drift none: the drift checks need limits")
    return limits


@pytest.fixture(scope="session")
def bench_model_dir(request, tmp_path_factory) -> Path:
    model = option(request.config, "--bench-model")
    if model:
        return Path(model)
    from benchmarks.reference import cached_reference_model, model_cache_root

    return cached_reference_model(model_cache_root(request.config, tmp_path_factory), REFERENCE_DATA)


@pytest.fixture(scope="session")
def benchmark_report(request, bench_model_dir, drift_limits, tmp_path_factory):
    """Every format of the model, measured once per session (one process per format and thread count)."""
    from benchmarks.config import BenchmarkConfig
    from benchmarks.run import run_benchmarks

    out = tmp_path_factory.mktemp("benchmark") / "report"
    # every core only: the checks compare the widest thread count, in three fresh processes per format
    cfg = BenchmarkConfig(model=str(bench_model_dir), data=option(request.config, "--bench-data"), out=str(out),
                          runs=int(option(request.config, "--bench-runs")), threads=(os.cpu_count() or 1,), rounds=3,
                          throughput_runs=2, max_drift=drift_limits.spec())
    report = run_benchmarks(cfg, command="pytest benchmarks/")
    request.config.stash[_REPORT] = (out / "benchmark.md").read_text(encoding="utf-8")
    return report


_REPORT = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    text = config.stash.get(_REPORT, None)
    if text:
        terminalreporter.section("inception-edge benchmark")
        terminalreporter.write(text)
