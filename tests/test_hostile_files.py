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
from runtime.integrity import DIGEST_KEY, PLACEHOLDER, seal


def _forge(model_dir, tmp_path, change, reseal=True):
    """A copy of the ONNX int8 model whose embedded metadata ``change`` edits (no sidecar: nothing to check it against).

    The content digest is a checksum, not a signature: a deliberate forger recomputes it (``reseal``), so the
    metadata checks below must hold on their own.
    """
    import onnx

    model = onnx.load(str(model_dir / "model_int8.onnx"))
    (entry,) = [p for p in model.metadata_props if p.key == "inception_edge"]
    meta = json.loads(entry.value)
    change(meta)
    if reseal:
        meta[DIGEST_KEY] = PLACEHOLDER
    entry.value = json.dumps(meta)
    path = tmp_path / "forged.onnx"
    data = model.SerializeToString()
    path.write_bytes(seal(data)[0] if reseal else data)
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


def test_metadata_edited_without_resealing_is_refused_by_the_digest(model_dir, tmp_path):
    path = _forge(model_dir, tmp_path, lambda m: m["operating_points"][0].update(threshold=0.01), reseal=False)
    with pytest.raises(ModelFileError, match=r"forged.onnx: content sha256 \w{12}\.\.\. does not match"):
        Classifier(path)


def test_a_file_from_before_digests_loads_with_a_warning(model_dir, tmp_path, caplog):
    def older_export(meta):
        meta.pop(DIGEST_KEY)
        meta["metadata_version"] = 1

    with caplog.at_level("WARNING", logger="runtime"):
        clf = Classifier(_forge(model_dir, tmp_path, older_export, reseal=False))
    assert clf.content_verified is False and clf.image_size == 75
    assert [r.getMessage() for r in caplog.records] == [
        f"warning: {tmp_path / 'forged.onnx'} has no embedded content_sha256 (exported before artifacts carried one); "
        "it runs unchecked: re-export it, or keep its sidecar NAME.json beside it"]


def test_a_current_file_that_lost_its_digest_field_is_refused(model_dir, tmp_path):
    with pytest.raises(ModelFileError, match="forged.onnx: metadata_version 2 but no embedded content_sha256"):
        Classifier(_forge(model_dir, tmp_path, lambda m: m.pop(DIGEST_KEY), reseal=False))
