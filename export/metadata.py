"""What travels inside every exported file, and how it gets there.

One JSON document under ``runtime.artifact_metadata.METADATA_KEY``: the input contract, the
labels, the operating thresholds (as probabilities and as logits), where the model came from,
how it was calibrated and with which versions. ONNX stores it in ``metadata_props``; TFLite in
a named metadata buffer of the flatbuffer. Both survive copying and renaming the file, and
``runtime.artifact_metadata`` reads them back without TensorFlow or onnx.

The document reserves ``content_sha256`` (``runtime.integrity``): after serializing, the exporter
seals the bytes with :func:`seal_artifact`, so the file verifies itself wherever it is copied.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import numpy as np

from runtime.artifact_metadata import METADATA_KEY
from runtime.integrity import DIGEST_KEY, FIRST_SEALED_VERSION, seal, with_placeholder
from train.card import package_versions

from .source import ModelSource

METADATA_VERSION = FIRST_SEALED_VERSION  # 2: carries content_sha256; 1 (older exports) did not
_VERSION_PACKAGES = ("inception-edge", "tensorflow", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "numpy")


def build_metadata(source: ModelSource, artifact: dict[str, Any], input_spec: dict[str, Any],
                   calibration: dict[str, Any] | None) -> dict[str, Any]:
    """The document embedded in an artifact (``artifact`` says format, precision and preset)."""
    card = source.card
    size = source.image_size
    return with_placeholder({
        "metadata_version": METADATA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "artifact": artifact,
        "image_size": size,
        "input": {"layout": "NHWC", "shape": [1, size, size, 3], "color": "RGB", "range": [0, 255],
                  "resize": card.get("input", {}).get("resize", "PIL bilinear (runtime.images.to_model_pixels)"),
                  "source_pixel_range": card.get("input", {}).get("source_pixel_range"),
                  # the stored size of the training images, before the trainer enlarged them: runtime.parity
                  # brings larger inputs down to it, so the device sees the detail the model was trained on
                  "training_shape": _training_shape(card), **input_spec},
        "output": {"kind": "logit", "probability": "sigmoid(logit), of the positive class"},
        "positive_label": card["positive_label"],
        "negative_label": card.get("negative_label"),
        "class_names": list(card["class_names"]),
        "operating_points": [{k: p[k] for k in ("name", "threshold", "logit_threshold", "rule") if k in p}
                             for p in card["operating_points"]],
        "source": {"saved_model_sha256": card.get("saved_model_sha256"), "model_card_created": card.get("created"),
                   "test_metrics": card["metrics"].get("test")},
        "calibration": calibration,
        "versions": package_versions(_VERSION_PACKAGES),
    })


def _training_shape(card: dict[str, Any]) -> list[int] | None:
    shape = card.get("data", {}).get("image_shape")
    return [int(v) for v in shape[:2]] if shape else None


def seal_artifact(data: bytes, metadata: dict[str, Any], name: str) -> tuple[bytes, dict[str, Any]]:
    """Serialized model bytes with their own digest written in, and the metadata with that digest (for the sidecar)."""
    sealed, digest = seal(data, name)
    return sealed, {**metadata, DIGEST_KEY: digest}


def embed_onnx(model: Any, metadata: dict[str, Any]) -> None:
    """Set (replace) the toolkit entry in an ``onnx.ModelProto``'s ``metadata_props``."""
    keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata, sort_keys=True, allow_nan=False)


def embed_tflite(model: Any, metadata: dict[str, Any]) -> None:
    """Add (replace) a named metadata buffer in a TFLite ``ModelT`` (flatbuffer object API)."""
    from tensorflow.lite.python import schema_py_generated as schema

    payload = np.frombuffer(json.dumps(metadata, sort_keys=True, allow_nan=False).encode("utf-8"), dtype=np.uint8)
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) != METADATA_KEY]
    buffer = schema.BufferT()
    buffer.data = payload
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)


def _name(raw: bytes | str | None) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
