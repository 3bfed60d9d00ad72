"""runtime/ is the base layer: numpy and an inference backend only, never TensorFlow."""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

HEAVY = {"tensorflow", "keras", "tf2onnx", "onnx", "tf_keras"}
UPPER = {"train", "export", "benchmarks"}


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_runtime_imports_nothing_heavy_or_from_upper_layers():
    for path in (ROOT / "runtime").glob("*.py"):
        bad = _top_level_imports(path) & (HEAVY | UPPER)
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_runtime_imports_and_computes_with_tensorflow_absent():
    code = (
        "import sys\n"
        "for name in ('tensorflow', 'keras', 'tf2onnx', 'onnx'):\n"
        "    sys.modules[name] = None  # any import of them now raises ImportError\n"
        "import numpy as np, runtime, runtime.metrics, runtime.datasets, runtime.images, runtime.fileio, runtime.cli, runtime.errors\n"
        "import runtime.backends, runtime.artifact_metadata, runtime.classifier, runtime.__main__\n"
        "import runtime.dicom, runtime.parity, runtime.folder, runtime.explain, runtime.model_metadata, runtime.evaluation\n"
        "import runtime.stats, runtime.timing, runtime.fresh_process, runtime.bench\n"
        "x = runtime.images.to_model_pixels(np.zeros((2, 28, 28), np.uint8), 75, None)\n"
        "print(x.shape, runtime.metrics.roc_auc(np.array([0, 1, 1]), np.array([0.1, 0.9, 0.4])), 'pydicom' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "(2, 75, 75, 3) 1.0 False"  # pydicom too is loaded only when a DICOM file is read


def test_stage_packages_import_tensorflow_lazily():
    code = "import sys, train, train.config, train.balance, train.__main__\nprint('tensorflow' in sys.modules, 'keras' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False False"


def test_export_imports_converters_lazily():
    code = ("import sys, export, export.config, export.calibration, export.verify, export.session, export.metadata, "
            "export.publish, export.report, export.sidecar, export.splits, export.int8, export.cli, export.tflite, "
            "export.tflite.__main__, export.onnx, export.onnx.__main__, benchmarks.run, benchmarks.report, "
            "benchmarks.results, benchmarks.checks, benchmarks.reference, benchmarks.demo, benchmarks.__main__, "
            "benchmarks.worker, benchmarks.parity, train.card, train.pipeline\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnx', 'onnxruntime', 'ai_edge_litert') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
