"""Accuracy-aware int8: keep the worst layers in float, one step at a time, until the drift is within the limits.

The same loop serves both formats (:mod:`export.int8`); a format supplies how to build an artifact
with a given set of float nodes and which nodes make up one ranked layer. Each step tries the next
layer of the per-layer report together with the ops that read its output, so that tensor never
gets an int8 scale: keeping only the writer in float would re-quantize the output on its way into
the next op, with the same broken range.

A step is judged by its observed changes on the choosing images (val and a quarter of the
training images the calibration did not draw, pooled: :mod:`export.splits`) against
``--max-drift``, and **kept only if it helps**: its shortfall (how far the worst observed change
lies beyond its limit, :func:`export.verify.observed_excess`) must shrink. A layer whose float copy does not help is put back to int8, so the artifact never
pays for a float layer that only moved noise. The search stops when every observed change is
within the limits. A repaired artifact is then judged once, by the export's gate at 95%
confidence, on test and the rest of the pool, which the search never looked at. The latency of every step is measured at the end, each step in fresh
processes taking turns (:mod:`export.latency`); each layer's cost is the difference from the step
before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .latency import CALLS, ROUNDS, p50_ms
from .layer_errors import LayerError, short_name

log = logging.getLogger("export")


@dataclass
class Step:
    """One int8 build: which nodes are float in it, the model, and under the search its observed changes on the
    choosing images, kept or not."""

    path: Path  # a runnable copy, bias corrected
    float_nodes: list[str]
    model: Any  # the format's in-memory model, which the export embeds its metadata in
    record: dict[str, Any] = field(default_factory=dict)  # what the builder reports (bias correction, kernels)
    layer: LayerError | None = None  # the ranked layer this step tried (None for plain int8)
    added: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    p50_ms: float | None = None
    shortfall: float = 0.0  # export.verify.observed_excess on the choosing images (<= 0: every change within the limits)
    kept: bool = True  # False: it did not shrink the shortfall, so its layer went back to int8

    def to_dict(self, previous: Step | None) -> dict[str, Any]:
        cost = None if previous is None or self.p50_ms is None or previous.p50_ms is None else self.p50_ms - previous.p50_ms
        return {"layer": None if self.layer is None else self.layer.layer,
                "short_name": None if self.layer is None else short_name(self.layer.layer),
                "channel_error": None if self.layer is None else self.layer.channel_error,
                "added_float": self.added, "float_nodes": len(self.float_nodes),
                "selection_failures": self.failures, "selection_passed": not self.failures,
                "shortfall": round(self.shortfall, 5), "kept": self.kept,
                "p50_ms": None if self.p50_ms is None else round(self.p50_ms, 3),
                "latency_cost_ms": None if cost is None or not self.kept else round(cost, 3)}


@dataclass
class FallbackOutcome:
    steps: list[Step]

    @property
    def kept_steps(self) -> list[Step]:
        return [s for s in self.steps if s.kept]

    @property
    def final(self) -> Step:
        """The last step kept: the artifact the export publishes."""
        return self.kept_steps[-1]

    @property
    def final_index(self) -> int:
        return self.steps.index(self.final)

    @property
    def passed(self) -> bool:
        return not self.final.failures

    @property
    def float_layers(self) -> list[str]:
        """Readable names of every node the final artifact keeps in float."""
        return [short_name(n) for n in self.final.float_nodes]

    def log_costs(self) -> None:
        kept = self.kept_steps
        for before, step in zip(kept, kept[1:]):
            log.info("fallback: %s float costs %+.2f ms (p50 %.2f -> %.2f ms)",
                     ", ".join(short_name(n) for n in step.added), (step.p50_ms or 0.0) - (before.p50_ms or 0.0),
                     before.p50_ms or 0.0, step.p50_ms or 0.0)

    def report(self, max_layers: int, threads: int | None, selection_splits: tuple[str, ...]) -> dict[str, Any]:
        steps, previous = [], None
        for step in self.steps:
            steps.append(step.to_dict(previous))
            previous = step if step.kept else previous
        kept = [s for s in steps[1:] if s["kept"]]
        return {"mode": "auto", "max_layers": max_layers, "selection_splits": list(selection_splits),
                "passed_on_selection": self.passed, "layers_kept_float": [s["layer"] for s in kept],
                "layers_tried_not_kept": [s["layer"] for s in steps[1:] if not s["kept"]],
                "float_nodes": self.final.float_nodes, "steps": steps,
                "latency": {"threads": threads, "calls": CALLS * ROUNDS, "processes": ROUNDS, "batch": 1,
                            "plain_int8_p50_ms": steps[0]["p50_ms"], "final_p50_ms": self.final.p50_ms}}


Verdict = tuple[list[str], float]  # the changes beyond the limits on the choosing images, and the shortfall


def search(ranking: list[LayerError], group: Callable[[LayerError], list[str]], build: Callable[[list[str], int], Step],
           judge: Callable[[Path], Verdict], max_layers: int) -> FallbackOutcome:
    """Plain int8 first, then one ranked layer more per step, kept only if it shrinks the shortfall, until every
    observed change is within the limits or ``max_layers`` steps have been tried.

    ``build(float_nodes, step)`` writes an artifact and returns its :class:`Step`; ``judge`` returns the
    changes beyond the limits and the shortfall on the choosing images.
    """
    best = build([], 0)
    best.failures, best.shortfall = judge(best.path)
    steps = [best]
    log.info("fallback: plain int8 %s", _verdict(best))
    for layer in ranking:
        if not best.failures or len(steps) > max_layers:
            break
        added = [n for n in group(layer) if n not in best.float_nodes]
        if not added:  # already float through an earlier step
            continue
        step = build(best.float_nodes + added, len(steps))
        step.layer, step.added = layer, added
        step.failures, step.shortfall = judge(step.path)
        step.kept = step.shortfall < best.shortfall
        steps.append(step)
        best = step if step.kept else best
        log.info("fallback step %d: %s float (channel error %.3f) -> %s; %s", len(steps) - 1, short_name(layer.layer),
                 layer.channel_error, _verdict(step), "kept" if step.kept else "no better: back to int8")
    if best.failures:
        log.warning("fallback: %d failures remain after %d steps (--fallback-max-layers %d); the artifact will be "
                    "rejected", len(best.failures), len(steps) - 1, max_layers)
    return FallbackOutcome(steps)


def log_ranking(ranking: list[LayerError], shown: int = 3) -> None:
    for e in ranking[:shown]:
        log.info("layer error: %s (%s) channel error %.3f", short_name(e.layer), e.op, e.channel_error)


def _verdict(step: Step) -> str:
    if not step.failures:
        return f"observed changes within the limits (shortfall {step.shortfall:+.4f})"
    return f"{len(step.failures)} beyond the limits, shortfall {step.shortfall:+.4f} ({step.failures[0]})"


def measure_latency(steps: list[Step], image: np.ndarray, threads: int | None, work_dir: Path) -> None:
    """Batch-1 p50 of every kept step's artifact, each in fresh processes (:mod:`export.latency`); sets ``Step.p50_ms``."""
    image_file = work_dir / "latency_image.npy"
    np.save(image_file, np.ascontiguousarray(image[:1], dtype=np.float32), allow_pickle=False)
    kept = [s for s in steps if s.kept]
    for step, p50 in zip(kept, p50_ms([s.path for s in kept], image_file, threads)):
        step.p50_ms = p50
