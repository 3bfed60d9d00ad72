"""Which formats a model directory holds: the float SavedModel and every exported artifact.

A model directory written by ``python -m train`` and the exports holds ``saved_model/`` (the
float reference every drift is measured against) and any number of ``.tflite`` and ``.onnx``
files, each described by the metadata embedded in it. An export that failed verification left
``NAME.rejected.json`` and no artifact: it is listed as failed, so the table shows what went
wrong instead of silently leaving a row out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from export.sidecar import Sidecar
from runtime.artifact_metadata import read_artifact_metadata
from runtime.errors import ConfigError, InceptionEdgeError, ModelCardError, first_line
from train.card import ModelCard

SAVED_MODEL = "saved_model"
ARTIFACT_SUFFIXES = (".tflite", ".onnx")
_REJECTED = ".rejected.json"


@dataclass(frozen=True)
class Format:
    """One row of the benchmark: a model file (or the SavedModel) and what it is."""

    name: str  # the file name, or "saved_model": what users pass to --formats
    path: Path
    kind: str  # "saved_model", "tflite" or "onnx"
    precision: str  # "float32", "float16", "dynamic" or "int8"
    error: str | None = None  # why the export or its metadata failed; the row is then reported, not run
    float_layers: int = 0  # layers an int8 export kept in float (``--fallback auto``)

    @property
    def int8(self) -> bool:
        return self.precision == "int8"

    @property
    def description(self) -> str:
        engine = {"saved_model": "TensorFlow", "tflite": "TFLite", "onnx": "ONNX"}[self.kind]
        fallback = f", {self.float_layers} layers float" if self.float_layers else ""
        return f"{engine} {self.precision}{fallback}"

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
        artifact = read_artifact_metadata(path).artifact
    except InceptionEdgeError as exc:
        return Format(path.name, path, kind, "unknown", error=first_line(exc))
    return Format(path.name, path, kind, artifact.short_precision, float_layers=len(artifact.float_layers))


def _from_rejected(report_path: Path) -> Format:
    name = report_path.name[: -len(_REJECTED)]
    path = report_path.with_name(name)
    try:
        failures = Sidecar.load(report_path).verification.failures
        reason = f"export rejected: {failures[0]}" + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else "")
    except InceptionEdgeError as exc:
        reason = f"export rejected; its report {report_path.name} is unreadable ({first_line(exc)})"
    kind = Path(name).suffix[1:]
    precision = "int8" if "int8" in name else "float32"
    return Format(name, path, kind, precision, error=f"{reason}; see {report_path.name}")


def _row_order(path: Path) -> tuple[str, str, bool]:
    """By format, then name, a ``--fallback auto`` file right after the plain one it repairs."""
    return path.suffix, path.stem.replace("_fallback", ""), path.stem.endswith("_fallback")


def discover_formats(model_dir: Path, card: ModelCard) -> dict[str, Format]:
    """Every format in ``model_dir``, the SavedModel first; raise if there is nothing to compare it with."""
    saved_model = model_dir / card.saved_model
    formats = {SAVED_MODEL: Format(SAVED_MODEL, saved_model, "saved_model", "float32")}
    found = sorted((p for p in model_dir.iterdir()
                    if p.suffix in ARTIFACT_SUFFIXES and p.is_file() and not p.name.startswith(".")), key=_row_order)
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
