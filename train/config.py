"""The training stage's configuration: one typed dataclass, saved beside the model it made.

Defaults are the researcher's notebook recipe (frozen base, Adam at Keras's default 1e-3,
20 epochs, early stopping and LR reduction on validation loss) except where the notebook was
wrong; each such default says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runtime.config_dicts import config_from_dict, load_config_json
from runtime.errors import ConfigError
from runtime.evaluation import check_prevalence
from runtime.file_sources import FileSourceOptions
from runtime.images import MIN_IMAGE_SIZE, PixelRange

from .distribute import DISTRIBUTE
from .precision import PRECISIONS

FINE_TUNE_BLOCKS = tuple(f"mixed{i}" for i in range(1, 11))  # InceptionV3's blocks after the stem
ENGINES = ("loop", "keras-fit")
SCHEDULES = ("cosine", "plateau")


@dataclass
class TrainConfig:
    data: str
    out: str
    image_size: int = 299  # InceptionV3's native size; 75 is its minimum and what tests use
    resize: bool = True  # False trains at the arrays' own (square) size
    weights: str = "imagenet"  # "imagenet" (Keras download), "none" (random), or a local .h5 path
    positive_label: int = 1  # the user's label value for the positive class; becomes 1 internally
    class_names: tuple[str, str] = ("negative", "positive")  # (negative, positive); image files: their class names
    # Image files (a folder per class, or a CSV manifest; runtime.file_sources). The positive class is named, never
    # the last in sort order; a source without splits is split by patient, so a patient id is needed.
    positive_class: str | None = None
    patient_pattern: str | None = None  # regex on the file name, e.g. "(person\\d+)_"; its first group is the patient
    path_column: str = "path"
    label_column: str = "label"
    split_column: str = "split"
    patient_column: str = "patient"
    test_fraction: float = 0.2  # of each class's images, by patient, when the files come without splits
    skip_unreadable: bool = False  # train without files that cannot be decoded (listed in the model card)
    pixel_range: str | None = None  # required for float images, e.g. "0,1"; uint8 is always 0-255
    val_fraction: float = 0.1  # stratified hold-out from train, only when the data has no val split
    balance: bool = True  # seeded random undersampling of the larger training class
    subclass_labels: str | None = None  # .npy of per-row subclass ids: undersample within them proportionally
    # "auto": the notebook's frozen base for pretrained weights; for weights="none" a frozen random
    # base is useless (its features carry no learned statistics), so the top blocks from mixed8 train
    # (docs/train.md: test AUC 0.944 over three seeds at 75x75, against 0.936 from mixed9).
    fine_tune: str = "auto"
    epochs: int = 20  # head stage, as in the notebook
    learning_rate: float = 1e-3  # Adam's default, as in the notebook
    # Eight epochs on a cosine schedule: as good on test as 12 (0.945 against 0.945, seeds 0 and 1) and as 18-22 on the
    # plateau schedule, in 8 epochs' time.
    fine_tune_epochs: int = 8
    fine_tune_learning_rate: float = 3e-4  # low, so pretrained top blocks are adapted, not overwritten
    # "cosine": the rate decays to 0 along a half cosine over exactly fine_tune_epochs, and the best validation
    # epoch is kept; "plateau": the head's rules (rate cut on a val_loss plateau, early stopping).
    fine_tune_schedule: str = "cosine"
    batch_size: int = 32
    early_stopping_patience: int = 3
    early_stopping_min_delta: float = 1e-4
    reduce_lr_patience: int = 2
    reduce_lr_min_delta: float = 4e-4
    reduce_lr_factor: float = 0.1
    min_learning_rate: float = 1e-6
    # The notebook kept the last epoch's weights; the best validation epoch is what early stopping is for.
    restore_best_weights: bool = True
    target_sensitivity: float = 0.95  # high-sensitivity operating point (screening)
    target_specificity: float = 0.95  # high-specificity operating point (confirmation)
    # Share of positives where the model will be used: the card's PPV and NPV are given at it (None: each split's own,
    # which for balanced data is 0.5 and overstates PPV wherever the disease is rarer).
    prevalence: float | None = None
    seed: int = 0
    # "mirrored": every local GPU; "multiworker": the processes TF_CONFIG names, one per machine (train.distribute).
    distribute: str = "none"
    # "loop": train.loop, one loop under strategy.run for every --distribute; "keras-fit": the notebook's model.fit,
    # kept as the reference the loop is measured against (about twice as slow on CPU; no multiworker).
    engine: str = "loop"
    # "bfloat16": the fine-tuning step computes in bfloat16 (weights, SavedModel and metrics stay float32;
    # train.precision): 0.65x the float32 epoch at 299x299 on a Zen 4's AVX512-BF16, no gain at 75x75. Refused on CPUs
    # without AVX512-BF16 or AMX, which would emulate it.
    precision: str = "float32"
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.class_names = tuple(self.class_names)  # type: ignore[assignment]
        self.validate()

    # -- checks ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid option."""
        if self.resize and (not isinstance(self.image_size, int) or self.image_size < MIN_IMAGE_SIZE):
            raise ConfigError(f"--image-size {self.image_size}: expected an integer >= {MIN_IMAGE_SIZE} (InceptionV3's minimum)")
        if len(self.class_names) != 2 or any(not str(n).strip() for n in self.class_names) or self.class_names[0] == self.class_names[1]:
            raise ConfigError(f"--class-names {','.join(self.class_names)}: expected two distinct names NEGATIVE,POSITIVE")
        if self.pixel_range is not None:
            PixelRange.parse(self.pixel_range)
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"--val-fraction {self.val_fraction}: expected a fraction in (0, 0.5)")
        if self.fine_tune not in ("auto", "none", *FINE_TUNE_BLOCKS):
            raise ConfigError(f"--fine-tune {self.fine_tune!r}: expected auto, none, or the first block to train ({FINE_TUNE_BLOCKS[0]}..{FINE_TUNE_BLOCKS[-1]})")
        if self.distribute not in DISTRIBUTE:
            raise ConfigError(f"--distribute {self.distribute!r}: expected one of {', '.join(DISTRIBUTE)}")
        if self.engine not in ENGINES:
            raise ConfigError(f"--engine {self.engine!r}: expected one of {', '.join(ENGINES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.fine_tune_schedule not in SCHEDULES:
            raise ConfigError(f"--fine-tune-schedule {self.fine_tune_schedule!r}: expected one of {', '.join(SCHEDULES)}")
        if self.engine == "keras-fit" and self.fine_tune_schedule != "plateau":
            raise ConfigError(f"--engine keras-fit with --fine-tune-schedule {self.fine_tune_schedule}: the notebook's "
                              "model.fit runs the plateau schedule only; use --engine loop")
        if self.engine == "keras-fit" and self.distribute == "multiworker":
            raise ConfigError("--engine keras-fit with --distribute multiworker: Keras 3's model.fit is not trusted "
                              "under MultiWorkerMirroredStrategy (keras-team/keras#20585); use --engine loop")
        if self.precision != "float32" and (self.resolved_fine_tune() is None or self.fine_tune_epochs == 0):
            raise ConfigError(f"--precision {self.precision} with nothing to fine-tune (--fine-tune {self.fine_tune}, "
                              f"--weights {self.weights}, --fine-tune-epochs {self.fine_tune_epochs}): only the "
                              "fine-tuning step changes precision; expected --precision float32")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected a positive integer")
        for name in ("fine_tune_epochs", "early_stopping_patience", "reduce_lr_patience"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected an integer >= 0")
        for name in ("learning_rate", "fine_tune_learning_rate", "min_learning_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 < value < 10.0):
                raise ConfigError(f"--{name.replace('_', '-')} {value}: expected a positive learning rate")
        if not 0.0 < self.reduce_lr_factor < 1.0:
            raise ConfigError(f"--reduce-lr-factor {self.reduce_lr_factor}: expected a factor in (0, 1)")
        for name in ("target_sensitivity", "target_specificity"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected a rate in (0, 1)")
        check_prevalence(self.prevalence)
        self.file_source_options()  # a bad --patient-pattern or --test-fraction is reported before any file is read
        if self.weights not in ("imagenet", "none") and not str(self.weights).endswith(".h5"):
            raise ConfigError(f"--weights {self.weights!r}: expected imagenet, none, or a path to a Keras .h5 weights file")

    # -- derived values --------------------------------------------------------------------
    @property
    def parsed_pixel_range(self) -> PixelRange | None:
        return PixelRange.parse(self.pixel_range) if self.pixel_range is not None else None

    def resolved_fine_tune(self) -> str | None:
        """The first trained block, or None for the frozen recipe (see the ``fine_tune`` default)."""
        if self.fine_tune == "auto":
            return "mixed8" if self.weights == "none" else None
        return None if self.fine_tune == "none" else self.fine_tune

    def file_source_options(self) -> FileSourceOptions:
        """How image files become this model's training images (the same size, the named classes)."""
        return FileSourceOptions(
            size=self.image_size, positive_class=self.positive_class, patient_pattern=self.patient_pattern,
            path_column=self.path_column, label_column=self.label_column, split_column=self.split_column,
            patient_column=self.patient_column, skip_unreadable=self.skip_unreadable, val_fraction=self.val_fraction,
            test_fraction=self.test_fraction, seed=self.seed)

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["class_names"] = list(self.class_names)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TrainConfig":
        return config_from_dict(cls, raw, "training")

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return load_config_json(cls, path, "training")
