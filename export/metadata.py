"""How the metadata gets inside every exported file.

One JSON document (:class:`runtime.model_metadata.ArtifactMetadata`) under
``runtime.artifact_metadata.METADATA_KEY``: ONNX stores it in ``metadata_props``; TFLite in a
named metadata buffer of the flatbuffer. Both survive copying and renaming the file, and
``runtime.artifact_metadata`` reads them back without TensorFlow or onnx.

The document reserves ``content_sha256`` (``runtime.integrity``): after serializing, the exporter
seals the bytes with :func:`seal_artifact`, so the file verifies itself wherever it is copied.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from runtime.artifact_metadata import METADATA_KEY
from runtime.integrity import seal
from runtime.model_metadata import ArtifactMetadata


def document(metadata: ArtifactMetadata) -> str:
    """The embedded JSON; sorted keys and json's default separators, which ``runtime.integrity`` finds the digest by."""
    return json.dumps(metadata.to_dict(), sort_keys=True, allow_nan=False)


def seal_artifact(data: bytes, metadata: ArtifactMetadata, name: str) -> tuple[bytes, ArtifactMetadata]:
    """Serialized model bytes with their own digest written in, and the metadata with that digest (for the sidecar)."""
    sealed, digest = seal(data, name)
    return sealed, metadata.with_digest(digest)


def embed_onnx(model: Any, metadata: ArtifactMetadata) -> None:
    """Set (replace) the toolkit entry in an ``onnx.ModelProto``'s ``metadata_props``."""
    keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, document(metadata)


def embed_tflite(model: Any, metadata: ArtifactMetadata) -> None:
    """Add (replace) a named metadata buffer in a TFLite ``ModelT`` (flatbuffer object API)."""
    from tensorflow.lite.python import schema_py_generated as schema

    payload = np.frombuffer(document(metadata).encode("utf-8"), dtype=np.uint8)
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
