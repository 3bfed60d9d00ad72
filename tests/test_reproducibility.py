"""The same seed and the same model give the same artifact.

Balancing indices and calibration draws per seed are checked in ``test_balance.py`` and
``test_export_units.py``. Here: a second TFLite export of the reference model equals the first
byte for byte, except the metadata's creation time and the content digest that covers it. (ONNX is not byte-reproducible: tf2onnx
orders some nodes and numbers their names differently from run to run; yet two ONNX exports of
the reference model, measured side by side, gave bit-identical logits on all 468 test images.)
"""

from __future__ import annotations

import json
import re

from benchmarks.reference import reference_export_configs
from runtime.artifact_metadata import METADATA_KEY, tflite_metadata_entries
from runtime.integrity import verify_content


def tflite_metadata_json(data: bytes) -> dict:
    return json.loads(tflite_metadata_entries(data, "model_int8.tflite")[METADATA_KEY])


_CREATED = re.compile(rb'"created": "[0-9T:+.\-]+"')
_DIGEST = re.compile(rb'"content_sha256": "[0-9a-f]{64}"')


def _without_creation_time(data: bytes) -> bytes:
    masked, count = _CREATED.subn(b'"created": "-"', data)
    assert count == 1, f"expected one creation time in the metadata, found {count}"
    masked, count = _DIGEST.subn(b'"content_sha256": "-"', masked)
    assert count == 1, f"expected one content digest in the metadata, found {count}"
    return masked


def test_a_second_tflite_export_is_byte_identical_apart_from_its_creation_time(model_dir, tmp_path):
    from dataclasses import replace

    from export.tflite import export_tflite

    cfg = reference_export_configs(model_dir)[0]  # the cached export's own config
    # verified on fewer images, one kernel set and without a verdict: verification reads the bytes, it does not shape them
    again = export_tflite(replace(cfg, out=str(tmp_path), verify_kernels=("default",), agreement_images=0, max_drift=None))
    first = (model_dir / "model_int8.tflite").read_bytes()
    second = again.path.read_bytes()
    assert len(first) == len(second)
    for data in (first, second):
        assert verify_content(data, tflite_metadata_json(data), "model_int8.tflite")
    assert _without_creation_time(first) == _without_creation_time(second)
