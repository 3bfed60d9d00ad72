"""Read the toolkit's metadata from inside an exported model file, without any ML framework.

Exports embed one JSON document under the key :data:`METADATA_KEY`: in a TFLite flatbuffer as a
named metadata buffer (the mechanism the TFLite schema provides for exactly this), in an ONNX
model as a ``metadata_props`` entry. Reading it needs neither TensorFlow nor the ``flatbuffers``
or ``onnx`` packages, so the device can check what it is about to run before loading it.

The TFLite reader walks the flatbuffer by hand (root table -> ``metadata`` vector -> ``buffers``
vector); the ONNX reader scans the protobuf's top-level fields for ``metadata_props`` (field 14).
Both refuse anything malformed with :class:`ModelFileError` instead of reading out of bounds.
The document's fields are typed in :mod:`runtime.model_metadata`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from .errors import ModelFileError
from .model_metadata import ArtifactMetadata

METADATA_KEY = "inception_edge"
_TFLITE_IDENTIFIER = b"TFL3"

# Field ids in tensorflow/lite/schema/schema.fbs (table Model, Metadata, Buffer).
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


class _FlatBuffer:
    """Just enough of the flatbuffer wire format to follow tables, vectors and strings safely."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.source = data, source

    def _u32(self, pos: int) -> int:
        if pos < 0 or pos + 4 > len(self.data):
            raise ModelFileError(f"{self.source}: truncated or corrupt TFLite flatbuffer (offset {pos} out of range)")
        return struct.unpack_from("<I", self.data, pos)[0]

    def _field_pos(self, table: int, field: int) -> int | None:
        vtable = table - struct.unpack_from("<i", self.data, table)[0] if table + 4 <= len(self.data) else -1
        if vtable < 0 or vtable + 4 > len(self.data):
            raise ModelFileError(f"{self.source}: truncated or corrupt TFLite flatbuffer (bad vtable)")
        vsize = struct.unpack_from("<H", self.data, vtable)[0]
        entry = 4 + 2 * field
        if entry + 2 > vsize:
            return None
        offset = struct.unpack_from("<H", self.data, vtable + entry)[0]
        return table + offset if offset else None

    def root(self) -> int:
        return self._u32(0)

    def ref(self, table: int, field: int) -> int | None:
        pos = self._field_pos(table, field)
        return None if pos is None else pos + self._u32(pos)

    def scalar_u32(self, table: int, field: int) -> int | None:
        pos = self._field_pos(table, field)
        return None if pos is None else self._u32(pos)

    def scalar_u64(self, table: int, field: int) -> int | None:
        pos = self._field_pos(table, field)
        if pos is None:
            return None
        if pos + 8 > len(self.data):
            raise ModelFileError(f"{self.source}: truncated or corrupt TFLite flatbuffer")
        return struct.unpack_from("<Q", self.data, pos)[0]

    def vector(self, pos: int) -> tuple[int, int]:
        """(start of elements, length) of the vector at ``pos``."""
        length = self._u32(pos)
        if pos + 4 + length > len(self.data) + 1:
            raise ModelFileError(f"{self.source}: truncated or corrupt TFLite flatbuffer (vector past the end)")
        return pos + 4, length

    def table_at(self, vec_start: int, i: int) -> int:
        elem = vec_start + 4 * i
        return elem + self._u32(elem)

    def bytes_at(self, pos: int) -> bytes:
        start, length = self.vector(pos)
        if start + length > len(self.data):
            raise ModelFileError(f"{self.source}: truncated or corrupt TFLite flatbuffer (bytes past the end)")
        return self.data[start:start + length]


def tflite_metadata_entries(data: bytes, source: str) -> dict[str, bytes]:
    """All named metadata buffers of a TFLite model, as raw bytes."""
    if len(data) < 8 or data[4:8] != _TFLITE_IDENTIFIER:
        raise ModelFileError(f"{source}: not a TFLite flatbuffer (no 'TFL3' identifier); expected a .tflite model")
    fb = _FlatBuffer(data, source)
    model = fb.root()
    meta_vec, buf_vec = fb.ref(model, _MODEL_METADATA), fb.ref(model, _MODEL_BUFFERS)
    if meta_vec is None or buf_vec is None:
        return {}
    meta_start, n_meta = fb.vector(meta_vec)
    buf_start, n_buf = fb.vector(buf_vec)
    out: dict[str, bytes] = {}
    for i in range(n_meta):
        entry = fb.table_at(meta_start, i)
        name_pos, index = fb.ref(entry, _METADATA_NAME), fb.scalar_u32(entry, _METADATA_BUFFER)
        if name_pos is None or index is None or index >= n_buf:
            continue
        buffer = fb.table_at(buf_start, index)
        payload_pos = fb.ref(buffer, _BUFFER_DATA)
        if payload_pos is not None:
            payload = fb.bytes_at(payload_pos)
        else:  # models over 2 GB keep buffers after the flatbuffer, addressed by offset and size
            offset, size = fb.scalar_u64(buffer, _BUFFER_OFFSET) or 0, fb.scalar_u64(buffer, _BUFFER_SIZE) or 0
            if offset + size > len(data):
                raise ModelFileError(f"{source}: truncated TFLite model (metadata buffer past the end of the file)")
            payload = data[offset:offset + size]
        out[fb.bytes_at(name_pos).decode("utf-8", "replace")] = payload
    return out


def _varint(data: bytes, pos: int, source: str) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ModelFileError(f"{source}: truncated or corrupt ONNX protobuf")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _proto_fields(data: bytes, source: str) -> list[tuple[int, int, bytes | int]]:
    """Top-level (field number, wire type, value) of a protobuf message."""
    fields: list[tuple[int, int, bytes | int]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos, source)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos, source)
            fields.append((number, wire, value))
        elif wire == 2:
            length, pos = _varint(data, pos, source)
            if pos + length > len(data):
                raise ModelFileError(f"{source}: truncated or corrupt ONNX protobuf (field {number} past the end)")
            fields.append((number, wire, data[pos:pos + length]))
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ModelFileError(f"{source}: not an ONNX model (protobuf wire type {wire})")
    if pos != len(data):
        raise ModelFileError(f"{source}: truncated ONNX protobuf")
    return fields


_ONNX_GRAPH, _ONNX_METADATA_PROPS = 7, 14


def onnx_metadata_props(data: bytes, source: str) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX ModelProto, read straight from the protobuf bytes."""
    fields = _proto_fields(data, source)
    if not any(number == _ONNX_GRAPH and wire == 2 for number, wire, _ in fields):
        raise ModelFileError(f"{source}: not an ONNX model (no graph); expected an .onnx model")
    out: dict[str, str] = {}
    for number, wire, value in fields:
        if number == _ONNX_METADATA_PROPS and wire == 2 and isinstance(value, bytes):
            entry = {n: v for n, w, v in _proto_fields(value, source) if w == 2}
            key, val = entry.get(1, b""), entry.get(2, b"")
            if isinstance(key, bytes) and isinstance(val, bytes):
                out[key.decode("utf-8", "replace")] = val.decode("utf-8", "replace")
    return out


def read_artifact_document(path: str | Path) -> tuple[bytes, dict[str, Any]]:
    """The file's bytes and its embedded toolkit metadata as the raw JSON object, untyped.

    The container level: :func:`runtime.integrity.verify_content` checks the bytes against the
    digest in this document before anything in it is interpreted, so a damaged file is reported
    as damaged, not as odd metadata.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such model file") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc.strerror})") from None
    if not data:
        raise ModelFileError(f"{path}: model file is empty")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        raw = tflite_metadata_entries(data, str(path)).get(METADATA_KEY)
        text = None if raw is None else raw.decode("utf-8", "replace")
    elif suffix == ".onnx":
        text = onnx_metadata_props(data, str(path)).get(METADATA_KEY)
    else:
        raise ModelFileError(f"{path}: unsupported model suffix {suffix!r}; expected .tflite or .onnx")
    if text is None:
        raise ModelFileError(f"{path}: no {METADATA_KEY!r} metadata; expected a model written by `python -m export.tflite` or `python -m export.onnx`")
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise ModelFileError(f"{path}: embedded {METADATA_KEY!r} metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: embedded {METADATA_KEY!r} metadata is not a JSON object")
    return data, meta


def read_artifact_metadata(path: str | Path) -> ArtifactMetadata:
    """The toolkit metadata embedded in a ``.tflite`` or ``.onnx`` file written by ``export/``, typed and checked."""
    return ArtifactMetadata.from_dict(read_artifact_document(path)[1], str(path))
