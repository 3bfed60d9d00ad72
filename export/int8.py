"""The int8 recipe both formats follow, written once: build plain int8, correct its bias, rank the layers, search,
time, describe.

A format (``export.tflite``, ``export.onnx``) calibrates once and then answers :class:`Int8Format`:
how to build a quantized model with some nodes left in float, how to write and shift one, how
to measure each layer's int8 error, which nodes keep one ranked layer in float. Everything that
judges (bias correction, the gate, the fallback's stop rule) happens here and in
:mod:`export.fallback` / :mod:`export.verify`, so a TFLite and an ONNX export of the same model
are corrected, accepted and refused by the same numbers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .fallback import FallbackOutcome, Step, log_ranking, measure_latency, search
from .layer_errors import LayerError, layer_report, rank
from .session import ExportSession
from .splits import CHOOSING_SPLITS

log = logging.getLogger("export")


class Int8Format(Protocol):
    """What one format contributes to :func:`quantize`, after calibrating once."""

    suffix: str  # the artifact's file suffix, which the runtime opens it by
    kernel_sets: tuple[str, ...]  # every kernel set the gate must pass on
    layer_method: str  # how :meth:`layer_errors` measures, for the report

    def build(self, float_nodes: list[str]) -> tuple[Any, dict[str, Any]]:
        """A quantized model (in memory) with ``float_nodes`` left in float, and the format's record of it."""

    def save(self, model: Any, path: Path) -> None:
        """Write ``model`` where a runtime can run it."""

    def shift_output(self, model: Any, shift: float) -> dict[str, Any]:
        """Add ``shift`` to the logit, in place; what was done."""

    def layer_errors(self, plain: Step, images: np.ndarray) -> list[LayerError]:
        """Each quantized tensor's int8 error on ``images`` (``plain``: the plain int8 build)."""

    def fallback_group(self, plain: Step, layer: LayerError) -> list[str]:
        """The nodes that keep ``layer``'s output in float: its writer and every op reading it."""


@dataclass
class Int8Outcome:
    """The build to publish and the sidecar sections the recipe produced."""

    final: Step
    fallback: FallbackOutcome | None = None  # the search, with --fallback auto
    sections: dict[str, Any] = field(default_factory=dict)  # layer_errors, fallback, convert_seconds

    @property
    def repaired(self) -> bool:
        """Float layers were chosen on images, so the verdict must come from images the search never saw."""
        return bool(self.final.float_nodes)

    @property
    def float_layers(self) -> list[str]:
        return self.fallback.float_layers if self.fallback else []


def quantize(session: ExportSession, fmt: Int8Format, work: Path, started: float) -> Int8Outcome:
    """Plain int8, the per-layer report, and with ``--fallback auto`` the search under the export's gate.
    ``started``: when calibration began, so ``convert_seconds`` counts it like the builds."""
    cfg = session.cfg
    built: dict[int, Step] = {}

    def build(float_nodes: list[str], step: int) -> Step:
        if step not in built:
            model, record = fmt.build(float_nodes)
            record["bias_correction"] = _correct_bias(session, fmt, model, work / f"probe{step}{fmt.suffix}") \
                if cfg.bias_correction else None
            path = work / f"step{step}{fmt.suffix}"
            fmt.save(model, path)
            built[step] = Step(path, float_nodes, model, record)
        return built[step]

    plain = build([], 0)
    sections: dict[str, Any] = {}
    ranking: list[LayerError] = []
    if cfg.layer_report_images:
        images = session.calibration().pixels[:cfg.layer_report_images]
        ranking = rank(fmt.layer_errors(plain, images))
        sections["layer_errors"] = layer_report(ranking, len(images), fmt.layer_method)
        log_ranking(ranking)
    outcome = Int8Outcome(plain, None, sections)
    if cfg.fallback == "auto":
        found = search(ranking, lambda layer: fmt.fallback_group(plain, layer), build,
                       lambda path: session.choosing_verdict(path, fmt.kernel_sets), cfg.fallback_max_layers)
        measure_latency(found.steps, session.calibration().pixels[:1], cfg.threads, work)
        sections["fallback"] = found.report(cfg.fallback_max_layers, cfg.threads,
                                            tuple(d.name for d in session.verify_data() if d.name in CHOOSING_SPLITS))
        found.log_costs()
        outcome = Int8Outcome(found.final, found, sections)
    sections["convert_seconds"] = round(time.perf_counter() - started, 2)
    return outcome


def _correct_bias(session: ExportSession, fmt: Int8Format, model: Any, probe: Path) -> dict[str, Any]:
    """Measure the int8 model's mean logit shift on the calibration images and remove it from the output."""
    fmt.save(model, probe)
    measured = session.logit_shift(probe)
    done = fmt.shift_output(model, -measured["mean_delta_logit"])
    log.info("bias correction: mean int8 - float logit %+.4f on %d calibration images; logit shifted by %+.4f",
             measured["mean_delta_logit"], measured["images"], done.get("logit_shift", 0.0))
    return {**measured, **done}
