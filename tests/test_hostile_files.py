"""Files made to mislead: metadata that does not belong to its model, or that no converter would write.

(Truncated, bit-flipped, zero-byte and renamed model files, and pickled arrays, are rows of
``test_bad_input_matrix.py`` and ``test_datasets.py``.) Metadata sizes buffers and sets decision
thresholds, so the runtime checks it against the model itself before using it.
"""

from __future__ import annotations

import json

import pytest

from runtime.classifier import Classifier
from runtime.errors import ModelFileError


def _forge(model_dir, tmp_path, change):
    """A copy of the ONNX int8 model whose embedded metadata ``change`` edits (no sidecar: nothing to check it against)."""
    import onnx

    model = onnx.load(str(model_dir / "model_int8_x86.onnx"))
    (entry,) = [p for p in model.metadata_props if p.key == "inception_edge"]
    meta = json.loads(entry.value)
    change(meta)
    entry.value = json.dumps(meta)
    path = tmp_path / "forged.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(image_size=299), "says 299x299 RGB input but the model takes shape"),
    (lambda m: m.update(image_size=10**6), "embedded image_size 1000000; expected 75 to 4096"),
    (lambda m: m["operating_points"][0].update(threshold=float("nan")), "thresholds"),
    (lambda m: m["operating_points"][0].update(threshold=1.5), "expected probabilities in (0, 1)"),
    (lambda m: m.update(class_names=["a", "b", "c"]), "expected two names"),
    (lambda m: m.pop("operating_points"), "lacks 'operating_points'"),
], ids=["size mismatch", "huge size", "NaN threshold", "threshold above 1", "three classes", "no operating points"])
def test_forged_metadata_is_refused(model_dir, tmp_path, change, message):
    with pytest.raises(ModelFileError, match=f"forged.onnx: .*{__import__('re').escape(message)}"):
        Classifier(_forge(model_dir, tmp_path, change))


def test_the_unforged_copy_loads(model_dir, tmp_path):
    assert Classifier(_forge(model_dir, tmp_path, lambda m: None)).image_size == 75
