"""The runtime's backends on the exported reference artifacts: threads, fallbacks, bad model files, bench, CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from runtime.bench import BenchConfig, run_bench
from runtime.classifier import Classifier
from runtime.datasets import binary_labels, load_dataset
from runtime.errors import BackendError, ConfigError, DataError, ModelFileError
from runtime.metrics import binary_metrics

ARTIFACTS = ["model_int8.tflite", "model_int8.onnx"]


@pytest.fixture(scope="module")
def test_split(xray_data):
    test = load_dataset(xray_data).splits["test"]
    return np.asarray(test.images), binary_labels(test, 1)


@pytest.fixture(scope="module")
def artifacts(tflite_result, onnx_results, model_dir):
    return model_dir


@pytest.mark.parametrize(("name", "interpreters"), [("model_int8.tflite", 1), ("model_int8.tflite", 3),
                                                    ("model_int8.onnx", 1)])
def test_eight_threads_get_exactly_the_serial_answers(artifacts, test_split, name, interpreters):
    clf = Classifier(artifacts / name, threads=1, interpreters=interpreters)
    images = test_split[0][:40]
    serial = [clf.predict(img)[0].logit for img in images]
    assert len(set(serial)) > 10  # distinct answers, so a mix-up between threads would show
    got: dict[tuple[int, int], float] = {}
    barrier = threading.Barrier(8)

    def work(t: int) -> None:
        barrier.wait()  # start together, so calls really overlap
        for k in range(60):
            i = (7 * t + k) % len(images)
            got[(t, k)] = clf.predict(images[i])[0].logit - serial[i]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 480 and set(got.values()) == {0.0}


def test_tflite_falls_back_to_tensorflow_last(artifacts, test_split, monkeypatch):
    images, model = test_split[0][:20], artifacts / "model_int8.tflite"
    litert = {k: Classifier(model, kernels=k) for k in ("default", "builtin")}
    expected = {k: [r.logit for r in clf.predict(images)] for k, clf in litert.items()}
    for module in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, module, None)  # not installed, as far as imports go
    fallback = {k: Classifier(model, kernels=k) for k in ("default", "builtin")}
    assert litert["default"].backend == "ai-edge-litert" and fallback["default"].backend == "tensorflow"
    # measured: TensorFlow 2.21's tf.lite and ai-edge-litert 2.3 give identical outputs, on either kernel set
    assert {k: [r.logit for r in clf.predict(images)] for k, clf in fallback.items()} == expected
    assert expected["default"] != expected["builtin"]


def test_a_missing_backend_names_the_package_to_install(artifacts, monkeypatch):
    for module in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter",
                   "tensorflow", "onnxruntime"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(BackendError, match=r"no TFLite interpreter is installed; install ai-edge-litert \(`pip install ai-edge-litert`\)"):
        Classifier(artifacts / "model_int8.tflite")
    with pytest.raises(BackendError, match=r"backend 'tflite-runtime' is not installed .*`pip install tflite-runtime`"):
        Classifier(artifacts / "model_int8.tflite", backend="tflite-runtime")
    with pytest.raises(BackendError, match=r"`pip install onnxruntime`"):
        Classifier(artifacts / "model_int8.onnx")


def _flip_middle(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 2] ^= 0xFF
    return bytes(out)


@pytest.mark.parametrize(("case", "make", "expected"), [
    ("missing", None, "no such model file"),
    ("empty", lambda d: b"", "empty"),
    ("truncated", lambda d: d[: len(d) // 3], "model_int8"),
    ("text", lambda d: b"hello, I am not a model\n" * 50, "model_int8"),
])
@pytest.mark.parametrize("name", ARTIFACTS)
def test_broken_model_files_raise_model_file_errors(artifacts, tmp_path, name, case, make, expected):
    target = tmp_path / name
    if make is not None:
        target.write_bytes(make((artifacts / name).read_bytes()))
    with pytest.raises(ModelFileError, match=expected) as info:
        Classifier(target)
    assert str(target) in str(info.value)


def test_checksum_suffix_and_channel_mistakes_are_named(artifacts, tmp_path, test_split):
    copy = tmp_path / "model_int8.onnx"
    copy.write_bytes(_flip_middle((artifacts / "model_int8.onnx").read_bytes()))
    shutil.copy(artifacts / "model_int8.onnx.json", tmp_path / "model_int8.onnx.json")
    with pytest.raises(ModelFileError, match="does not match .* in model_int8.onnx.json"):
        Classifier(copy)
    shutil.copy(artifacts / "model_int8.tflite", tmp_path / "model.bin")
    with pytest.raises(ModelFileError, match=r"unsupported model suffix '\.bin'; expected \.tflite or \.onnx"):
        Classifier(tmp_path / "model.bin")
    shutil.copy(artifacts / "model_int8.onnx", tmp_path / "renamed.tflite")
    with pytest.raises(ModelFileError, match="renamed.tflite"):
        Classifier(tmp_path / "renamed.tflite")
    clf = Classifier(artifacts / "model_int8.tflite")
    for channels in (2, 4):
        with pytest.raises(DataError, match=f"{channels} channels; expected 1 \\(grayscale\\) or 3 \\(RGB\\)"):
            clf.predict(np.zeros((28, 28, channels), np.uint8))
    with pytest.raises(DataError, match="inf"):
        Classifier(artifacts / "model_int8.tflite", pixel_range="0,1").predict(np.full((2, 28, 28), np.inf, np.float32))
    with pytest.raises(BackendError, match="cannot run an .onnx model"):
        Classifier(artifacts / "model_int8.onnx", backend="ai-edge-litert")
    with pytest.raises(ConfigError, match="interpreters=0"):
        Classifier(artifacts / "model_int8.tflite", interpreters=0)
    with pytest.raises(ConfigError, match="interpreters=2 applies to .tflite models"):
        Classifier(artifacts / "model_int8.onnx", interpreters=2)
    with pytest.raises(ConfigError, match="kernels='builtin' applies to .tflite models"):
        Classifier(artifacts / "model_int8.onnx", kernels="builtin")


def _cli(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"import sys\n{prelude}\nfrom runtime.__main__ import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.parametrize("name", ARTIFACTS)
def test_cli_predict_gives_the_export_reports_decisions_without_tensorflow(artifacts, test_split, tmp_path, name):
    images, labels = test_split
    paths = []
    for i, img in enumerate(images):  # every test image as a PNG file, as a user would have them
        paths.append(str(tmp_path / f"{i:03d}.png"))
        Image.fromarray(img).save(paths[-1])
    proc = _cli("predict", str(artifacts / name), *paths, "--json",
                prelude="sys.modules['tensorflow'] = None  # any import of TensorFlow now fails")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["path"] for r in rows] == paths
    positive = np.array([r["positive"] for r in rows])
    assert [r["label"] for r in rows] == ["pneumonia" if p else "normal" for p in positive]
    report = json.loads((artifacts / f"{name}.json").read_text())["verification"]["splits"]["test"]["operating_points"]
    m = binary_metrics(labels, np.array([r["probability"] for r in rows]), rows[0]["threshold"])
    assert (m.sensitivity, m.specificity) == (report["youden"]["artifact"]["sensitivity"],
                                              report["youden"]["artifact"]["specificity"])
    assert np.array_equal(positive, np.array([r["probability"] for r in rows]) >= rows[0]["threshold"])


def test_cli_errors_are_one_line_even_after_the_model_loaded(artifacts, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    for args, culprit in [(("predict", str(artifacts / "model_int8.tflite"), str(tmp_path / "nope.png")), "nope.png: no such image file"),
                          (("bench", str(artifacts / "model_int8.tflite"), "--runs", "0"), "--runs 0: expected 1 or more"),
                          (("bench", str(artifacts / "model_int8.tflite"), "--image", str(tmp_path / "notes.png")),
                           "notes.png: not a readable image"),
                          (("predict", str(tmp_path / "gone.tflite"), str(tmp_path / "notes.png")), "gone.tflite: no such model file")]:
        proc = _cli(*args)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("error: ") and culprit in proc.stderr and not proc.stdout
    # a file that exists but is not an image is not a usage error: it is a row, the others are classified, exit 4
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(tmp_path / "blank.png")
    proc = _cli("predict", str(artifacts / "model_int8.tflite"), str(tmp_path / "notes.png"), str(tmp_path / "blank.png"), "--json")
    assert proc.returncode == 4 and "Traceback" not in proc.stderr, proc.stderr
    bad, good = json.loads(proc.stdout)
    assert (bad["status"], good["status"]) == ("error", "ok") and "notes.png: not a readable image" in bad["error"]
    assert "2 files: " in proc.stderr and "1 failed" in proc.stderr


# Refuses every import of TensorFlow, caught or not, and says so on stderr: the runtime's cold path must not try.
_NO_TENSORFLOW = """
import importlib.abc
class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            sys.stderr.write(f"tensorflow import attempted: {name}\\n")
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, _NoTensorFlow())
"""


@pytest.mark.parametrize("name", ARTIFACTS)
def test_bench_reports_consistent_figures(artifacts, name):
    """Figures of ``run_bench`` in this process, and the cold start of ``python -m runtime bench`` in a fresh one.

    Cold start is process start to the first answer (``/proc``), so it means something only in a fresh
    process: in pytest's it is the age of the whole test session, and no bound on it could fail. It is
    checked on the CLI's own process instead, with TensorFlow's import refused: that process must get
    its answer without trying TensorFlow, its cold start must cover the import, load and first inference
    it reports, and the rest (interpreter start and the runtime's own imports) must stay small.
    """
    r = run_bench(BenchConfig(model=str(artifacts / name), runs=8, warmup=1, threads=1, callers=3))
    assert r.image_size == 75 and r.threads == 1 and r.backend in ("ai-edge-litert", "onnxruntime")
    assert 0 < r.bare.p50 <= r.bare.p90 and 0 < r.predict.p50 <= r.predict.p90
    assert r.overhead == pytest.approx(r.predict.p50 / r.bare.p50 - 1)
    assert r.images_per_s == pytest.approx(1e3 / r.predict.mean)
    assert r.load_s > 0 and r.first_inference_s > 0
    assert 50 < r.rss_after_load_mb <= r.peak_rss_mb
    assert r.concurrency["predictions"] == 24 and r.concurrency["equal_to_serial"]
    proc = _cli("bench", str(artifacts / name), "--runs", "3", "--threads", "1", "--json", prelude=_NO_TENSORFLOW)
    assert proc.returncode == 0, proc.stderr
    assert "tensorflow import attempted" not in proc.stderr, proc.stderr
    fresh = json.loads(proc.stdout)
    assert fresh["predict"]["p50"] > 0 and fresh["backend"] == r.backend
    measured = fresh["import_s"] + fresh["load_s"] + fresh["first_inference_s"]
    assert fresh["cold_start_s"] is not None and measured < fresh["cold_start_s"] < measured + 10.0, fresh


def test_onnx_sessions_ask_for_unsaturated_int8_products(artifacts):
    """x86 CPUs without VNNI saturate uint8 x int8 products in int16 (the int8 - float logit spread measured 0.74 instead
    of 0.22 on such a CPU, see runtime.backends); every session must carry the option that avoids it."""
    clf = Classifier(artifacts / "model_int8.onnx", backend="onnxruntime")
    options = clf.engine._session.get_session_options()
    assert options.get_session_config_entry("session.x64quantprecision") == "1"
