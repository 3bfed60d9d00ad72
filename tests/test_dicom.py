"""DICOM input: every pixel transform against a hand computation, refusals in one line, no patient data out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.dicom import Window, is_dicom, read_dicom, window_linear
from runtime.errors import BackendError, ConfigError, DataError

from dicom_files import SECRETS, Case, cases, write, write_case

pytest.importorskip("pydicom")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def xray() -> np.ndarray:
    """A real test radiograph, enlarged 4x (nearest) to 112x112: larger than the training images, as clinic files are."""
    from runtime.datasets import load_dataset

    image = load_dataset("pneumoniamnist").split("test").images[7]
    return np.kron(image, np.ones((4, 4), dtype=np.uint8))


@pytest.fixture(scope="module")
def written(xray, tmp_path_factory) -> dict[str, tuple[Case, Path]]:
    folder = tmp_path_factory.mktemp("dicom")
    return {c.name: (c, write_case(folder, c)) for c in cases(xray)}


_NAMES = cases(np.arange(16, dtype=np.uint8).reshape(4, 4))
ACCEPTED = [c.name for c in _NAMES if c.expected is not None]
REFUSED = [c.name for c in _NAMES if c.expected is None]


@pytest.mark.parametrize("name", ACCEPTED)
def test_pixels_equal_the_hand_computation(written, name):
    case, path = written[name]
    pixels = read_dicom(path, case.window)
    assert pixels.dtype == np.uint8 and pixels.shape == case.expected.shape
    assert np.array_equal(pixels, case.expected), f"{name}: {np.abs(pixels.astype(int) - case.expected).max()} levels apart"
    assert np.unique(pixels).size > 40  # a real radiograph came through, not a flat or clipped field


def test_a_16bit_monochrome1_file_with_rescale_and_window_by_hand(tmp_path):
    # slope 2, intercept -1024: stored 0, 512, 762, 1012, 637, 65535 -> -1024, 0, 500, 1000, 250, 130046.
    # window 500 / 1001 (LINEAR): y = clip((v - 499.5) / 1000 + 0.5, 0, 1) * 255 -> 0, 0.1275, 127.6275, 255,
    # 63.8775, 255; MONOCHROME1 inverts: 255, 254.87, 127.37, 0, 191.12, 0 -> rounded below.
    stored = np.array([[0, 512, 762], [1012, 637, 65535]], dtype=np.uint16)
    path = write(tmp_path / "m1.dcm", Case("m1", stored, {"PhotometricInterpretation": "MONOCHROME1", "RescaleSlope": 2,
                                                           "RescaleIntercept": -1024, "WindowCenter": 500, "WindowWidth": 1001}))
    assert read_dicom(path).tolist() == [[255, 255, 127], [0, 191, 0]]


def test_window_formulas_at_their_edges():
    v = np.array([-0.5, 0.0, 499.5, 999.0, 999.5])
    assert window_linear(v, 500, 1001).tolist() == pytest.approx([0.0, 0.1275, 127.5, 254.8725, 255.0])
    assert window_linear(v, 500, 1000, "LINEAR_EXACT").tolist() == pytest.approx([0.0, 0.0, 127.3725, 254.745, 254.8725])
    assert window_linear(np.array([10.0, 10.6]), 11, 1).tolist() == [0.0, 255.0]  # width 1: a threshold at c - 0.5


@pytest.mark.parametrize("name", REFUSED)
def test_refusals_are_one_clear_line(written, name):
    case, path = written[name]
    with pytest.raises((DataError, BackendError)) as info:
        read_dicom(path)
    message = str(info.value)
    assert message.startswith(str(path)) and case.refused in message and "\n" not in message


def test_not_dicom_and_no_pixels(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset

    fake = tmp_path / "notes.dcm"
    fake.write_text("not a DICOM file")
    with pytest.raises(DataError, match="notes.dcm: not a DICOM file"):
        read_dicom(fake)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    ds.PatientName = "Secretname^Jane"
    ds.save_as(tmp_path / "DICOMDIR", enforce_file_format=True)
    assert is_dicom(tmp_path / "DICOMDIR") and not is_dicom(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="without pixel data") as info:
        read_dicom(tmp_path / "DICOMDIR")
    assert "Secretname" not in str(info.value)


def test_window_option_parsing():
    assert Window.parse("file").mode == "file" and str(Window.parse("40,400")) == "40,400"
    for bad in ("auto", "40", "40,0", "nan,5"):
        with pytest.raises(ConfigError, match="--dicom-window"):
            Window.parse(bad)


def test_missing_pydicom_names_the_extra(tmp_path, written):
    _, path = written["mono2_8bit"]
    code = (f"import sys; sys.modules['pydicom'] = None\nfrom runtime.dicom import read_dicom\n"
            f"read_dicom({str(path)!r})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "BackendError" in proc.stderr and "pip install 'inception-edge[dicom]'" in proc.stderr


def test_predict_gives_the_pngs_decision_and_never_prints_patient_data(written, model_dir, tmp_path):
    """Every accepted case through the CLI, DICOM and PNG of the same pixels side by side; refusals as rows."""
    model = model_dir / "model_int8.tflite"
    folder = tmp_path / "in"
    folder.mkdir()
    for name, (case, path) in written.items():
        (folder / path.name).write_bytes(path.read_bytes())
        if case.expected is not None:
            Image.fromarray(case.expected).save(folder / f"{name}.png")
    rows = {}
    for window in {c.window for c, _ in written.values()}:
        out = tmp_path / f"rows_{window.replace(',', '_')}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "runtime", "predict", str(model), str(folder), "--out", str(out),
                               "--dicom-window", window], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert proc.returncode == 4, proc.stderr  # the refused files failed, the rest were classified
        text = out.read_text() + proc.stdout + proc.stderr
        assert not [s for s in SECRETS if s in text]
        rows[window] = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    for name, (case, path) in written.items():
        got = rows[case.window][path.name]
        if case.expected is None:
            assert got["status"] == "error" and case.refused in got["error"]
            continue
        png = rows[case.window][f"{name}.png"]
        assert got["status"] == png["status"] == "ok"
        assert (got["probability"], got["label"]) == (png["probability"], png["label"]), name
