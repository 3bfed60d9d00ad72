"""The model card: what later stages and outside checks need to use the model correctly.

:class:`ModelCard` is the contract between training and every later stage (export/, benchmarks/),
read by attribute: the SavedModel's path (relative to the card), the image size and how images
were prepared, the positive label and class names, the operating points chosen on validation
data, each split's figures (:class:`runtime.evaluation.SplitSummary`), and the data files with
their sha256. ``architecture``, ``class_counts``, ``training`` and ``versions`` are records for
people; no code decides anything on them.

Version 2 keeps each split's operating points under ``operating_points``; :meth:`ModelCard.from_dict`
reads version 1 cards too (points beside the split's AUC), and writes version 2.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from runtime.errors import ModelCardError
from runtime.evaluation import SplitSummary
from runtime.metrics import OperatingPoint

CARD_NAME = "model_card.json"
CONFIG_NAME = "train_config.json"
SAVED_MODEL_DIR = "saved_model"
CARD_VERSION = 2  # 2: each split's operating points under "operating_points"; 1 put them beside its AUC
REQUIRED = ("saved_model", "image_size", "positive_label", "class_names", "operating_points", "metrics", "data")
DEFAULT_RESIZE = "PIL bilinear (runtime.images.to_model_pixels)"


def package_versions(names: tuple[str, ...] = ("inception-edge", "tensorflow", "keras", "numpy", "pillow")) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass(frozen=True)
class DataFile:
    path: str
    sha256: str | None


@dataclass(frozen=True)
class FilesRecord:
    """A model trained from image files: where the split of every file is, and what was left out or doubled."""

    split_file: str  # relative to the card: runtime.file_sources.SPLIT_FILE, one row per file (path, sha256, class, split, patient)
    kind: str  # "folder" or "csv"
    split_method: str
    transform: str  # runtime.image_store.TRANSFORM: how a file became the training image
    unreadable: tuple[str, ...] = ()  # "path: reason" of files left out under --skip-unreadable
    duplicates: tuple[str, ...] = ()  # identical content found in two splits

    def to_dict(self) -> dict[str, Any]:
        return {"split_file": self.split_file, "kind": self.kind, "split_method": self.split_method,
                "transform": self.transform, "unreadable": list(self.unreadable), "duplicates": list(self.duplicates)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FilesRecord:
        return cls(str(raw["split_file"]), str(raw["kind"]), str(raw.get("split_method", "")), str(raw.get("transform", "")),
                   tuple(raw.get("unreadable", ())), tuple(raw.get("duplicates", ())))


@dataclass(frozen=True)
class DataRecord:
    """Where the training data came from, so later stages can find it again and prove it did not change."""

    path: str | None
    bundled: str | None  # a bundled dataset's name (runtime.bundled): found by name on any install
    image_shape: tuple[int, ...] | None  # the stored images' shape before resizing: what later data must match
    files: tuple[DataFile, ...] = ()
    from_files: FilesRecord | None = None  # image files (a folder or CSV) rather than arrays

    @property
    def training_shape(self) -> tuple[int, int] | None:
        """(height, width) of the stored training images: what ``runtime.parity`` brings larger inputs down to."""
        return (int(self.image_shape[0]), int(self.image_shape[1])) if self.image_shape else None

    def to_dict(self) -> dict[str, Any]:
        out = {"path": self.path, "bundled": self.bundled,
               "image_shape": None if self.image_shape is None else list(self.image_shape),
               "files": [{"path": f.path, "sha256": f.sha256} for f in self.files]}
        if self.from_files is not None:
            out["from_files"] = self.from_files.to_dict()
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataRecord:
        shape = raw.get("image_shape")
        from_files = raw.get("from_files")
        return cls(raw.get("path"), raw.get("bundled"), None if shape is None else tuple(int(v) for v in shape),
                   tuple(DataFile(str(f["path"]), f.get("sha256")) for f in raw.get("files", [])),
                   None if from_files is None else FilesRecord.from_dict(from_files))


@dataclass(frozen=True)
class InputRecord:
    """What the SavedModel takes: raw 0-255 RGB pixels at ``image_size``, made from the stored images by ``resize``."""

    resize: str = DEFAULT_RESIZE
    source_pixel_range: str | None = None
    name: str | None = None
    dtype: str = "float32"
    color: str = "RGB"

    def to_dict(self, image_size: int) -> dict[str, Any]:
        return {"name": self.name, "shape": [None, image_size, image_size, 3], "dtype": self.dtype, "range": [0, 255],
                "color": self.color, "resize": self.resize, "source_pixel_range": self.source_pixel_range}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> InputRecord:
        return cls(raw.get("resize", DEFAULT_RESIZE), raw.get("source_pixel_range"), raw.get("name"),
                   raw.get("dtype", "float32"), raw.get("color", "RGB"))


@dataclass(frozen=True)
class ModelCard:
    """``model_card.json``, typed. Build it with the constructor; read it with :meth:`load`."""

    saved_model: str  # the SavedModel directory, relative to the card
    image_size: int
    positive_label: int
    class_names: tuple[str, str]  # (negative, positive)
    operating_points: tuple[OperatingPoint, ...]  # chosen on validation data; one is named "youden"
    metrics: dict[str, SplitSummary]  # split name (val, test) -> the SavedModel's figures there
    data: DataRecord
    negative_label: int | None = None
    input: InputRecord = field(default_factory=InputRecord)
    saved_model_sha256: str | None = None
    config: str = CONFIG_NAME
    created: str | None = None
    card_version: int = CARD_VERSION
    output: dict[str, Any] = field(default_factory=dict)
    # records for people: the recipe, the balancing, the histories and the versions that made the model
    architecture: dict[str, Any] = field(default_factory=dict)
    class_counts: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def thresholds(self) -> dict[str, float]:
        """Operating point name -> probability threshold, in the card's order."""
        return {p.name: p.threshold for p in self.operating_points}

    def to_dict(self) -> dict[str, Any]:
        return {"card_version": CARD_VERSION, "created": self.created, "saved_model": self.saved_model,
                "saved_model_sha256": self.saved_model_sha256, "config": self.config, "architecture": self.architecture,
                "image_size": self.image_size, "input": self.input.to_dict(self.image_size), "output": self.output,
                "positive_label": self.positive_label, "negative_label": self.negative_label,
                "class_names": list(self.class_names), "operating_points": [p.to_dict() for p in self.operating_points],
                "metrics": {name: m.to_dict() for name, m in self.metrics.items()}, "class_counts": self.class_counts,
                "data": self.data.to_dict(), "training": self.training, "versions": self.versions}

    @classmethod
    def from_dict(cls, raw: Any, source: str = CARD_NAME) -> ModelCard:
        """A card from its JSON (version 1 or 2); :class:`ModelCardError` names ``source`` and what is wrong."""
        missing = [k for k in REQUIRED if k not in raw] if isinstance(raw, dict) else list(REQUIRED)
        if missing:
            raise ModelCardError(f"{source}: missing fields {missing}")
        try:
            card = cls(
                saved_model=str(raw["saved_model"]), image_size=int(raw["image_size"]),
                positive_label=int(raw["positive_label"]), class_names=_two_names(raw["class_names"]),
                operating_points=tuple(OperatingPoint.from_dict(p) for p in raw["operating_points"]),
                metrics={name: SplitSummary.from_dict(m) for name, m in raw["metrics"].items()},
                data=DataRecord.from_dict(raw["data"]),
                negative_label=None if raw.get("negative_label") is None else int(raw["negative_label"]),
                input=InputRecord.from_dict(raw.get("input") or {}), saved_model_sha256=raw.get("saved_model_sha256"),
                config=str(raw.get("config", CONFIG_NAME)), created=raw.get("created"),
                card_version=int(raw.get("card_version", 1)), output=dict(raw.get("output") or {}),
                architecture=dict(raw.get("architecture") or {}), class_counts=dict(raw.get("class_counts") or {}),
                training=dict(raw.get("training") or {}), versions=dict(raw.get("versions") or {}))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelCardError(f"{source}: malformed model card ({type(exc).__name__}: {exc}); expected the JSON "
                                 "written by `python -m train`") from None
        if not any(p.name == "youden" for p in card.operating_points):
            raise ModelCardError(f"{source}: no operating point named 'youden'")
        return card

    @classmethod
    def load(cls, model_dir: str | Path) -> ModelCard:
        """Read and check ``MODEL_DIR/model_card.json``; :class:`ModelCardError` names what is wrong."""
        path = Path(model_dir) / CARD_NAME
        if not Path(model_dir).is_dir():
            raise ModelCardError(f"{model_dir}: not a directory; expected a model directory written by `python -m train`")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelCardError(f"{path}: no model card; expected the {CARD_NAME} written by `python -m train`") from None
        except (OSError, ValueError) as exc:
            raise ModelCardError(f"{path}: not a readable JSON model card ({exc})") from None
        return cls.from_dict(raw, str(path))


def _two_names(raw: Any) -> tuple[str, str]:
    names = tuple(str(n) for n in raw)
    if len(names) != 2:
        raise ValueError(f"class_names {list(names)}: expected two names (negative, positive)")
    return names  # type: ignore[return-value]
