"""The int8 recipe both formats follow, written once: calibrate, build plain int8, rank the layers, search, time,
describe.

A format (``export.tflite``, ``export.onnx``) supplies its calibration, which yields an
:class:`Int8Format`: how to write an artifact with a given set of nodes left in float, how to
measure each layer's int8 error, and which nodes keep one ranked layer in float. Everything that
judges (the gate, its statistics, the fallback's stop rule) happens here and in
:mod:`export.fallback` / :mod:`export.verify`, so a TFLite and an ONNX export of the same model
are accepted or refused by the same numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import ExportConfig
from .fallback import FallbackOutcome, log_ranking, measure_latency, search
from .layer_errors import LayerError, layer_report, rank
from .session import ExportSession
from .verify import SELECTION_SPLITS

log = logging.getLogger("export")


@dataclass(frozen=True)
class Int8Format:
    """What one format contributes to :func:`quantize`."""

    build: Callable[[list[str], int], tuple[Path, dict[str, Any]]]  # (float nodes, step) -> artifact path, its record
    layer_errors: Callable[[np.ndarray], list[LayerError]]  # per-layer int8 error on these calibration images
    layer_method: str  # how layer_errors measures, for the report
    fallback_group: Callable[[LayerError], list[str]]  # the nodes that keep one ranked layer's output in float
    kernel_sets: tuple[str, ...] = ("default",)  # every kernel set the gate must pass on


@dataclass
class Int8Outcome:
    """The step to publish and the sidecar sections the search produced."""

    step: int  # index of the published build (0: plain int8)
    path: Path
    record: dict[str, Any]
    fallback: FallbackOutcome | None = None  # the search, with --fallback auto
    extra: dict[str, Any] = field(default_factory=dict)  # layer_errors, fallback, convert_seconds

    @property
    def float_nodes(self) -> list[str]:
        return self.fallback.final.float_nodes if self.fallback else []

    @property
    def float_layers(self) -> list[str]:
        return self.fallback.float_layers if self.fallback else []


def quantize(session: ExportSession, cfg: ExportConfig, calibrate: Callable[[np.ndarray], Int8Format],
             work: Path) -> Int8Outcome:
    """Calibrate once, then plain int8, the per-layer report, and with ``--fallback auto`` the search under the
    export's gate. ``calibrate`` turns the calibration pixels into the format's builder; its time counts in
    ``convert_seconds`` like the builds'."""
    calibration = session.calibration()
    start = time.perf_counter()
    fmt = calibrate(calibration.pixels)
    built: dict[int, tuple[Path, dict[str, Any]]] = {}

    def build(float_nodes: list[str], step: int) -> tuple[Path, dict[str, Any]]:
        if step not in built:
            built[step] = fmt.build(float_nodes, step)
        return built[step]

    plain_path, plain_record = build([], 0)
    extra: dict[str, Any] = {}
    ranking: list[LayerError] = []
    if cfg.layer_report_images:
        images = calibration.pixels[:cfg.layer_report_images]
        ranking = rank(fmt.layer_errors(images))
        extra["layer_errors"] = layer_report(ranking, len(images), fmt.layer_method)
        log_ranking(ranking)
    outcome = Int8Outcome(0, plain_path, plain_record, None, extra)
    if cfg.fallback == "auto":
        found: FallbackOutcome = search(ranking, fmt.fallback_group, build,
                                        lambda path: session.selection_verdict(path, fmt.kernel_sets), cfg.fallback_max_layers)
        measure_latency(found.steps, calibration.pixels[:1], cfg.threads, work)
        extra["fallback"] = found.report(cfg.fallback_max_layers, cfg.threads, SELECTION_SPLITS)
        found.log_costs()
        final = found.final
        outcome = Int8Outcome(found.final_index, final.path, final.build, found, extra)
    extra["convert_seconds"] = round(time.perf_counter() - start, 2)
    return outcome
