"""export/ pieces that need no converter: config, calibration draw, drift checks, publishing, metadata readers."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

import export.publish as publish_module
from export.calibration import balanced_draw, calibration_split, draw_calibration, rows_holding
from export.config import DriftLimits, OnnxExportConfig, TFLiteExportConfig
from export.publish import check_destination, publish, rejected_path, sidecar_path, staged_file
from export.session import ExportSession
from export.report import ImageUse
from export.splits import LabelledPixels
from export.verify import compare_split, drift_failures
from runtime.artifact_metadata import (
    METADATA_KEY,
    onnx_metadata_props,
    read_artifact_document,
    tflite_metadata_entries,
)
from runtime.classifier import verify_sidecar
from runtime.datasets import load_dataset
from runtime.errors import ConfigError, DataError, DriftError, ModelFileError, OutputError
from runtime.fileio import atomic_write_json
from runtime.integrity import seal, verify_content, with_placeholder

from conftest import write_npz

POINTS = {"youden": 0.5, "high_sensitivity": 0.3}


# -- config ------------------------------------------------------------------------------------
def test_drift_limits_parse_overrides_defaults_and_none_disables():
    assert DriftLimits.parse("auc=0.005") == DriftLimits(auc=0.005)
    assert DriftLimits.parse("sensitivity=0.03, agreement=0.95") == DriftLimits(sensitivity=0.03, agreement=0.95)
    assert DriftLimits.parse("none") is None
    assert DriftLimits() == DriftLimits(0.02, 0.02, 0.01, 0.97)


@pytest.mark.parametrize("text", ["sens=0.02", "auc", "auc=abc", "agreement=1.5", "auc=-0.1"])
def test_drift_limits_refuse_bad_text(text):
    with pytest.raises(ConfigError, match="--max-drift"):
        DriftLimits.parse(text)


def test_configs_round_trip_and_name_their_artifacts():
    t = TFLiteExportConfig(model="m", max_drift=DriftLimits(auc=0.02), calibration_size=150)
    assert TFLiteExportConfig.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    assert t.verify_kernels == ("default", "builtin") and TFLiteExportConfig(model="m", verify_kernels="default").verify_kernels == ("default",)
    assert t.artifact_name == "model_int8.tflite"
    assert TFLiteExportConfig(model="m", input_type="int8").artifact_name == "model_int8_int8input.tflite"
    assert TFLiteExportConfig(model="m", mode="float16").artifact_name == "model_float16.tflite"
    o = OnnxExportConfig(model="m", max_drift=None)
    assert OnnxExportConfig.from_dict(o.to_dict()) == o
    assert (o.fp32_name, o.int8_name) == ("model_fp32.onnx", "model_int8.onnx")
    assert OnnxExportConfig(model="m", fallback="auto").int8_name == "model_int8_fallback.onnx"
    assert OnnxExportConfig(model="m", calibration_method="minmax").int8_name == "model_int8_minmax.onnx"


def test_calibration_stride_divides_and_bounds_memory():
    from export.onnx.convert import calibration_stride

    assert calibration_stride(200, 75) == 200  # 200 x 4 MB fits the 1 GB budget
    assert calibration_stride(200, 299) == 10  # ~64 MB per image: at most 15, and a divisor of 200
    assert calibration_stride(199, 299) == 1  # a prime count still works, one image at a time


@pytest.mark.parametrize("kwargs,flag", [
    ({"mode": "int4"}, "--mode"), ({"input_type": "float32"}, "--input-type"),
    ({"mode": "float16", "input_type": "int8"}, "--input-type"), ({"calibration_size": 0}, "--calibration-size"),
    ({"verify_kernels": ("builtin",)}, "--verify-kernels builtin"), ({"verify_kernels": ("default", "xnnpack")}, "--verify-kernels"),
    ({"verify_kernels": ("default", "default")}, "each once"),
])
def test_tflite_config_refuses(kwargs, flag):
    with pytest.raises(ConfigError, match=flag):
        TFLiteExportConfig(model="m", **kwargs)


@pytest.mark.parametrize("kwargs,flag", [({"calibration_method": "mse"}, "--calibration-method"), ({"opset": 13}, "--opset")])
def test_onnx_config_refuses(kwargs, flag):
    with pytest.raises(ConfigError, match=flag):
        OnnxExportConfig(model="m", **kwargs)


def test_a_sidecar_config_from_before_the_targets_converged_still_reads():
    """``target`` (pi or x86) once chose the activation type; both wrote the same graph since, so it is read and ignored."""
    from export.config import config_of_kind

    old = {"kind": "onnx", **OnnxExportConfig(model="m").to_dict(), "target": "x86"}
    assert config_of_kind(old) == OnnxExportConfig(model="m")
    with pytest.raises(ConfigError, match="unknown keys \\['target'\\]"):
        TFLiteExportConfig.from_dict({"model": "m", "target": "x86"})  # retired for ONNX only
    with pytest.raises(ConfigError, match="export config kind 'coreml'"):
        config_of_kind({"kind": "coreml", "model": "m"})


def test_config_refuses_unknown_keys():
    with pytest.raises(ConfigError, match="unknown keys"):
        TFLiteExportConfig.from_dict({"model": "m", "quantize": True})


# -- calibration -------------------------------------------------------------------------------
def test_balanced_draw_is_stratified_seeded_and_not_the_first_rows():
    labels = np.repeat([0, 1], [300, 100])  # sorted by label, as the bundled arrays are
    a, b, c = balanced_draw(labels, 400, 50, 0), balanced_draw(labels, 400, 50, 0), balanced_draw(labels, 400, 50, 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert (labels[a] == 0).sum() == 25 and (labels[a] == 1).sum() == 25
    assert np.unique(a).size == 50 and np.all(np.diff(a) > 0)
    # a class smaller than its half share is taken whole, the rest comes from the other
    small = balanced_draw(labels, 400, 250, 0)
    assert (labels[small] == 1).sum() == 100 and small.size == 250
    odd = balanced_draw(np.repeat([0, 1], [10, 10]), 20, 5, 0)
    assert odd.size == 5


def test_calibration_sample_records_its_draw(tmp_path):
    ds = load_dataset(write_npz(tmp_path / "d.npz", n_per_class=20))
    split, labels = calibration_split(ds.split("train"), None, positive_label=1)
    one = draw_calibration(split, labels, 10, 3, 75, None)
    two = draw_calibration(split, labels, 10, 3, 75, None)
    assert one.pixels.shape == (10, 75, 75, 3) and one.pixels.dtype == np.float32
    assert one.record == two.record and one.record["class_counts"] == {"negative": 5, "positive": 5}
    assert one.record["indices"] == sorted(one.record["indices"]) and len(one.record["indices_sha256"]) == 64
    assert draw_calibration(split, labels, 10, 4, 75, None).record["pixels_sha256"] != one.record["pixels_sha256"]
    with pytest.raises(ConfigError, match="--calibration-size 41: larger than the 40 images"):
        draw_calibration(split, labels, 41, 0, 75, None)


def test_calibration_from_unlabelled_npy_and_wrong_shape(tmp_path):
    good = tmp_path / "calib.npy"
    np.save(good, np.zeros((6, 28, 28), np.uint8))
    split, labels = calibration_split(None, str(good), 1)
    assert labels is None and draw_calibration(split, None, 4, 0, 75, None).record["class_counts"] is None
    bad = tmp_path / "flat.npy"
    np.save(bad, np.zeros((6, 784), np.uint8))
    with pytest.raises(DataError, match="flat.npy: calibration images have shape \\(6, 784\\)"):
        calibration_split(None, str(bad), 1)


@pytest.mark.parametrize("calibration_data", [None, "training file", "a .npy cut from it"])
def test_the_agreement_pool_never_holds_a_calibration_image(fake_model, calibration_data):
    """Agreement on unused training images means unused: also when --calibration-data names the training data."""
    model, data = fake_model
    train = load_dataset(data).split("train")
    cut = [3, 5, 7, 11, 13, 17, 19, 23]  # the training rows the .npy case holds
    if calibration_data == "training file":
        calibration_data = str(data)
    elif calibration_data is not None:
        calibration_data = str(model.parent / "cut.npy")
        np.save(calibration_data, train.images[cut])
    cfg = OnnxExportConfig(model=str(model), calibration_size=6, calibration_seed=1, calibration_data=calibration_data)
    session = ExportSession.open(cfg, [cfg.int8_name], needs_calibration=True)
    drawn = session.calibration().record["indices"]
    used = drawn if calibration_data is None or calibration_data.endswith(".npz") else [cut[i] for i in drawn]
    assert session._pools is not None and list(session._pools) == ["train_unused"]
    pool = session._pools["train_unused"]
    assert len(set(used)) == 6 and sorted(pool.tolist()) == sorted(set(range(len(train))) - set(used))
    assert rows_holding(train.images, train.images[:0]).size == 0
    assert rows_holding(train.images, train.images[:2].astype(np.float32)).size == 0  # another dtype shares no row


# -- drift -------------------------------------------------------------------------------------
def test_identical_outputs_pass_and_report_zero_drift():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    logits = rng.normal(size=200) + 1.5 * y
    report = compare_split(y, logits, logits.copy(), POINTS)
    assert report.delta_auc == 0.0 and report.drift.max_abs_delta_probability == 0.0
    assert all(p.agreement == 1.0 for p in report.points.values())
    assert drift_failures({"test": report}, DriftLimits()) == []


def test_drift_failures_name_split_point_metric_and_bound():
    y = np.repeat([0, 1], 50)
    reference = np.where(y == 1, 1.0, -1.0) + np.linspace(-0.5, 0.5, 100)
    candidate = reference.copy()
    candidate[np.flatnonzero(y == 1)[:5]] = -3.0  # five positives pushed below every threshold
    report = compare_split(y, reference, candidate, POINTS)
    assert report.points["youden"].delta("sensitivity") == pytest.approx(-0.1)
    assert report.points["youden"].agreement == pytest.approx(0.95)
    failures = drift_failures({"val": report}, DriftLimits())
    assert "val/youden |delta sensitivity| 0.1000 > 0.02" in failures
    assert "val/youden agreement 0.9500 < 0.97" in failures
    assert drift_failures({"val": report}, DriftLimits(sensitivity=0.2, agreement=0.9, auc=1.0)) == []


def _flipped_split(name: str, n_per_class: int, lost: int, gained: int, seed: int):
    """A split where the artifact flips ``lost`` positives to negative and ``gained`` negatives to positive at p=0.5."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per_class)
    reference = np.where(y == 1, 1.0, -1.0) * rng.uniform(0.3, 3.0, y.size)  # every float decision is right
    candidate = reference + rng.normal(0, 0.01, y.size)
    candidate[np.flatnonzero(y == 1)[:lost]] = -0.2
    candidate[np.flatnonzero(y == 0)[:gained]] = 0.2
    return LabelledPixels(name, np.zeros((0,)), y), reference, candidate


ONE_POINT = {"youden": 0.5}


def _every_split_judges(data) -> ImageUse:
    return ImageUse((), tuple(d.name for d in data), {d.name: d.labels01.size for d in data})


def _verdict(splits, gate: str, limits: DriftLimits | None = None):
    from export.verify import verify_artifact

    data = [d for d, _, _ in splits]
    return verify_artifact({d.name: c for d, _, c in splits}, data, {d.name: r for d, r, _ in splits}, ONE_POINT,
                           limits or DriftLimits(), _every_split_judges(data), gate)


def test_one_image_flips_the_point_rule_but_not_the_noninferiority_gate():
    pool = _flipped_split("train_unused", 1114, 6, 6, 2)
    test = _flipped_split("test", 234, 2, 2, 1)
    passing = [_flipped_split("val", 135, 2, 2, 0), test, pool]  # val agreement 266/270 = 0.9852
    failing = [_flipped_split("val", 135, 3, 3, 0), test, pool]  # one more lost and gained: 264/270 = 0.9778
    assert _verdict(passing, "point").passed and not _verdict(failing, "point").passed
    for splits in (passing, failing):
        report = _verdict(splits, "noninferiority")
        assert report.passed, report.failures
        assert report.gate.splits == ("val", "test", "train_unused") and report.gate.n == 2 * (135 + 234 + 1114)
        assert report.gate.one_image is not None and report.gate.one_image.sensitivity == 1 / (135 + 234 + 1114)


def test_noninferiority_refuses_a_real_loss_and_an_unproven_one():
    lossy = [_flipped_split("val", 135, 8, 0, 0), _flipped_split("test", 234, 12, 0, 1), _flipped_split("train_unused", 1114, 56, 0, 2)]
    report = _verdict(lossy, "noninferiority")  # 76 of 1483 positives lost: sensitivity -0.051
    assert not report.passed
    line = next(f for f in report.failures if "sensitivity" in f)
    assert line.startswith("val+test+train_unused/youden sensitivity loss up to 0.06") and "76 lost, 0 gained of 1483" in line
    # 270 images with one flip each way pass the point rule, yet cannot show a 0.02 margin: the gate refuses
    small = [_flipped_split("val", 135, 1, 1, 0)]
    assert _verdict(small, "point").passed
    assert not _verdict(small, "noninferiority").passed


def test_the_summary_line_says_not_judged_without_limits():
    from export.session import summary_line
    from export.verify import verify_artifact

    small = [_flipped_split("val", 135, 1, 1, 0)]  # refused by the gate at the default limits (above)
    data, reference, outputs = [small[0][0]], {"val": small[0][1]}, {"val": small[0][2]}
    judged = summary_line(verify_artifact(outputs, data, reference, ONE_POINT, DriftLimits(), _every_split_judges(data)))
    unjudged = summary_line(verify_artifact(outputs, data, reference, ONE_POINT, None, _every_split_judges(data)))
    assert judged.endswith(": FAILED (2 beyond limits)")  # a sensitivity and a specificity bound of 0.0408
    assert unjudged.endswith(": not judged (--max-drift none)") and "within limits" not in unjudged
    assert judged.split(": ")[0] == unjudged.split(": ")[0]  # the same figures either way


def test_shortfall_is_the_distance_of_the_worst_bound_beyond_its_limit():
    from export.verify import shortfall

    splits = [_flipped_split("val", 135, 2, 2, 0), _flipped_split("train_unused", 1114, 6, 6, 2)]
    report = _verdict(splits, "noninferiority")
    gate = report.gate.points["youden"]
    assert report.gate.auc_change is not None
    terms = {"sensitivity": -gate.sensitivity_change.low - 0.02, "specificity": -gate.specificity_change.low - 0.02,
             "agreement": 0.97 - gate.agreement_interval.low, "auc": -report.gate.auc_change.low - 0.01}
    assert shortfall(report.gate, report.splits, DriftLimits()) == pytest.approx(max(terms.values()))
    assert max(terms.values()) <= 0 and report.passed
    strict = _verdict(splits, "noninferiority", DriftLimits(agreement=0.999))
    assert shortfall(strict.gate, strict.splits, DriftLimits(agreement=0.999)) == pytest.approx(0.999 - gate.agreement_interval.low)
    assert 0.999 - gate.agreement_interval.low > 0 and not strict.passed
    # the point rule judges val alone (the pool is not a held-out split): 2 of 135 positives lost and 2 of 135
    # negatives gained put sensitivity and specificity 0.0052 inside their 0.02; agreement 266/270 is 0.0152 inside 0.97
    point = _verdict(splits, "point")
    observed = {"sensitivity": 2 / 135 - 0.02, "specificity": 2 / 135 - 0.02, "agreement": 0.97 - 266 / 270}
    assert observed["agreement"] < observed["sensitivity"]  # so the shortfall is the rate's term, not agreement's
    assert shortfall(point.gate, point.splits, DriftLimits()) == pytest.approx(max(observed.values()), abs=1e-12)
    looser = DriftLimits(sensitivity=0.1, specificity=0.1, auc=0.1)  # now agreement's term is the worst
    assert shortfall(point.gate, point.splits, looser) == pytest.approx(0.97 - 266 / 270, abs=1e-12)


def test_the_benchmark_flags_only_drift_its_split_shows():
    from export.verify import compare_split, shown_beyond_failures

    (_, ref, cand) = _flipped_split("test", 234, 2, 0, 1)
    y = np.repeat([0, 1], 234)
    assert shown_beyond_failures("test", compare_split(y, ref, cand, ONE_POINT), DriftLimits()) == []
    (_, ref, cand) = _flipped_split("test", 234, 30, 0, 1)  # sensitivity -0.128
    failures = shown_beyond_failures("test", compare_split(y, ref, cand, ONE_POINT), DriftLimits())
    assert any(f.startswith("test/youden sensitivity loss at least 0.0") for f in failures), failures


# -- publishing --------------------------------------------------------------------------------
def _sealed_onnx(tag: str) -> bytes:
    """A tiny ONNX file with metadata and its content digest, as the exporters write them."""
    return seal(_onnx_with_metadata(with_placeholder({"metadata_version": 2, "tag": tag})))[0]


def test_publish_renames_into_place_and_writes_the_sidecar(tmp_path):
    dest = tmp_path / "model_int8.onnx"
    blob = _sealed_onnx("new")
    sidecar = {"artifact": "model_int8.onnx", "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    with staged_file(dest) as staged:
        staged.write_bytes(blob)
        publish(staged, dest, sidecar)
    assert dest.read_bytes() == blob and not staged.exists()
    assert json.loads(sidecar_path(dest).read_text()) == sidecar
    assert oct(dest.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_publish_refuses_an_unsealed_file(tmp_path):
    dest = tmp_path / "m.onnx"
    with staged_file(dest) as staged:
        staged.write_bytes(_onnx_with_metadata({"metadata_version": 1}))
        with pytest.raises(RuntimeError, match="without its content digest"):
            publish(staged, dest, {})
    assert not dest.exists()


class _Killed(BaseException):
    """Stands for SIGKILL at one step of publishing: nothing after it runs."""


@pytest.mark.parametrize("stop_at, left", [("artifact rename", "old"), ("sidecar write", "new")])
def test_publishing_stopped_between_steps_never_pairs_a_file_with_another_checksum(tmp_path, monkeypatch, stop_at, left):
    dest = tmp_path / "m.onnx"
    old = _sealed_onnx("old")
    dest.write_bytes(old)
    atomic_write_json(sidecar_path(dest), {"sha256": hashlib.sha256(old).hexdigest()})

    def killed(*args, **kwargs):
        raise _Killed

    with staged_file(dest) as staged:
        staged.write_bytes(_sealed_onnx("new"))
        with monkeypatch.context() as m:
            m.setattr(*((os, "replace") if stop_at == "artifact rename" else (publish_module, "atomic_write_json")), killed)
            with pytest.raises(_Killed):
                publish(staged, dest, {})
    data, meta = read_artifact_document(dest)
    assert meta["tag"] == left and verify_content(data, meta, str(dest))
    assert not sidecar_path(dest).exists()  # the stale checksum went first
    assert verify_sidecar(dest, data) is False  # and the runtime loads a file without one


def test_a_failed_verification_leaves_the_previous_artifact(tmp_path):
    dest = tmp_path / "model_int8.onnx"
    dest.write_bytes(b"previous")
    with staged_file(dest) as staged:
        staged.write_bytes(b"drifting model")
        with pytest.raises(DriftError, match="model_int8.onnx: drift beyond --max-drift, not written \\(1 failures: test/youden"):
            publish(staged, dest, {"report": "refused"}, failures=["test/youden agreement 0.9 < 0.98"])
    assert dest.read_bytes() == b"previous" and not sidecar_path(dest).exists()
    assert json.loads(rejected_path(dest).read_text()) == {"report": "refused"}
    assert DriftError("x").exit_code == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_int8.onnx", "model_int8.onnx.rejected.json"]


def test_an_exception_while_staged_leaves_nothing(tmp_path):
    dest = tmp_path / "model.tflite"
    with pytest.raises(KeyboardInterrupt), staged_file(dest) as staged:
        staged.write_bytes(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_check_destination(tmp_path):
    (tmp_path / "model_int8.tflite").write_bytes(b"x")
    with pytest.raises(OutputError, match="model_int8.tflite: already exists; pass --overwrite"):
        check_destination(tmp_path, ["model_int8.tflite"], overwrite=False)
    check_destination(tmp_path, ["model_int8.tflite"], overwrite=True)
    check_destination(tmp_path / "new" / "dir", ["a"], overwrite=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        check_destination(tmp_path / "file", ["a"], overwrite=False)
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OutputError, match="not a writable directory"):
            check_destination(locked, ["a"], overwrite=False)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- metadata readers --------------------------------------------------------------------------
def _onnx_with_metadata(meta: dict) -> bytes:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    helper.set_model_props(model, {"other": "1", METADATA_KEY: json.dumps(meta)})
    return model.SerializeToString() if onnx else b""


def test_onnx_metadata_reads_back_without_onnx(tmp_path):
    blob = _onnx_with_metadata({"class_names": ["normal", "pneumonia"], "image_size": 75})
    assert onnx_metadata_props(blob, "m.onnx")["other"] == "1"
    path = tmp_path / "m.onnx"
    path.write_bytes(blob)
    assert read_artifact_document(path)[1] == {"class_names": ["normal", "pneumonia"], "image_size": 75}


@pytest.mark.parametrize("content,suffix,message", [
    (b"", ".onnx", "model file is empty"),
    (b"\x08\x07\x12\x05", ".onnx", "truncated or corrupt ONNX"),
    (b"hello world, not a model", ".tflite", "not a TFLite flatbuffer"),
    (b"\x10\x00\x00\x00TFL3\x00\x00", ".tflite", "truncated or corrupt TFLite"),
    (b"anything", ".pb", "unsupported model suffix '.pb'"),
])
def test_metadata_reader_refuses_broken_files(tmp_path, content, suffix, message):
    path = tmp_path / f"m{suffix}"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        read_artifact_document(path)


def test_truncated_onnx_with_metadata_is_refused(tmp_path):
    blob = _onnx_with_metadata({"a": 1})
    path = tmp_path / "m.onnx"
    path.write_bytes(blob[: len(blob) - 7])
    with pytest.raises(ModelFileError, match="m.onnx"):
        read_artifact_document(path)


def test_tflite_reader_on_a_flatbuffer_without_metadata():
    assert tflite_metadata_entries(b"\x0c\x00\x00\x00TFL3\x04\x00\x04\x00\x04\x00\x00\x00", "m.tflite") == {}
