"""Every CLI against bad input, in one table: exit 2, one line on stderr naming the culprit, no traceback, nothing written.

Each row runs the real command in a fresh process, as a user or a script would. The culprit is
a string the one line must contain: the file name, the value or the option the user got wrong.
Nothing may appear in the work directory or the model directory that was not there before.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, make_arrays, write_npz


@dataclass(frozen=True)
class Case:
    name: str
    module: str  # what follows `python -m`
    build: Callable[[Path, Path], list[str]]  # (work dir, model dir) -> arguments; may create files in the work dir
    culprit: str  # the one line must contain this
    details: int = 0  # lines after it, indented: the bad files a data source holds, one per line


def _npz(work: Path, name: str = "data.npz", **arrays) -> str:
    path = work / name
    np.savez(path, **arrays)
    return str(path)


def _good(work: Path) -> str:
    return str(write_npz(work / "good.npz"))


def _split_arrays(x, y) -> dict:
    return {"train_images": x, "train_labels": y, "val_images": x, "val_labels": y, "test_images": x, "test_labels": y}


def _file(work: Path, name: str, data: bytes) -> str:
    path = work / name
    path.write_bytes(data)
    return str(path)


def _truncated_copy(work: Path, model: Path, name: str) -> str:
    """The model file cut in half, with its sidecar: the checksum refuses it before any interpreter runs."""
    data = (model / name).read_bytes()
    shutil.copy(model / (name + ".json"), work / (name + ".json"))
    return _file(work, name, data[: len(data) // 2])


def _flipped_copy(work: Path, model: Path, name: str) -> str:
    data = bytearray((model / name).read_bytes())
    data[len(data) // 3] ^= 0x40
    shutil.copy(model / (name + ".json"), work / (name + ".json"))
    return _file(work, name, bytes(data))


def _flipped_weights(work: Path, model: Path, name: str) -> str:
    """Four bytes inverted in the middle of the file (weights, in both formats), copied without the sidecar: the file's
    own embedded digest must refuse it, as on a device that received the model file alone."""
    data = bytearray((model / name).read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4] = bytes(b ^ 0xFF for b in data[middle:middle + 4])
    return _file(work, name, bytes(data))


def _png(work: Path, name: str = "x.png") -> str:
    from PIL import Image

    Image.fromarray(make_arrays(1)[0][0]).save(work / name)
    return str(work / name)


def _tree(work: Path, name: str = "xrays", classes: tuple[str, ...] = ("NORMAL", "PNEUMONIA"), per_class: int = 4) -> Path:
    """A folder of class folders holding small PNGs named personN_M.png (two images per patient)."""
    from PIL import Image

    images = make_arrays(per_class * len(classes))[0]
    for c, cls in enumerate(classes):
        (work / name / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(images[c * per_class + i]).save(work / name / cls / f"person{c}{i // 2}_{i}.png")
    return work / name


def _bad_files_tree(work: Path) -> str:
    root = _tree(work, "badxrays", ("NORMAL", "PNEUMONIA", "COVID"))
    (root / "NORMAL" / "person99_0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(40)))
    (root / "NORMAL" / "notes.txt").write_text("not an image")
    (root / "PNEUMONIA" / "loop.png").symlink_to(root / "PNEUMONIA" / "loop.png")
    return str(root)


def _manifest(work: Path) -> str:
    root = _tree(work)
    rows = ["path,label"] + [f"{p.relative_to(work)},{p.parent.name}" for p in sorted(root.rglob("*.png"))] + ["xrays/gone.png,NORMAL"]
    (work / "labels.csv").write_text("\n".join(rows) + "\n")
    return str(work / "labels.csv")


def _patient_in_two_splits(work: Path) -> str:
    for split in ("train", "test"):
        _tree(work / "split_xrays", split)
    return str(work / "split_xrays")


def _no_exports(work: Path, model: Path) -> str:
    shutil.copytree(model, work / "bare", ignore=shutil.ignore_patterns("*.tflite*", "*.onnx*", "benchmark"))
    return str(work / "bare")


TRAIN = "train"
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d ")  # progress the CLIs log while they read data (hashing N/M files): not the error
X, Y = make_arrays()
CASES = [
    # train: data
    Case("train missing data", TRAIN, lambda w, m: ["--data", str(w / "nope.npz")], "nope.npz"),
    Case("train empty file", TRAIN, lambda w, m: ["--data", _file(w, "empty.npz", b"")], "empty.npz"),
    Case("train truncated npz", TRAIN, lambda w, m: ["--data", _file(w, "cut.npz", Path(_good(w)).read_bytes()[:300])], "cut.npz"),
    Case("train wrong suffix", TRAIN, lambda w, m: ["--data", _file(w, "data.txt", b"1,2,3\n")], "data.txt"),
    Case("train csv without path column", TRAIN, lambda w, m: ["--data", _file(w, "data.csv", b"1,2,3\n")], "no 'path' column"),
    Case("train images 2-D", TRAIN, lambda w, m: ["--data", _npz(w, **_split_arrays(X.reshape(len(X), -1), Y))], "data.npz"),
    Case("train string images", TRAIN, lambda w, m: ["--data", _npz(w, **_split_arrays(X.astype(str), Y))], "data.npz"),
    Case("train NaN pixels", TRAIN, lambda w, m: ["--data", _npz(w, **_split_arrays(np.where(X > 100, np.nan, X / 255.0), Y)),
                                                  "--pixel-range", "0,1"], "NaN"),
    Case("train three labels", TRAIN, lambda w, m: ["--data", _npz(w, **_split_arrays(X, np.arange(len(Y)) % 3))], "3 values"),
    Case("train one class", TRAIN, lambda w, m: ["--data", _npz(w, **_split_arrays(X, np.zeros_like(Y)))], "one class"),
    Case("train pickled npy", TRAIN, lambda w, m: ["--data", str(_pickled_dir(w))], "Xtrain.npy"),
    Case("train out under a file", TRAIN, lambda w, m: ["--data", _good(w), "--out", _file(w, "afile", b"x") + "/model"], "afile"),
    Case("train conflicting sizes", TRAIN, lambda w, m: ["--data", _good(w), "--no-resize", "--image-size", "80"], "--no-resize"),
    Case("train image size", TRAIN, lambda w, m: ["--data", _good(w), "--image-size", "32"], "--image-size 32"),
    Case("train multiworker without TF_CONFIG", TRAIN, lambda w, m: ["--data", _good(w), "--distribute", "multiworker"],
         "TF_CONFIG environment variable is not set"),
    Case("train keras-fit on a cosine schedule", TRAIN, lambda w, m: ["--data", _good(w), "--engine", "keras-fit",
                                                                      "--fine-tune-schedule", "cosine"], "--engine keras-fit"),
    Case("train bfloat16 with nothing to fine-tune", TRAIN, lambda w, m: ["--data", _good(w), "--precision", "bfloat16",
                                                                          "--fine-tune", "none"],
         "--precision bfloat16 with nothing to fine-tune"),
    # train: image files (a corrupt file, a non-image, a link loop and a third class: one run lists them all)
    Case("train folder of bad files", TRAIN, lambda w, m: ["--data", _bad_files_tree(w), "--positive-class", "PNEUMONIA"],
         "badxrays: 4 bad files or entries", details=4),
    Case("train folder without positive class", TRAIN, lambda w, m: ["--data", str(_tree(w))], "--positive-class"),
    Case("train folder without patients", TRAIN, lambda w, m: ["--data", str(_tree(w)), "--positive-class", "PNEUMONIA"],
         "--patient-pattern"),
    Case("train csv row without its file", TRAIN, lambda w, m: ["--data", _manifest(w), "--positive-class", "PNEUMONIA",
                                                               "--patient-pattern", "(person\\d+)_"], "labels.csv: 1 bad file", details=1),
    Case("train patient in two splits", TRAIN, lambda w, m: ["--data", _patient_in_two_splits(w), "--positive-class", "PNEUMONIA",
                                                            "--patient-pattern", "(person\\d+)_"], "two splits", details=4),
    Case("train positive label for files", TRAIN, lambda w, m: ["--data", str(_tree(w)), "--positive-class", "PNEUMONIA",
                                                               "--patient-pattern", "(person\\d+)_", "--positive-label", "0"],
         "--positive-label 0"),
    # export
    Case("tflite missing model", "export.tflite", lambda w, m: ["--model", str(w / "nope")], "nope"),
    Case("tflite not a model dir", "export.tflite", lambda w, m: ["--model", str(w)], "model_card.json"),
    Case("tflite bad max drift", "export.tflite", lambda w, m: ["--model", str(m), "--out", str(w / "o"), "--max-drift", "auc=big"],
         "--max-drift"),
    Case("tflite mode conflict", "export.tflite", lambda w, m: ["--model", str(m), "--out", str(w / "o"), "--mode", "float16",
                                                                "--input-type", "int8"], "--input-type int8"),
    Case("tflite unwritable out", "export.tflite", lambda w, m: ["--model", str(m), "--out", _file(w, "afile", b"x") + "/sub"],
         "afile"),
    Case("onnx calibration too big", "export.onnx", lambda w, m: ["--model", str(m), "--out", str(w / "o"), "--calibration-size",
                                                                   "99999"], "--calibration-size 99999"),
    Case("onnx calibration not images", "export.onnx", lambda w, m: ["--model", str(m), "--out", str(w / "o"),
                                                                      "--calibration-data", _file(w, "cal.txt", b"x")], "cal.txt"),
    Case("onnx unknown calibration method", "export.onnx", lambda w, m: ["--model", str(m), "--calibration-method", "mse"],
         "'mse'"),
    Case("tflite fallback without limits", "export.tflite", lambda w, m: ["--model", str(m), "--out", str(w / "o"), "--fallback",
                                                                          "auto", "--max-drift", "none"], "--max-drift none"),
    Case("onnx fallback no steps", "export.onnx", lambda w, m: ["--model", str(m), "--out", str(w / "o"), "--fallback", "auto",
                                                                "--fallback-max-layers", "0"], "--fallback-max-layers 0"),
    Case("tflite prevalence out of range", "export.tflite", lambda w, m: ["--model", str(m), "--out", str(w / "o"),
                                                                          "--prevalence", "1.5"], "--prevalence 1.5"),
    Case("onnx unknown gate", "export.onnx", lambda w, m: ["--model", str(m), "--gate", "loose"], "'loose'"),
    Case("onnx old opset", "export.onnx", lambda w, m: ["--model", str(m), "--out", str(w / "o"), "--opset", "11"], "--opset 11"),
    # runtime
    Case("predict missing model", "runtime", lambda w, m: ["predict", str(w / "nope.tflite"), _png(w)], "nope.tflite"),
    Case("predict zero-byte model", "runtime", lambda w, m: ["predict", _file(w, "zero.tflite", b""), _png(w)], "zero.tflite"),
    Case("predict truncated model", "runtime", lambda w, m: ["predict", _truncated_copy(w, m, "model_int8.tflite"), _png(w)],
         "model_int8.tflite"),
    Case("predict bit-flipped model", "runtime", lambda w, m: ["predict", _flipped_copy(w, m, "model_int8.onnx"), _png(w)],
         "model_int8.onnx"),
    Case("predict flipped tflite weights, no sidecar", "runtime",
         lambda w, m: ["predict", _flipped_weights(w, m, "model_int8.tflite"), _png(w)], "model_int8.tflite: content sha256"),
    Case("predict flipped onnx weights, no sidecar", "runtime",
         lambda w, m: ["predict", _flipped_weights(w, m, "model_int8.onnx"), _png(w)], "model_int8.onnx: content sha256"),
    Case("predict wrong suffix", "runtime", lambda w, m: ["predict", _file(w, "model.onnx", (m / "model_int8.tflite").read_bytes()),
                                                          _png(w)], "model.onnx"),
    Case("predict unknown suffix", "runtime", lambda w, m: ["predict", _file(w, "model.pb", b"x"), _png(w)], "model.pb"),
    Case("predict unknown out suffix", "runtime", lambda w, m: ["predict", str(m / "model_int8.tflite"), _png(w), "--out",
                                                                str(w / "rows.xlsx")], "rows.xlsx"),
    Case("predict unknown dicom window", "runtime", lambda w, m: ["predict", str(m / "model_int8.tflite"), _png(w),
                                                                  "--dicom-window", "auto"], "--dicom-window 'auto'"),
    Case("explain patch too large", "runtime", lambda w, m: ["explain", str(m / "model_int8.tflite"), _png(w), "--out",
                                                             str(w / "map.png"), "--patch", "0.9"], "--patch 0.9"),
    Case("explain out not png", "runtime", lambda w, m: ["explain", str(m / "model_int8.tflite"), _png(w), "--out",
                                                         str(w / "map.jpg")], "map.jpg"),
    Case("explain missing image", "runtime", lambda w, m: ["explain", str(m / "model_int8.tflite"), str(w / "gone.dcm"), "--out",
                                                           str(w / "map.png")], "gone.dcm"),
    Case("predict missing image", "runtime", lambda w, m: ["predict", str(m / "model_int8.tflite"), str(w / "gone.png")], "gone.png"),
    Case("predict wrong backend", "runtime", lambda w, m: ["predict", str(m / "model_int8.tflite"), _png(w), "--backend",
                                                           "onnxruntime"], "onnxruntime"),
    Case("predict interpreters on onnx", "runtime", lambda w, m: ["predict", str(m / "model_int8.onnx"), _png(w),
                                                                  "--interpreters", "2"], "interpreters"),
    Case("predict unknown operating point", "runtime", lambda w, m: ["predict", str(m / "model_int8.tflite"), _png(w),
                                                                     "--operating-point", "best"], "best"),
    Case("eval foreign labels", "runtime", lambda w, m: ["eval", str(m / "model_int8.tflite"), "--data",
                                                         str(write_npz(w / "odd.npz", labels=(0, 2)))], "odd.npz"),
    Case("eval unknown bundled name", "runtime", lambda w, m: ["eval", str(m / "model_int8.tflite"), "--data", "pneumonia"],
         "pneumonia: no such file or directory"),
    Case("eval missing split", "runtime", lambda w, m: ["eval", str(m / "model_int8.tflite"), "--data", _good(w), "--split", "holdout"],
         "holdout"),
    Case("eval prevalence out of range", "runtime", lambda w, m: ["eval", str(m / "model_int8.tflite"), "--data", _good(w),
                                                                  "--prevalence", "0"], "--prevalence 0.0"),
    Case("bench zero runs", "runtime", lambda w, m: ["bench", str(m / "model_int8.tflite"), "--runs", "0"], "--runs 0"),
    Case("bench image not an image", "runtime", lambda w, m: ["bench", str(m / "model_int8.tflite"), "--runs", "1", "--image",
                                                              _file(w, "bad.jpg", b"jpeg?")], "bad.jpg"),
    # benchmarks
    Case("benchmarks no exports", "benchmarks", lambda w, m: ["--model", _no_exports(w, m)], "no exported"),
    Case("benchmarks unknown format", "benchmarks", lambda w, m: ["--model", str(m), "--formats", "model_int4.onnx",
                                                                  "--out", str(w / "o")], "model_int4.onnx"),
    Case("benchmarks wrong image size", "benchmarks", lambda w, m: ["--model", str(m), "--data", str(write_npz(w / "big.npz", size=32)),
                                                                    "--out", str(w / "o")], "32x32"),
    Case("benchmarks bad threads", "benchmarks", lambda w, m: ["--model", str(m), "--threads", "0", "--out", str(w / "o")],
         "--threads 0"),
]


def _pickled_dir(work: Path) -> Path:
    d = work / "pickled"
    d.mkdir()
    np.save(d / "Xtrain.npy", np.array([object()] * 24, dtype=object), allow_pickle=True)
    np.save(d / "Ytrain.npy", Y)
    return d


def _listing(*roots: Path) -> set[str]:
    return {str(p) for root in roots for p in root.rglob("*")}


@pytest.fixture(scope="module")
def model(model_dir, tmp_path_factory) -> Path:
    """A private copy of the exported reference model: the rows must not write into it, and this proves they do not."""
    target = tmp_path_factory.mktemp("matrix") / "model"
    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns("benchmark"))
    return target


def test_the_matrix_covers_every_cli_and_30_inputs():
    assert len({c.name for c in CASES}) == len(CASES) >= 30
    commands = {c.module if c.module != "runtime" else f"runtime {c.name.split()[0]}" for c in CASES}
    assert commands == {"train", "export.tflite", "export.onnx", "runtime predict", "runtime explain", "runtime eval",
                        "runtime bench", "benchmarks"}


@dataclass(frozen=True)
class Outcome:
    args: list[str]
    proc: subprocess.CompletedProcess
    wrote: list[str]  # files that appeared in the row's work directory


def _run(case: Case, work: Path, model: Path) -> Outcome:
    work.mkdir()
    args = case.build(work, model)
    if case.module == TRAIN and "--out" not in args:
        args += ["--out", str(work / "out")]
    before = _listing(work)
    proc = subprocess.run([sys.executable, "-m", case.module, *args], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          check=False, env={**{k: v for k, v in os.environ.items() if k != "TF_CONFIG"}, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return Outcome(args, proc, sorted(_listing(work) - before))


@pytest.fixture(scope="module")
def outcomes(model, tmp_path_factory) -> tuple[dict[str, Outcome], list[str]]:
    """Every row's run, three processes at a time (each is mostly interpreter start-up), and what the model directory
    gained meanwhile; the rows write nothing, so running them side by side changes no outcome."""
    root = tmp_path_factory.mktemp("rows")
    before = _listing(model)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {c.name: pool.submit(_run, c, root / f"row{i}", model) for i, c in enumerate(CASES)}
        results = {name: f.result() for name, f in futures.items()}
    return results, sorted(_listing(model) - before)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, outcomes):
    results, model_gained = outcomes
    outcome = results[case.name]
    proc = outcome.proc
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not LOG_LINE.match(line)]
    assert proc.returncode == 2, (outcome.args, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 + case.details and lines[0].startswith("error: "), lines
    assert all(line.startswith("  ") for line in lines[1:]), lines
    assert case.culprit in lines[0], (case.culprit, lines[0])
    assert outcome.wrote == [], "wrote " + json.dumps(outcome.wrote)
    assert model_gained == [], "the model directory gained " + json.dumps(model_gained)
