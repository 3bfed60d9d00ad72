"""Chest X-ray files written from the bundled data (for the tests and benchmarks.ingest): PNG, JPEG and 16-bit DICOM, as clinics export them.

Each 28x28 image is enlarged (PIL bicubic) to ``px`` pixels and written in the Kermany layout
(``ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/personN_kind_M.ext``) or as class folders without
splits; images are grouped into patients of one to three images of one class, so a split by image
would leak patients.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from runtime.datasets import load_dataset

CLASS_FOLDERS = ("NORMAL", "PNEUMONIA")  # label 0, label 1
FORMATS = ("png", "jpeg", "dcm")
PATIENT_PATTERN = r"(person\d+)_"


def write_dicom16(path: Path, image: np.ndarray) -> None:
    """A 16-bit MONOCHROME2 DICOM whose stored values are ``image * 257``: the reader's full-range scaling gives ``image`` back."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = (image.astype(np.uint16) * 257).tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_image(path: Path, image: np.ndarray) -> None:
    if path.suffix == ".dcm":
        write_dicom16(path, image)
    elif path.suffix == ".png" and path.stem.endswith("16"):
        Image.fromarray(image.astype(np.uint16) * 257).save(path)
    else:
        Image.fromarray(image).save(path, **({"quality": 95} if path.suffix == ".jpeg" else {}))


def write_tree(root: Path, px: int = 224, per_split: dict[str, int] | None = None, layout: str = "kermany",
               seed: int = 0) -> dict[str, list[Path]]:
    """Write the bundled images (``per_split``: at most that many per class and split) and return each split's files.

    ``layout`` "kermany" keeps the bundled splits as folders; "classes" writes ROOT/CLASS/ only.
    """
    data = load_dataset("pneumoniamnist")
    rng = np.random.default_rng(seed)
    written: dict[str, list[Path]] = {}
    patient = 0
    for split_name, split in data.splits.items():
        labels = split.labels
        files: list[Path] = []
        for cls in (0, 1):
            rows = np.flatnonzero(labels == cls)
            if per_split and split_name in per_split:
                rows = np.sort(rng.choice(rows, per_split[split_name], replace=False))
            folder = root / (split_name if layout == "kermany" else "") / CLASS_FOLDERS[cls]
            folder.mkdir(parents=True, exist_ok=True)
            i = 0
            while i < rows.size:
                patient += 1
                count = 1 + patient % 3  # one to three images per patient
                for k, row in enumerate(rows[i:i + count]):
                    image = np.asarray(Image.fromarray(split.images[row]).resize((px, px), Image.Resampling.BICUBIC))
                    path = folder / f"person{patient}_{'bacteria' if cls else 'normal'}_{k}.{FORMATS[(i + k) % 3]}"
                    write_image(path, image)
                    files.append(path)
                i += count
        written[split_name] = files
    return written
