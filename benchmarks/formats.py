"""Which formats a model directory holds: the float SavedModel and every exported artifact.

A model directory written by ``python -m train`` and the exports holds ``saved_model/`` (the
float reference every drift is measured against) and any number of ``.tflite`` and ``.onnx``
files, each described by the metadata embedded in it. An export that failed verification left
``NAME.rejected.json`` and no artifact: it is listed as failed, so the table shows what went
wrong instead of silently leaving a row out.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.artifact_metadata import read_artifact_metadata
from runtime.errors import ConfigError, InceptionEdgeError, ModelCardError, first_line

SAVED_MODEL = "saved_model"
ARTIFACT_SUFFIXES = (".tflite", ".onnx")
_REJECTED = ".rejected.json"


def this_machines_onnx_target() -> str:
    """The ONNX target named for this CPU's family (both targets now quantize alike: see ``export.onnx``)."""
    return "pi" if platform.machine().lower() in ("aarch64", "arm64", "armv8l") else "x86"


@dataclass(frozen=True)
class Format:
    """One row of the benchmark: a model file (or the SavedModel) and what it is."""

    name: str  # the file name, or "saved_model": what users pass to --formats
    path: Path
    kind: str  # "saved_model", "tflite" or "onnx"
    precision: str  # "float32", "float16", "dynamic" or "int8"
    target: str | None = None  # the ONNX int8 preset ("pi" or "x86"), else None
    error: str | None = None  # why the export or its metadata failed; the row is then reported, not run
    float_layers: int = 0  # layers an int8 export kept in float (``--fallback auto``)
    activations: str | None = None  # an ONNX int8 file's activation type ("uint8" or "int8")

    @property
    def int8(self) -> bool:
        return self.precision == "int8"

    @property
    def description(self) -> str:
        engine = {"saved_model": "TensorFlow", "tflite": "TFLite", "onnx": "ONNX"}[self.kind]
        preset = f", {self.target} preset" if self.target else ""
        fallback = f", {self.float_layers} layers float" if self.float_layers else ""
        return f"{engine} {self.precision}{preset}{fallback}"

    def suits_this_machine(self) -> bool:
        """False for an ONNX file of an older export with int8 activations (made for ARM) on x86, or the reverse.
        uint8 activations (every current export) run at full speed on both."""
        return self.target is None or self.activations == "uint8" or self.target == this_machines_onnx_target()

    def float_counterpart(self, available: dict[str, Format]) -> str:
        """The float format this one is a cheaper replacement for: ONNX fp32 for ONNX, else the SavedModel."""
        if self.kind == "onnx" and self.name != "model_fp32.onnx":
            fp32 = available.get("model_fp32.onnx")
            if fp32 is not None and fp32.error is None:
                return fp32.name
        return SAVED_MODEL


def _from_artifact(path: Path) -> Format:
    kind = path.suffix[1:]
    try:
        artifact = read_artifact_metadata(path).get("artifact") or {}
    except InceptionEdgeError as exc:
        return Format(path.name, path, kind, "unknown", error=first_line(exc))
    float_layers = len(artifact.get("float_layers") or [])
    if kind == "tflite":
        precision = {"int8": "int8", "float16": "float16", "dynamic": "dynamic"}.get(str(artifact.get("mode")), "unknown")
        return Format(path.name, path, kind, precision, float_layers=float_layers)
    precision = "int8" if artifact.get("precision") == "int8" else "float32"
    activations = (artifact.get("quantization") or {}).get("activation_type")
    return Format(path.name, path, kind, precision, target=artifact.get("target"), float_layers=float_layers,
                  activations=activations)


def _from_rejected(report_path: Path) -> Format:
    name = report_path.name[: -len(_REJECTED)]
    path = report_path.with_name(name)
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        failures = ((report.get("verification") or {}).get("failures")) or []
        reason = f"export rejected: {failures[0]}" + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else "")
    except (OSError, ValueError, AttributeError) as exc:
        reason = f"export rejected; its report {report_path.name} is unreadable ({exc})"
    kind = Path(name).suffix[1:]
    precision = "int8" if "int8" in name else "float32"
    return Format(name, path, kind, precision, error=f"{reason}; see {report_path.name}")


def discover_formats(model_dir: Path, card: dict[str, Any]) -> dict[str, Format]:
    """Every format in ``model_dir``, the SavedModel first; raise if there is nothing to compare it with."""
    saved_model = model_dir / str(card["saved_model"])
    formats = {SAVED_MODEL: Format(SAVED_MODEL, saved_model, "saved_model", "float32")}
    found = sorted(p for p in model_dir.iterdir()
                   if p.suffix in ARTIFACT_SUFFIXES and p.is_file() and not p.name.startswith("."))
    for path in found:
        formats[path.name] = _from_artifact(path)
    for report in sorted(model_dir.glob("*" + _REJECTED)):
        name = report.name[: -len(_REJECTED)]
        if name not in formats and Path(name).suffix in ARTIFACT_SUFFIXES:
            formats[name] = _from_rejected(report)
    if len(formats) == 1:
        raise ModelCardError(f"{model_dir}: no exported .tflite or .onnx files to compare with the SavedModel; "
                             "run `python -m export.tflite --model DIR` and `python -m export.onnx --model DIR` first")
    return formats


def select_formats(formats: dict[str, Format], names: tuple[str, ...] | None, model_dir: Path) -> dict[str, Format]:
    """The formats ``names`` asks for (the SavedModel always comes along: it is the reference)."""
    if not names:
        return formats
    unknown = [n for n in names if n not in formats]
    if unknown:
        raise ConfigError(f"--formats {','.join(unknown)}: not in {model_dir}; expected some of {', '.join(formats)}")
    return {n: f for n, f in formats.items() if n == SAVED_MODEL or n in names}
