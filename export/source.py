"""The export's inputs: a trained model directory and the labelled data it came from.

Everything is checked here, before TensorFlow loads, so that a wrong path fails in a second
with one line instead of after a minute of conversion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.datasets import Dataset, load_dataset
from runtime.errors import DataError, ModelCardError
from runtime.file_sources import (
    FileSourceOptions,
    model_source_options,
    split_file_options,
)
from runtime.fileio import sha256_file
from runtime.images import PixelRange
from train.card import ModelCard
from train.config import TrainConfig


@dataclass(frozen=True)
class ModelSource:
    """A trained model directory: its card, its SavedModel and how its inputs are made."""

    directory: Path
    card: ModelCard
    saved_model: Path
    train_config: TrainConfig

    @property
    def pixel_range(self) -> PixelRange | None:
        """The source images' value range as training read it (None: uint8)."""
        return self.train_config.parsed_pixel_range


def open_model_dir(model_dir: str | Path) -> ModelSource:
    """Read the card and find the SavedModel; raise :class:`ModelCardError` naming what is missing."""
    directory = Path(model_dir)
    if not directory.exists():
        raise ModelCardError(f"{directory}: no such model directory; expected the --out directory of `python -m train`")
    card = ModelCard.load(directory)
    saved_model = directory / card.saved_model
    if not (saved_model / "saved_model.pb").is_file():
        raise ModelCardError(f"{saved_model}: not a SavedModel (no saved_model.pb); expected the SavedModel the card names")
    config_path = directory / card.config
    if not config_path.is_file():
        raise ModelCardError(f"{config_path}: missing; expected the training config the model card names")
    return ModelSource(directory, card, saved_model, TrainConfig.load(config_path))


def file_options(source: ModelSource) -> FileSourceOptions:
    """How image files are read for this model: its training size and its two classes by name."""
    return model_source_options(source.card.class_names, source.card.data.training_shape, source.card.image_size)


def open_training_data(source: ModelSource, data: str | None) -> Dataset:
    """The labelled data to calibrate and verify on: ``data`` if given, else the data the card names.

    The card's data must still be what the model was trained on (same sha256): a changed file would
    silently calibrate on other images and compare against other labels. A model trained from image
    files is given its own split file back (every file's path, sha256 and split), so its exports
    draw from the same training, validation and test images, checked file by file.
    """
    if data is not None:
        return load_dataset(data, file_options(source))
    recorded = source.card.data
    if recorded.from_files is not None:
        split_file = source.directory / recorded.from_files.split_file
        if not split_file.is_file():
            raise DataError(f"{split_file}: missing; the model card says the model was trained from image files listed "
                            "there; pass --data PATH to the same files")
        return load_dataset(split_file, split_file_options(file_options(source)))
    if recorded.bundled:  # found by name wherever the package is installed; compared by content, not by path
        dataset = load_dataset(recorded.bundled)
        expected = {str(dataset.path): f.sha256 for f in recorded.files[:1]}
    else:
        path = Path(recorded.path or "")
        if not path.exists():
            raise DataError(f"{path}: the model card's training data is not there; pass --data PATH to the same data")
        dataset = load_dataset(path)
        expected = {str(Path(f.path)): f.sha256 for f in recorded.files}
    for file in dataset.files:
        want = expected.get(str(file))
        if want is not None and sha256_file(file) != want:
            raise DataError(f"{file}: sha256 differs from the model card's {want[:12]}...; the data changed since training, "
                            "pass --data PATH to use it anyway")
    return dataset
