"""Clinic inputs on the device: train/serve parity, folders of files, occlusion maps.

The pure parts (resampling, walking, rows, the map's arithmetic) run on stand-ins; the exported
reference model proves the whole path: a 1,000-image folder with a bad file, and an int8 map
drawn with TensorFlow blocked.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import re
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.classifier import Classifier, Prediction
from runtime.errors import ConfigError, DataError, OutputError
from runtime.explain import OcclusionConfig, evaluations_for, occlusion_map
from runtime.folder import ROW_FIELDS, SOME_FAILED_EXIT, iter_entries, predict_files
from runtime.parity import area_resize, centre_crop, check_parity, to_training_size

ROOT = Path(__file__).resolve().parents[1]
_NO_TENSORFLOW = "import sys; sys.modules['tensorflow'] = None  # any import of TensorFlow now fails\n"


@pytest.fixture(scope="module")
def test_images(xray_data):
    from runtime.datasets import binary_labels, load_dataset

    test = load_dataset(xray_data).splits["test"]
    return np.asarray(test.images), binary_labels(test, 1)


# ---- parity ------------------------------------------------------------------------------------

def test_area_downsampling_undoes_a_sharp_enlargement_exactly():
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    big = np.kron(original, np.ones((8, 8), dtype=np.uint8))  # 224 px, nearest neighbour
    assert np.array_equal(to_training_size(big, (28, 28), "crop"), original)
    # a 2x2 block of 10, 20, 30, 41 averages to 25.25 and rounds to 25, as the dataset's uint8 files did
    assert area_resize(np.array([[10, 20], [30, 41]], dtype=np.uint8), 1, 1).tolist() == [[25]]
    assert area_resize(np.array([[10, 20], [30, 41]], dtype=np.float32), 1, 1).tolist() == [[25.25]]


def test_crop_keeps_the_centre_at_the_training_aspect_and_stretch_does_not():
    original = np.arange(28 * 28, dtype=np.float32).reshape(28, 28)
    big = np.kron(original, np.ones((4, 4), dtype=np.float32))  # 112 x 112
    wide = np.pad(big, ((0, 0), (40, 40)), constant_values=0)  # 112 x 192: dark bands left and right
    assert centre_crop(wide, 1.0).shape == (112, 112)
    assert np.array_equal(to_training_size(wide, (28, 28), "crop"), original)
    stretched = to_training_size(wide, (28, 28), "stretch")
    assert stretched.shape == (28, 28) and not np.allclose(stretched, original)
    small = np.ones((20, 30), dtype=np.uint8)  # smaller than the training size: nothing to remove, left alone
    assert to_training_size(small, (28, 28), "stretch") is small
    assert to_training_size(big, (28, 28), "off") is big
    with pytest.raises(ConfigError, match="--parity 'on'"):
        check_parity("on")


def test_images_smaller_than_the_training_size_in_either_direction_are_left_alone_in_every_mode():
    for shape in ((20, 40), (40, 20)):  # 20x40 used to be cropped to 20x20 in crop mode
        small = np.arange(shape[0] * shape[1], dtype=np.uint8).reshape(shape)
        for parity in ("crop", "stretch"):
            assert to_training_size(small, (28, 28), parity) is small, (shape, parity)
    # at least the training size both ways: crop still takes the centre 56x56 of 56x84, then 2x2 means
    original = np.arange(28 * 28, dtype=np.float32).reshape(28, 28)
    wide = np.pad(np.kron(original, np.ones((2, 2), dtype=np.float32)), ((0, 0), (14, 14)), constant_values=-1)
    assert wide.shape == (56, 84)
    cropped = to_training_size(wide, (28, 28), "crop")
    assert cropped.shape == (28, 28) and np.array_equal(cropped, original)
    # stretch area-averages all 84 columns: 3 input columns per output column, the bands included
    stretched = to_training_size(wide, (28, 28), "stretch")
    assert stretched.shape == (28, 28) and stretched[0, 0] == pytest.approx(-1.0)  # columns 0-2: all band
    assert stretched[0, 5] == pytest.approx((original[0, 0] * 1 + original[0, 1] * 2) / 3)  # columns 15-17
    # 28 rows by 30 columns, one row too few to average: crop trims it to 28x28, the centre columns 1-28
    narrow = np.arange(28 * 30, dtype=np.uint8).reshape(28, 30)
    assert np.array_equal(to_training_size(narrow, (28, 28), "crop"), narrow[:, 1:29])


def test_the_classifier_applies_parity_by_default(model_dir, test_images):
    images, _ = test_images
    original = images[3]
    big = np.kron(original, np.ones((8, 8), dtype=np.uint8))
    on = Classifier(model_dir / "model_int8.tflite")
    off = Classifier(model_dir / "model_int8.tflite", parity="off")
    assert on.parity == "crop" and on.training_shape == (28, 28)
    # parity: a 224 px copy is the 28 px original to the model; without it, the model sees other pixels
    assert on.predict(big)[0].logit == on.predict(original)[0].logit
    assert np.array_equal(on.pixels(big), on.pixels(original))
    assert not np.array_equal(off.pixels(big), off.pixels(original))


# ---- folders -----------------------------------------------------------------------------------

@dataclass
class _Stub:
    """The part of Classifier that predict_files uses; its answer depends on the file name."""

    operating_point: str = "youden"
    threshold: float = 0.5
    class_names: tuple[str, str] = ("normal", "pneumonia")

    def predict(self, path: str) -> list[Prediction]:
        if "bad" in path:
            raise DataError(f"{path}: not a readable image")
        p = 0.9 if int(path.rsplit(".", 1)[0][-1]) % 2 else 0.1
        return [Prediction(p, 0.0, p >= 0.5, self.class_names[p >= 0.5], "youden", 0.5, str(path))]


def test_a_folder_gives_one_row_per_file_and_skips_nothing_silently(tmp_path):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    for name in ("a1.png", "a2.PNG", "bad3.png", "notes.txt", "scan0", "sub/b5.jpg"):
        (root / name).write_bytes(b"")
    (root / "link").symlink_to(root / "sub")
    flat = [(Path(e.path).name, e.skip is not None) for e in iter_entries([root])]
    assert flat == [("a1.png", False), ("a2.PNG", False), ("bad3.png", False), ("link", True), ("notes.txt", True),
                    ("scan0", True), ("sub", True)]
    assert [Path(e.path).name for e in iter_entries([root], recursive=True) if e.skip is None] == ["a1.png", "a2.PNG", "bad3.png", "b5.jpg"]
    out = tmp_path / "rows.csv"
    summary = predict_files(_Stub(), [str(root)], recursive=True, out=out, kind="csv", progress=None)  # type: ignore[arg-type]
    rows = list(csv.DictReader(out.open()))
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "skipped", "skipped", "skipped", "ok"]
    assert tuple(rows[0]) == ROW_FIELDS and rows[2]["error"].endswith("bad3.png: not a readable image")
    assert (summary.positive, summary.negative, summary.failed, summary.skipped) == (2, 1, 1, 3)
    assert summary.exit_code == SOME_FAILED_EXIT and "1 failed" in summary.line()


def test_output_is_atomic_and_missing_inputs_are_usage_errors(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x1.png").write_bytes(b"")
    out = tmp_path / "rows.jsonl"
    out.write_text("previous\n")

    class Boom(_Stub):
        def predict(self, path):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_files(Boom(), [str(tmp_path / "in")], out=out, kind="jsonl", progress=None)  # type: ignore[arg-type]
    assert out.read_text() == "previous\n" and not list(tmp_path.glob(".rows.jsonl.*"))
    with pytest.raises(DataError, match="gone.png: no such image file or folder"):
        predict_files(_Stub(), [str(tmp_path / "gone.png")], progress=None)  # type: ignore[arg-type]


def test_an_out_file_inside_the_folder_is_not_a_row_and_progress_stops_at_its_total(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a1.png", "a2.png"):
        (folder / name).write_bytes(b"")
    out = folder / "rows.csv"
    out.write_text("a previous run's rows\n")
    (folder / ".rows.csv.k1ll3d.tmp").write_text("left by a killed run")
    progress = io.StringIO()
    summary = predict_files(_Stub(), [str(folder)], out=out, kind="csv", progress=0.0, stderr=progress)  # type: ignore[arg-type]
    assert [Path(r["path"]).name for r in csv.DictReader(out.open())] == ["a1.png", "a2.png"]
    assert (summary.files, summary.positive, summary.negative, summary.skipped) == (2, 1, 1, 0)
    assert progress.getvalue().splitlines()[-1].startswith("2/2 files (100%)"), progress.getvalue()
    assert sorted(p.name for p in folder.iterdir()) == [".rows.csv.k1ll3d.tmp", "a1.png", "a2.png", "rows.csv"]


def _predict_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m runtime predict`` with a model that does not exist: a mistake reported before the model loads
    names its culprit, not the model."""
    return subprocess.run([sys.executable, "-m", "runtime", "predict", "gone.tflite", *args], check=False,
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_a_folder_without_an_image_is_a_usage_error_before_the_model_loads(tmp_path):
    empty, notes = tmp_path / "empty", tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    empty.mkdir()
    (notes / "readme.txt").write_text("no images here")
    (notes / "sub" / "x1.png").write_bytes(b"")
    in_subfolder = "2 files found, 2 skipped; subfolders are entered only with --recursive"
    with pytest.raises(DataError, match=re.escape(f"notes: no image or DICOM file to classify ({in_subfolder})")):
        predict_files(_Stub(), [str(notes)], progress=None)  # type: ignore[arg-type]
    assert predict_files(_Stub(), [str(notes)], recursive=True, progress=None).files == 2  # type: ignore[arg-type]
    for folder, found in ((empty, "0 files found, 0 skipped"), (notes, in_subfolder)):
        proc = _predict_cli(str(folder), "--out", str(tmp_path / "rows.csv"))
        assert proc.returncode == 2 and not proc.stdout, proc.stderr
        (line,) = proc.stderr.splitlines()
        assert line == (f"error: {folder}: no image or DICOM file to classify ({found}); expected image files "
                        "(PNG, JPEG, ...) or DICOM files"), line
    assert not (tmp_path / "rows.csv").exists()


def test_an_out_that_cannot_be_written_is_a_usage_error_before_the_model_loads(tmp_path, monkeypatch):
    (tmp_path / "x1.png").write_bytes(b"")
    (tmp_path / "rows.csv").mkdir()
    for out, said in ((tmp_path / "rows.csv", f"--out {tmp_path / 'rows.csv'}: is a folder; expected a file name"),
                      (tmp_path / "missing" / "rows.csv", (f"--out {tmp_path / 'missing' / 'rows.csv'}: "
                       f"{tmp_path / 'missing'} does not exist; expected a file in an existing folder"))):
        proc = _predict_cli(str(tmp_path / "x1.png"), "--out", str(out))
        assert proc.returncode == 2 and not proc.stdout, proc.stderr
        (line,) = proc.stderr.splitlines()
        assert line.startswith(f"error: {said}"), line
        with pytest.raises(OutputError, match=re.escape(said)):
            predict_files(_Stub(), [str(tmp_path / "x1.png")], out=out, kind="csv", progress=None)  # type: ignore[arg-type]
    # a folder this user cannot write to (tests may run as root, whom permissions never stop: ask os.access)
    monkeypatch.setattr("os.access", lambda path, mode: False)
    with pytest.raises(OutputError, match=re.escape(f"--out {tmp_path / 'ok.csv'}: folder {tmp_path} is not writable")):
        predict_files(_Stub(), [str(tmp_path / "x1.png")], out=tmp_path / "ok.csv", kind="csv", progress=None)  # type: ignore[arg-type]


def test_memory_per_file_is_flat_over_10000_files(tmp_path):
    """Rows are written as they come; what grows is one folder's sorted names (about 70 bytes per file)."""
    peaks, kept = {}, {}
    for n in (10_000, 30_000):
        folder = tmp_path / f"n{n}"
        folder.mkdir()
        for i in range(n):
            (folder / f"image_{i:05d}.png").touch()
        gc.collect()
        tracemalloc.start()
        summary = predict_files(_Stub(), [str(folder)], out=tmp_path / f"n{n}.jsonl", kind="jsonl", progress=None)  # type: ignore[arg-type]
        gc.collect()
        kept[n], peaks[n] = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert summary.files == n and len((tmp_path / f"n{n}.jsonl").read_text().splitlines()) == n
    per_file = (peaks[30_000] - peaks[10_000]) / 20_000
    assert per_file < 120, f"{per_file:.0f} bytes per extra file (peaks {peaks})"
    assert kept[30_000] - kept[10_000] < 100_000, kept  # nothing per file is left behind after a run


def test_a_1000_image_folder_with_a_bad_file_runs_to_a_summary(model_dir, test_images, tmp_path):
    images, _ = test_images
    folder = tmp_path / "clinic"
    folder.mkdir()
    for i in range(1000):
        Image.fromarray(images[i % len(images)]).save(folder / f"xray_{i:04d}.png")
    (folder / "xray_0500_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "rows.jsonl"
    proc = subprocess.run([sys.executable, "-m", "runtime", "predict", str(model_dir / "model_int8.tflite"), str(folder),
                           "--out", str(out), "--progress-every", "0.5"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == SOME_FAILED_EXIT, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1001 and sum(r["status"] == "ok" for r in rows) == 1000
    (bad,) = [r for r in rows if r["status"] == "error"]
    assert bad["path"].endswith("xray_0500_corrupt.png") and "not a readable image" in bad["error"]
    positives = sum(r["positive"] for r in rows if r["status"] == "ok")
    assert f"1001 files: {positives} pneumonia (positive), {1000 - positives} normal (negative)" in proc.stdout
    assert "1 failed, 0 skipped" in proc.stdout
    progress = [line for line in proc.stderr.splitlines() if " files (" in line]
    assert progress and progress[-1].startswith("1001/1001 files (100%)")
    # the same images one by one through the library give the same rows
    clf = Classifier(model_dir / "model_int8.tflite")
    for r in rows[:5]:
        assert clf.predict(r["path"])[0].probability == r["probability"]


# ---- occlusion ---------------------------------------------------------------------------------

@dataclass
class _RegionModel:
    """A stand-in model whose logit is the mean of the top-left 7x7 pixels: only that region matters."""

    image_size: int = 28
    threshold: float = 0.5
    operating_point: str = "youden"
    class_names: tuple[str, str] = ("normal", "pneumonia")

    def pixels(self, image):
        return np.asarray(image, dtype=np.float32)[None, :, :, None].repeat(3, axis=-1)

    def logits(self, batch):
        return (batch[:, :7, :7, 0].mean(axis=(1, 2)) - 100.0) / 20.0


def test_the_map_marks_the_region_the_model_reads_and_nothing_else():
    image = np.full((28, 28), 200.0)
    result = occlusion_map(_RegionModel(), image, OcclusionConfig(patch=4 / 28, stride=0.5, fill="0"))  # type: ignore[arg-type]
    assert result.patch_px == 4 and result.stride_px == 2 and result.evaluations == 13 * 13 + 1 == evaluations_for(28, OcclusionConfig(4 / 28))
    assert result.delta[:7, :7].min() > 0.01 and np.all(result.delta[12:, :] == 0) and np.all(result.delta[:, 12:] == 0)
    # by hand: hiding the 4x4 patch at (0, 0) sets 16 of the 49 pixels to 0, so the logit falls by 200*16/49/20
    p0 = 1 / (1 + np.exp(-5.0))
    p_hidden = 1 / (1 + np.exp(-(5.0 - 200 * 16 / 49 / 20)))
    assert result.delta[0, 0] == pytest.approx(p0 - p_hidden, rel=1e-6)  # pixel (0, 0) lies under that patch only
    with pytest.raises(ConfigError, match="--patch 0.9"):
        occlusion_map(_RegionModel(), image, OcclusionConfig(patch=0.9))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["model_int8.tflite", "model_int8.onnx"])
def test_explain_writes_an_overlay_from_an_int8_model_without_tensorflow(model_dir, test_images, tmp_path, name):
    images, _ = test_images
    Image.fromarray(np.kron(images[3], np.ones((4, 4), dtype=np.uint8))).save(tmp_path / "xray.png")
    code = _NO_TENSORFLOW + ("from runtime.__main__ import main\n"
                             f"sys.exit(main(['explain', {str(model_dir / name)!r}, {str(tmp_path / 'xray.png')!r}, "
                             f"'--out', {str(tmp_path / 'map.png')!r}, '--json']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    clf = Classifier(model_dir / name)
    assert figures["probability"] == pytest.approx(clf.predict(tmp_path / "xray.png")[0].probability, abs=1e-9)
    assert figures["evaluations"] == evaluations_for(75) and figures["patch_px"] == 11
    with Image.open(tmp_path / "map.png") as png:
        assert png.mode == "RGB" and png.size[0] == 512 and png.size[1] > 512
        overlay = np.asarray(png)[-512:].astype(int)
    assert (np.abs(overlay[..., 0] - overlay[..., 2]) > 20).any()  # coloured where the map is strong, not plain grey
