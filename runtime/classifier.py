"""The on-device classifier: an exported model file, its metadata, and decisions with labels.

``Classifier("model_int8.tflite")`` reads the metadata embedded in the file, checks the file
against the digest of its own content embedded at export (``runtime.integrity``) and against the
sha256 in its sidecar (``NAME.json``) when one is there, opens the backend the suffix calls for,
and predicts from image files (PNG, JPEG, ...; DICOM through ``runtime.dicom``), PIL images or
arrays of any size, one image or many. An image larger than the training images is first brought
down to their size (``runtime.parity``), then prepared as in training
(``runtime.images.to_model_pixels``); the decision is ``probability >= threshold`` at the chosen
operating point of the model card.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .artifact_metadata import read_artifact_document
from .backends import Backend, open_backend
from .dicom import Window
from .errors import ConfigError, DataError, ModelFileError
from .images import PixelRange, check_pixels, to_model_pixels
from .integrity import DIGEST_KEY, verify_content
from .metrics import sigmoid
from .model_metadata import ArtifactMetadata
from .parity import check_parity, to_training_size
from .reader import PIL_TO_RGB, read_image

log = logging.getLogger("runtime")

ImageLike = str | Path | Image.Image | np.ndarray


@dataclass(frozen=True)
class Prediction:
    """One image's result: the positive class's probability and the decision at the operating point."""

    probability: float
    logit: float
    positive: bool
    label: str
    operating_point: str
    threshold: float
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_sidecar(path: Path, data: bytes) -> bool:
    """Check ``data`` (the bytes of ``path``) against the sha256 in ``NAME.json``; True if checked, False if no sidecar."""
    sidecar = path.with_name(path.name + ".json")
    if not sidecar.is_file():
        return False
    try:
        expected = json.loads(sidecar.read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{sidecar}: unreadable sidecar ({exc}); expected the JSON written by the export") from None
    actual = hashlib.sha256(data).hexdigest()
    if expected != actual:
        raise ModelFileError(f"{path}: sha256 {actual[:12]}... does not match {expected and expected[:12]}... in {sidecar.name}; "
                             "the file is corrupt or was replaced")
    return True


class Classifier:
    """A binary classifier exported by ``export/``, ready to predict on a device."""

    def __init__(self, model: str | Path, *, operating_point: str = "youden", backend: str | None = None,
                 threads: int | None = None, pixel_range: str | None = None, interpreters: int = 1,
                 kernels: str = "default", parity: str = "crop", dicom_window: str | Window = "file") -> None:
        self.path = Path(model)
        # options first: a bad --parity or --dicom-window is reported before the model file is read
        self.parity = check_parity(parity)
        self.dicom_window = Window.parse(dicom_window) if isinstance(dicom_window, str) else dicom_window
        data, document = read_artifact_document(self.path)
        self.checksum_verified = verify_sidecar(self.path, data)
        started = time.perf_counter()
        # the bytes are checked before anything in the document is believed
        self.content_verified = verify_content(data, document, str(self.path))
        self.digest_seconds = time.perf_counter() - started  # what self-verification adds to loading (runtime bench)
        if not self.content_verified:
            log.warning("warning: %s has no embedded %s (exported before artifacts carried one); it runs %s", self.path,
                        DIGEST_KEY, "checked by its sidecar's sha256 only" if self.checksum_verified
                        else "unchecked: re-export it, or keep its sidecar NAME.json beside it")
        del data  # the backend maps the file itself; do not hold a second copy for the classifier's lifetime
        self.metadata = ArtifactMetadata.from_dict(document, str(self.path))
        self.image_size = self.metadata.image_size
        self.class_names = self.metadata.class_names
        points = self.metadata.thresholds
        if operating_point not in points:
            raise ConfigError(f"--operating-point {operating_point!r}: expected one of {', '.join(points)} (from {self.path.name})")
        self.operating_point, self.threshold = operating_point, points[operating_point]
        self.operating_points = points
        self.training_shape = self.metadata.input.training_shape
        if self.training_shape is None and self.parity != "off":
            log.warning("warning: %s records no training image size (exported before artifacts carried one): images go "
                        "straight to %dx%d; re-export it for train/serve parity", self.path, self.image_size, self.image_size)
        self.pixel_range = PixelRange.parse(pixel_range) if pixel_range else None
        self._backend: Backend = open_backend(self.path, backend, threads, interpreters, kernels)
        shape = self._backend.input.shape
        if len(shape) != 4 or tuple(shape[1:]) != (self.image_size, self.image_size, 3):
            raise ModelFileError(f"{self.path}: embedded metadata says {self.image_size}x{self.image_size} RGB input but the model "
                                 f"takes shape {list(shape)}; the metadata does not belong to this model")

    @property
    def backend(self) -> str:
        """The package that runs the model: ai-edge-litert, tflite-runtime, tensorflow or onnxruntime."""
        return self._backend.package

    @property
    def engine(self) -> Backend:
        """The open backend itself, for benchmarks that time it without this wrapper."""
        return self._backend

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """Raw logits for prepared pixels (the output of :meth:`pixels` or ``to_model_pixels``)."""
        return self._backend.logits(pixels)

    def pixels(self, image: ImageLike, source: str = "image") -> np.ndarray:
        """One or more images as model input: (N, S, S, 3), uint8 for 8-bit sources, else float32 0-255."""
        if isinstance(image, (str, Path)):
            array, source = read_image(Path(image), self.dicom_window), str(image)
            batch = array[None]
        elif isinstance(image, Image.Image):
            img = image.convert("RGB") if image.mode in PIL_TO_RGB else image
            if img.mode not in ("L", "RGB"):
                raise DataError(f"{source}: PIL image mode {img.mode}; expected an 8-bit grayscale or RGB image")
            batch = np.asarray(img)[None]
        elif isinstance(image, np.ndarray):
            batch = self._as_batch(image, source)
        else:
            raise DataError(f"{source}: {type(image).__name__}; expected a path, a PIL image or a numpy array")
        if batch.shape[0] == 0:
            raise DataError(f"{source}: empty batch; expected at least one image")
        check_pixels(batch, None if batch.dtype == np.uint8 else self.pixel_range, source)
        batch = self._at_training_size(batch)
        return to_model_pixels(batch, self.image_size, self.pixel_range, source, keep_uint8=True)

    def _at_training_size(self, batch: np.ndarray) -> np.ndarray:
        """Each image brought to the training images' size first (``runtime.parity``), unless it is there already."""
        if self.parity == "off" or self.training_shape is None or tuple(batch.shape[1:3]) == self.training_shape:
            return batch
        return np.stack([to_training_size(image, self.training_shape, self.parity) for image in batch])

    @staticmethod
    def _as_batch(array: np.ndarray, source: str) -> np.ndarray:
        if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
            raise DataError(f"{source}: array dtype {array.dtype}; expected uint8 or float pixels")
        if array.ndim == 2:
            return array[None]
        if array.ndim == 3 and array.shape[-1] in (1, 3):
            return array[None]  # one image, channels last
        # (H, W, 2) or (H, W, 4) is an image with the wrong channel count, not a batch of 2- or 4-pixel-wide images
        if array.ndim in (3, 4) and array.shape[-1] in (2, 4):
            raise DataError(f"{source}: array shape {array.shape} has {array.shape[-1]} channels; expected 1 (grayscale) or 3 (RGB)")
        if array.ndim == 3 or (array.ndim == 4 and array.shape[-1] in (1, 3)):
            return array
        raise DataError(f"{source}: array shape {array.shape}; expected (H,W), (H,W,C), (N,H,W) or (N,H,W,C) with C 1 or 3")

    def predict(self, images: ImageLike | Sequence[ImageLike]) -> list[Prediction]:
        """Predictions for one image (a path, PIL image or array) or a list of them, in order."""
        items: Iterable[ImageLike] = images if isinstance(images, (list, tuple)) else [images]
        results: list[Prediction] = []
        for i, item in enumerate(items):
            path = str(item) if isinstance(item, (str, Path)) else None
            logits = self._backend.logits(self.pixels(item, path or f"image {i}"))
            results.extend(self._decide(float(z), path) for z in logits)
        if not results:
            raise DataError("empty batch; expected at least one image")
        return results

    def _decide(self, logit: float, path: str | None) -> Prediction:
        probability = float(sigmoid(np.array([logit]))[0])
        positive = probability >= self.threshold
        return Prediction(probability, logit, positive, self.class_names[1 if positive else 0], self.operating_point,
                          self.threshold, path)
