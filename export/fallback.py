"""Accuracy-aware int8: keep the worst layers in float, one step at a time, until the drift limits hold.

The same loop serves both formats; a format supplies how to build an artifact with a given set
of float nodes and which nodes make up one ranked layer. Each step adds the next layer of the
per-layer report together with the ops that read its output, so that tensor never gets an int8
scale: keeping only the writer in float would re-quantize the output on its way into the next
op, with the same broken range.

The stopping rule looks at the **validation split only**; the test split is scored once, on the
final artifact, by the usual verification, so it stays held out. The latency of every step is
measured at the end, each step in fresh processes taking turns (:mod:`export.latency`); each layer's
cost is the difference from the step before.
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
    """One artifact the search built: which nodes are float in it and whether it met the limits on val."""

    path: Path
    float_nodes: list[str]
    layer: LayerError | None  # the ranked layer this step added (None for plain int8)
    added: list[str]
    failures: list[str]
    build: dict[str, Any] = field(default_factory=dict)  # what the format's builder reports (bias correction, kernels)
    p50_ms: float | None = None

    def to_dict(self, previous: Step | None) -> dict[str, Any]:
        cost = None if previous is None or self.p50_ms is None or previous.p50_ms is None else self.p50_ms - previous.p50_ms
        return {"layer": None if self.layer is None else self.layer.layer,
                "short_name": None if self.layer is None else short_name(self.layer.layer),
                "channel_error": None if self.layer is None else self.layer.channel_error,
                "added_float": self.added, "float_nodes": len(self.float_nodes),
                "val_failures": self.failures, "val_passed": not self.failures,
                "p50_ms": None if self.p50_ms is None else round(self.p50_ms, 3),
                "latency_cost_ms": None if cost is None else round(cost, 3)}


@dataclass
class FallbackOutcome:
    steps: list[Step]

    @property
    def final(self) -> Step:
        return self.steps[-1]

    @property
    def passed(self) -> bool:
        return not self.final.failures

    @property
    def float_layers(self) -> list[str]:
        """Readable names of every node the final artifact keeps in float."""
        return [short_name(n) for n in self.final.float_nodes]

    def log_costs(self) -> None:
        for before, step in zip(self.steps, self.steps[1:]):
            log.info("fallback: %s float costs %+.2f ms (p50 %.2f -> %.2f ms)",
                     ", ".join(short_name(n) for n in step.added), (step.p50_ms or 0.0) - (before.p50_ms or 0.0),
                     before.p50_ms or 0.0, step.p50_ms or 0.0)

    def report(self, max_layers: int, threads: int | None) -> dict[str, Any]:
        steps = [s.to_dict(self.steps[i - 1] if i else None) for i, s in enumerate(self.steps)]
        kept = steps[1:]
        return {"mode": "auto", "max_layers": max_layers, "selection_split": "val", "passed_on_val": self.passed,
                "layers_kept_float": [s["layer"] for s in kept], "float_nodes": self.final.float_nodes,
                "steps": steps, "latency": {"threads": threads, "calls": CALLS * ROUNDS, "processes": ROUNDS, "batch": 1,
                                            "plain_int8_p50_ms": steps[0]["p50_ms"], "final_p50_ms": steps[-1]["p50_ms"]}}


def search(ranking: list[LayerError], group: Callable[[LayerError], list[str]],
           build: Callable[[list[str], int], tuple[Path, dict[str, Any]]], judge: Callable[[Path], list[str]],
           max_layers: int) -> FallbackOutcome:
    """Plain int8 first, then one ranked layer more per step until ``judge`` finds no failure or steps run out.

    ``build(float_nodes, step)`` writes an artifact and returns its path and a record; ``judge``
    returns the drift failures on the selection split.
    """
    path, record = build([], 0)
    steps = [Step(path, [], None, [], judge(path), record)]
    log.info("fallback: plain int8 %s", _verdict(steps[0]))
    for layer in ranking:
        if not steps[-1].failures or len(steps) > max_layers:
            break
        added = [n for n in group(layer) if n not in steps[-1].float_nodes]
        if not added:  # already float through an earlier step
            continue
        nodes = steps[-1].float_nodes + added
        path, record = build(nodes, len(steps))
        steps.append(Step(path, nodes, layer, added, judge(path), record))
        log.info("fallback step %d: %s float (channel error %.3f) -> %s", len(steps) - 1, short_name(layer.layer),
                 layer.channel_error, _verdict(steps[-1]))
    if steps[-1].failures:
        log.warning("fallback: %d failures on val remain after %d steps (--fallback-max-layers %d); the artifact will be "
                    "rejected", len(steps[-1].failures), len(steps) - 1, max_layers)
    return FallbackOutcome(steps)


def log_ranking(ranking: list[LayerError], shown: int = 3) -> None:
    for e in ranking[:shown]:
        log.info("layer error: %s (%s) channel error %.3f", short_name(e.layer), e.op, e.channel_error)


def _verdict(step: Step) -> str:
    return "within limits on val" if not step.failures else f"{len(step.failures)} failures on val ({step.failures[0]})"


def measure_latency(steps: list[Step], image: np.ndarray, threads: int | None, work_dir: Path) -> None:
    """Batch-1 p50 of every step's artifact, each in fresh processes (:mod:`export.latency`); sets ``Step.p50_ms``."""
    image_file = work_dir / "latency_image.npy"
    np.save(image_file, np.ascontiguousarray(image[:1], dtype=np.float32), allow_pickle=False)
    for step, p50 in zip(steps, p50_ms([s.path for s in steps], image_file, threads)):
        step.p50_ms = p50
