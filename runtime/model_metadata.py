"""The metadata every exported file carries, typed: what a device needs to run it and to decide.

One JSON document, embedded by ``export/`` and read back here without any ML framework
(:mod:`runtime.artifact_metadata` finds it in the file). A device sizes buffers and makes
decisions from it, so :meth:`ArtifactMetadata.from_dict` refuses values a converter would
never write (an absurd image size, one class name, a threshold outside (0, 1)) with a
:class:`ModelFileError` naming the file. Sections that only describe (``source``,
``calibration``, ``versions``, the ONNX quantization settings) stay records; unknown keys of
older or newer exports are ignored, so a file exported by another version still loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ModelFileError
from .images import MIN_IMAGE_SIZE
from .metrics import OperatingPoint

MAX_IMAGE_SIZE = 4096  # far above any InceptionV3 export; a larger value is a corrupt or forged file, not a model
METADATA_VERSION = 2  # 2: carries content_sha256 (runtime.integrity); 1 did not
DEFAULT_RESIZE = "PIL bilinear (runtime.images.to_model_pixels)"
_SHORT_PRECISION = {"int8": "int8", "float16": "float16", "dynamic": "dynamic"}


@dataclass(frozen=True)
class InputSpec:
    """The model's input: raw 0-255 RGB pixels, NHWC, of ``dtype``, and how images were brought to it in training."""

    dtype: str  # uint8 (raw pixels), int8 (pixel - 128) or float32
    quantization: dict[str, Any] | None = None  # an integer input's scale and zero point, as the export pinned them
    # the stored size of the training images, before the trainer enlarged them: runtime.parity brings larger
    # inputs down to it, so the device sees the detail the model was trained on
    training_shape: tuple[int, int] | None = None
    resize: str = DEFAULT_RESIZE
    source_pixel_range: str | None = None
    name: str | None = None  # the ONNX input's name

    def to_dict(self, image_size: int) -> dict[str, Any]:
        out: dict[str, Any] = {"layout": "NHWC", "shape": [1, image_size, image_size, 3], "color": "RGB", "range": [0, 255],
                               "resize": self.resize, "source_pixel_range": self.source_pixel_range,
                               "training_shape": None if self.training_shape is None else list(self.training_shape),
                               "dtype": self.dtype, "quantization": self.quantization}
        if self.name is not None:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str) -> InputSpec:
        return cls(str(raw.get("dtype", "float32")), raw.get("quantization"), _training_shape(raw.get("training_shape"), source),
                   str(raw.get("resize", DEFAULT_RESIZE)), raw.get("source_pixel_range"), raw.get("name"))


def _training_shape(shape: Any, source: str) -> tuple[int, int] | None:
    if shape is None:
        return None
    try:
        height, width = (int(v) for v in shape[:2])
    except (TypeError, ValueError):
        raise ModelFileError(f"{source}: embedded input.training_shape {shape!r}; expected [height, width]") from None
    if not (1 <= height <= MAX_IMAGE_SIZE and 1 <= width <= MAX_IMAGE_SIZE):
        raise ModelFileError(f"{source}: embedded input.training_shape {shape!r}; expected sizes from 1 to {MAX_IMAGE_SIZE}")
    return height, width


@dataclass(frozen=True)
class ArtifactInfo:
    """What kind of file this is and what the export did to it."""

    format: str  # tflite or onnx
    precision: str  # TFLite: a description ("int8 weights and activations ..."); ONNX: int8 or fp32
    mode: str | None = None  # TFLite: int8, float16 or dynamic
    opset: int | None = None  # ONNX
    float_layers: tuple[str, ...] = ()  # layers an int8 export kept in float (--fallback auto)
    bias_correction: dict[str, Any] | None = None  # the mean logit shift int8 added, and what was removed
    quantization: dict[str, Any] | None = None  # ONNX int8: the quantizer's settings

    @property
    def short_precision(self) -> str:
        """int8, float16, dynamic or float32: one word for both formats."""
        if self.format == "tflite":
            return _SHORT_PRECISION.get(str(self.mode), "unknown")
        return "int8" if self.precision == "int8" else "float32"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format, "precision": self.precision, "float_layers": list(self.float_layers),
                               "bias_correction": self.bias_correction}
        out.update({k: v for k, v in (("mode", self.mode), ("opset", self.opset), ("quantization", self.quantization))
                    if v is not None})
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ArtifactInfo:
        quantization = raw.get("quantization")
        # exports before the driver owned bias correction kept ONNX's inside the quantizer settings
        correction = raw.get("bias_correction") or (quantization or {}).get("bias_correction")
        return cls(str(raw.get("format", "unknown")), str(raw.get("precision", "unknown")), raw.get("mode"), raw.get("opset"),
                   tuple(raw.get("float_layers") or ()), correction, quantization)


@dataclass(frozen=True)
class ArtifactMetadata:
    """The document embedded in every exported file (``runtime.artifact_metadata.METADATA_KEY``)."""

    image_size: int
    class_names: tuple[str, str]  # (negative, positive)
    operating_points: tuple[OperatingPoint, ...]
    positive_label: int
    input: InputSpec
    artifact: ArtifactInfo
    negative_label: int | None = None
    metadata_version: int = METADATA_VERSION
    created: str | None = None
    output: dict[str, Any] = field(default_factory=lambda: {"kind": "logit",
                                                            "probability": "sigmoid(logit), of the positive class"})
    source: dict[str, Any] = field(default_factory=dict)  # the SavedModel's sha256, the card's date, its test figures
    calibration: dict[str, Any] | None = None  # how the int8 calibration images were drawn (export.calibration)
    versions: dict[str, str] = field(default_factory=dict)
    content_sha256: str | None = None  # the file's own digest (runtime.integrity); None in files from before digests

    @property
    def thresholds(self) -> dict[str, float]:
        """Operating point name -> probability threshold."""
        return {p.name: p.threshold for p in self.operating_points}

    def with_digest(self, digest: str) -> ArtifactMetadata:
        return replace(self, content_sha256=digest)

    def to_dict(self) -> dict[str, Any]:
        out = {"metadata_version": self.metadata_version, "created": self.created, "artifact": self.artifact.to_dict(),
               "image_size": self.image_size, "input": self.input.to_dict(self.image_size), "output": self.output,
               "positive_label": self.positive_label, "negative_label": self.negative_label,
               "class_names": list(self.class_names), "operating_points": [p.to_dict() for p in self.operating_points],
               "source": self.source, "calibration": self.calibration, "versions": self.versions}
        if self.content_sha256 is not None:
            out["content_sha256"] = self.content_sha256
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str) -> ArtifactMetadata:
        """Typed and checked; a missing or malformed field is a :class:`ModelFileError` naming ``source``."""
        try:
            image_size = int(raw["image_size"])
            class_names = tuple(str(n) for n in raw["class_names"])
            points = tuple(OperatingPoint.from_dict(p) for p in raw["operating_points"])
            positive = int(raw.get("positive_label", 1))
        except KeyError as exc:
            raise ModelFileError(f"{source}: embedded metadata lacks {exc}; expected image_size, class_names, "
                                 "operating_points") from None
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{source}: embedded metadata has a malformed image_size, class_names or operating "
                                 f"point ({exc})") from None
        if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
            raise ModelFileError(f"{source}: embedded image_size {image_size}; expected {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}")
        if len(class_names) != 2:
            raise ModelFileError(f"{source}: embedded class_names {list(class_names)}; expected two names (negative, positive)")
        bad = {p.name: p.threshold for p in points if not 0.0 < p.threshold < 1.0}
        if bad or not points:
            raise ModelFileError(f"{source}: embedded operating point thresholds {bad or {}}; expected probabilities in (0, 1)")
        negative = raw.get("negative_label")
        return cls(image_size, class_names, points, positive,  # type: ignore[arg-type]
                   InputSpec.from_dict(raw.get("input") or {}, source), ArtifactInfo.from_dict(raw.get("artifact") or {}),
                   None if negative is None else int(negative), int(raw.get("metadata_version", 1)), raw.get("created"),
                   dict(raw.get("output") or {}), dict(raw.get("source") or {}), raw.get("calibration"),
                   dict(raw.get("versions") or {}), raw.get("content_sha256"))
