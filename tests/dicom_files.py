"""DICOM files written by the tests themselves (pydicom), each with the pixels it must decode to.

Every case carries patient data (name, ID, birth date) that must never reach an output, and an
``expected`` array computed here by hand from the standard's formulas, independently of
``runtime.dicom``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PATIENT = {"PatientName": "Secretname^Jane", "PatientID": "PID-7741-SECRET", "PatientBirthDate": "19470312"}
SECRETS = ("Secretname", "PID-7741-SECRET", "19470312")
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


@dataclass(frozen=True)
class Case:
    name: str
    stored: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
    expected: np.ndarray | None = None  # the uint8 pixels, by hand; None: the file must be refused
    refused: str = ""  # a fragment of the refusal's message
    syntax: str = "1.2.840.10008.1.2.1"  # Explicit VR Little Endian
    window: str = "file"


def write(path: Path, case: Case) -> Path:
    """Write ``case`` as a DICOM Part 10 file at ``path``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless, generate_uid

    stored = case.stored
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"  # compressed below where the case asks
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = DX_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    for key, value in PATIENT.items():
        setattr(ds, key, value)
    frames = stored.shape[0] if stored.ndim == 3 and case.attrs.get("SamplesPerPixel", 1) == 1 else 1
    ds.Rows, ds.Columns = stored.shape[-2:] if frames > 1 else stored.shape[:2]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    bits = 8 if stored.dtype in (np.uint8, np.int8) else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 1 if np.issubdtype(stored.dtype, np.signedinteger) else 0
    for key, value in case.attrs.items():
        setattr(ds, key, value)
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = stored.tobytes()
    if case.syntax == RLELossless:
        ds.compress(RLELossless, encoding_plugin="pydicom")
    elif case.syntax != "1.2.840.10008.1.2.1":  # a compressed syntax with a fragment no decoder here can read
        ds.file_meta.TransferSyntaxUID = case.syntax
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3" + b"\x00" * 64])
    ds.save_as(path, enforce_file_format=True)
    return path


def _linear(v: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, to 0-255."""
    return np.clip((v - (c - 0.5)) / (w - 1) + 0.5, 0, 1) * 255


def cases(xray: np.ndarray) -> list[Case]:
    """``xray``: a real 8-bit radiograph (H, W); stored values are built from it so the model sees a chest."""
    x = xray.astype(np.int64)
    # 1. 8-bit MONOCHROME2, nothing else: the pixels themselves.
    c1 = Case("mono2_8bit", xray.copy(), expected=xray.copy())
    # 2. 12 bits in 16, no window: the stored range 0..4095 -> 0..255.
    s2 = (x * 16 + 7).astype(np.uint16)
    c2 = Case("mono2_12bit_stored_range", s2, {"BitsStored": 12, "HighBit": 11},
              expected=np.rint(s2 / 4095 * 255).astype(np.uint8))
    # 3. 16-bit MONOCHROME1 with a rescale and a window: bright is stored low, so stored = 65535 - ...
    s3 = (np.uint16(40000) - x * 4).astype(np.uint16)
    v3 = 2.0 * s3 - 1024.0  # RescaleSlope 2, RescaleIntercept -1024
    c3 = Case("mono1_16bit_rescale_window", s3, {"PhotometricInterpretation": "MONOCHROME1", "RescaleSlope": 2,
                                                  "RescaleIntercept": -1024, "WindowCenter": 78000, "WindowWidth": 4097},
              expected=np.rint(255 - _linear(v3, 78000, 4097)).astype(np.uint8))
    # 4. signed, LINEAR_EXACT window (CT-like values).
    s4 = (x * 3 - 400).astype(np.int16)
    c4 = Case("signed_linear_exact", s4, {"WindowCenter": 0, "WindowWidth": 800, "VOILUTFunction": "LINEAR_EXACT"},
              expected=np.rint(np.clip((s4 - 0.0) / 800 + 0.5, 0, 1) * 255).astype(np.uint8))
    # 5. SIGMOID window.
    s5 = (x * 8).astype(np.uint16)
    c5 = Case("sigmoid_window", s5, {"BitsStored": 12, "HighBit": 11, "WindowCenter": 1000, "WindowWidth": 2000,
                                     "VOILUTFunction": "SIGMOID"},
              expected=np.rint(255 / (1 + np.exp(-4 * (s5 - 1000.0) / 2000))).astype(np.uint8))
    # 6. the file's window, ignored on request: --dicom-window stored / minmax / CENTER,WIDTH.
    c6 = Case("window_stored_on_request", s2, {"BitsStored": 12, "HighBit": 11, "WindowCenter": 100, "WindowWidth": 50},
              window="stored", expected=c2.expected)
    lo, hi = float(s2.min()), float(s2.max())
    c7 = Case("window_minmax", s2, {"BitsStored": 12, "HighBit": 11}, window="minmax",
              expected=np.rint((s2 - lo) / (hi - lo) * 255).astype(np.uint8))
    c8 = Case("window_manual", s2, {"BitsStored": 12, "HighBit": 11}, window="2000,3001",
              expected=np.rint(_linear(s2.astype(np.float64), 2000, 3001)).astype(np.uint8))
    # 9. a VOI LUT Sequence (no window): 4096 entries of 12 bits, a square-root curve.
    table = np.rint(np.sqrt(np.arange(4096) / 4095) * 4095).astype(np.uint16)
    c9 = Case("voi_lut_sequence", s2, {"BitsStored": 12, "HighBit": 11, "_voi_lut": table},
              expected=np.rint(table[s2] / 4095 * 255).astype(np.uint8))
    # 10. RLE Lossless: compressed, decoded by pydicom itself.
    c10 = Case("rle_lossless", s2, {"BitsStored": 12, "HighBit": 11}, syntax="1.2.840.10008.1.2.5", expected=c2.expected)
    refused = [
        Case("rgb", np.repeat(xray[..., None], 3, axis=-1), {"SamplesPerPixel": 3, "PhotometricInterpretation": "RGB"},
             refused="photometric interpretation RGB; expected MONOCHROME1 or MONOCHROME2"),
        Case("multi_frame", np.stack([xray, xray]), refused="2 frames; expected a single-frame image"),
        Case("jpeg_lossless_no_decoder", xray.copy(), syntax="1.2.840.10008.1.2.4.70",
             refused="no decoder for it is installed; install one: gdcm"),
    ]
    return [c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, *refused]


def write_case(folder: Path, case: Case) -> Path:
    """The file for ``case`` (a VOI LUT, when the case has one, is attached here: pydicom needs a Sequence)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    attrs = dict(case.attrs)
    table = attrs.pop("_voi_lut", None)
    path = write(folder / f"{case.name}.dcm", Case(case.name, case.stored, attrs, case.expected, case.refused, case.syntax))
    if table is not None:
        import pydicom

        ds = pydicom.dcmread(path)
        item = Dataset()
        item.LUTDescriptor = [len(table), 0, 12]
        item.add_new(0x00283006, "US", table.tolist())  # LUTData, US (its ambiguous VR would default to OW)
        ds.VOILUTSequence = Sequence([item])
        ds.save_as(path, enforce_file_format=True)
    return path
