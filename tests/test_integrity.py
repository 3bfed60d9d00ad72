"""The content digest every export embeds (``runtime.integrity``), on hand-made bytes: no model needed."""

from __future__ import annotations

import hashlib
import json

import pytest

from runtime.errors import ModelFileError
from runtime.integrity import DIGEST_KEY, PLACEHOLDER, seal, verify_content, with_placeholder

META = with_placeholder({"metadata_version": 2, "image_size": 75})
# weights, then the embedded JSON as the exporters write it, then more weights
BLOB = bytes(range(128, 256)) * 16 + json.dumps(META, sort_keys=True).encode() + bytes(range(255, 127, -1)) * 16


def _meta(data: bytes) -> dict:
    start = data.index(b"{")
    return json.loads(data[start:data.index(b"}", start) + 1])


def test_seal_writes_the_hash_of_the_file_with_the_digest_zeroed():
    sealed, digest = seal(BLOB)
    assert len(sealed) == len(BLOB) and digest != PLACEHOLDER
    assert hashlib.sha256(sealed.replace(digest.encode(), PLACEHOLDER.encode())).hexdigest() == digest
    assert _meta(sealed)[DIGEST_KEY] == digest
    assert verify_content(sealed, _meta(sealed), "m.tflite") is True


@pytest.mark.parametrize("where", [0, 100, 2047, len(BLOB) - 1])
def test_any_flipped_byte_outside_the_json_is_refused(where):
    sealed, _ = seal(BLOB)
    damaged = bytearray(sealed)
    damaged[where] ^= 0x01
    with pytest.raises(ModelFileError, match=r"m.onnx: content sha256 \w{12}\.\.\. does not match"):
        verify_content(bytes(damaged), _meta(sealed), "m.onnx")


def test_a_flip_inside_the_digest_is_refused():
    sealed, digest = seal(BLOB)
    at = sealed.index(digest.encode()) + 10
    damaged = sealed[:at] + (b"0" if sealed[at:at + 1] != b"0" else b"1") + sealed[at + 1:]
    with pytest.raises(ModelFileError, match="m.onnx: "):
        verify_content(damaged, _meta(damaged), "m.onnx")


def test_files_without_the_field():
    old = {"metadata_version": 1}
    assert verify_content(b"anything", old, "old.tflite") is False  # before digests: the caller warns
    with pytest.raises(ModelFileError, match="new.tflite: metadata_version 2 but no embedded content_sha256"):
        verify_content(b"anything", {"metadata_version": 2}, "new.tflite")


def test_two_digest_fields_are_refused():
    sealed, _ = seal(BLOB)
    with pytest.raises(ModelFileError, match="m.onnx: 2 embedded content_sha256 fields"):
        verify_content(sealed + sealed, _meta(sealed), "m.onnx")


def test_sealing_twice_is_a_bug():
    with pytest.raises(ValueError, match="already sealed"):
        seal(seal(BLOB)[0])
