"""Folder and CSV sources: labelled image files, as X-ray datasets really come, read into a :class:`Dataset`.

Two layouts (docs/data.md):

- a folder with one subfolder per class, optionally under ``train/``, ``val/``, ``test/``
  (Kermany's ``chest_xray`` release, Keras's ``image_dataset_from_directory``);
- a CSV manifest: a path and a label per row, optional split and patient columns, paths relative
  to the CSV's folder (RSNA, NIH ChestX-ray14 after one added column).

The positive class is chosen by name, never by sort order. A source without splits is split
stratified by class and grouped by patient (a CSV column, or a pattern on the file name), so no
patient is ever in two splits; exact duplicates (same sha256) across splits are reported. Every
problem is collected in one pass and reported together (:class:`runtime.errors.BadFilesError`)
before anything is trained. The pixels come from ``runtime.image_store``: decoded once, by the
runtime's own reader and transform, so the device sees exactly what training saw.
"""

from __future__ import annotations

import collections
import csv
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .dicom import is_dicom
from .errors import BadFilesError, ConfigError, DataError
from .image_store import (
    ImageStore,
    StoreRows,
    default_workers,
    hash_files,
    open_or_build,
    ordered_map,
)
from .reader import IMAGE_SUFFIXES, header_channels

log = logging.getLogger("runtime")

SPLITS = ("train", "val", "test")
FILE_SUFFIXES = (*IMAGE_SUFFIXES, ".dcm", ".dicom")
SPLIT_FILE = "data_files.csv"  # written beside a model trained from files: which file went to which split
SPLIT_FILE_FIELDS = ("path", "sha256", "class", "split", "patient")
UNSPLIT = ("by-patient", "test")
_FIX = "fix or remove them, or pass --skip-unreadable to train without the unreadable files (recorded in the model card)"


@dataclass(frozen=True)
class FileSourceOptions:
    """How a folder or CSV source becomes a dataset: the trainer's options, or a trained model's for later stages."""

    size: int  # the square training size every file is brought to (runtime.parity.file_to_training_pixels)
    positive_class: str | None = None  # training: the positive class, by name
    class_names: tuple[str, str] | None = None  # later stages: the model's (negative, positive); other labels are errors
    patient_pattern: str | None = None  # a regex on the file name; its first group (or the match) is the patient id
    path_column: str = "path"
    label_column: str = "label"
    split_column: str = "split"
    patient_column: str = "patient"
    skip_unreadable: bool = False
    # A source without splits: "by-patient" splits it (training); "test" makes every file the test split (evaluation).
    unsplit: str = "by-patient"
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    cache_root: Path | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.unsplit not in UNSPLIT:
            raise ConfigError(f"unsplit {self.unsplit!r}: expected one of {', '.join(UNSPLIT)}")
        if self.patient_pattern is not None:
            try:
                re.compile(self.patient_pattern)
            except re.error as exc:
                raise ConfigError(f"--patient-pattern {self.patient_pattern!r}: not a regular expression ({exc})") from None
        if not 0.0 < self.test_fraction < 0.5:
            raise ConfigError(f"--test-fraction {self.test_fraction}: expected a fraction in (0, 0.5)")


@dataclass(frozen=True)
class FileRow:
    """One file of a source: a row of the split file written beside the model."""

    path: str
    sha256: str
    class_name: str
    split: str
    patient: str | None

    def to_csv(self) -> dict[str, str]:
        return {"path": self.path, "sha256": self.sha256, "class": self.class_name, "split": self.split,
                "patient": self.patient or ""}


@dataclass(frozen=True)
class FileSourceReport:
    """What reading a file source found, for the model card and for ``runtime eval``'s warnings."""

    kind: str  # "folder" or "csv"
    class_names: tuple[str, str]
    rows: tuple[FileRow, ...]
    unreadable: tuple[str, ...] = ()  # "path: reason", files left out under --skip-unreadable
    duplicates: tuple[str, ...] = ()  # "sha256: path (split), path (split)" for content found in two splits
    store: str = ""
    decode_seconds: float = 0.0
    split_method: str = ""


@dataclass
class _Found:
    path: str
    class_name: str
    split: str | None
    patient: str | None = None
    sha256: str | None = None
    channels: int = 1


@dataclass
class _Scan:
    found: list[_Found] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    has_patients: bool = False
    ignored: int = 0  # hidden files (".DS_Store", editors' temporaries)


def is_file_source(path: Path) -> bool:
    """A CSV manifest, or a folder that holds no ``.npy`` arrays of its own (those are an array dataset)."""
    if path.is_file():
        return path.suffix.lower() == ".csv"
    if not path.is_dir():
        return False
    with os.scandir(path) as entries:
        names = [entry.name for entry in entries]
    return bool(names) and not any(name.endswith(".npy") for name in names)


def scan(source: Path, options: FileSourceOptions) -> _Scan:
    """Every file the source names, with its class, split and patient; every problem found on the way."""
    result = _scan_csv(source, options) if source.is_file() else _scan_folder(source)
    if not result.has_patients and options.patient_pattern is not None:
        _patients_from_names(result, options.patient_pattern)
    if result.ignored:
        log.info("%s: %d hidden files ignored", source, result.ignored)
    return result


def _scan_folder(root: Path) -> _Scan:
    result = _Scan()
    with os.scandir(root) as scanned:
        entries = sorted(scanned, key=lambda e: e.name)
    subdirs = [e for e in entries if e.is_dir(follow_symlinks=False)]
    split_dirs = [e for e in subdirs if e.name.lower() in SPLITS]
    for entry in entries:
        if entry.is_file() and not entry.name.startswith("."):
            log.info("%s: not in a class folder, ignored", entry.path)
    if split_dirs:
        for other in subdirs:
            if other.name.lower() not in SPLITS:
                result.problems.append(f"{other.path}: a folder beside the split folders; expected only "
                                       f"{', '.join(SPLITS)} (each holding one folder per class)")
        for split_dir in split_dirs:
            for entry in sorted(os.scandir(split_dir.path), key=lambda e: e.name):
                if entry.is_dir(follow_symlinks=False):
                    _scan_class(entry.path, entry.name, split_dir.name.lower(), result)
                elif not entry.name.startswith("."):
                    result.problems.append(f"{entry.path}: not in a class folder; expected {split_dir.path}/CLASS/FILE")
    else:
        for entry in subdirs:
            _scan_class(entry.path, entry.name, None, result)
    if not result.found and not result.problems:
        result.problems.append(f"{root}: no class folders with images; expected ROOT/CLASS/IMAGE or ROOT/train/CLASS/IMAGE")
    return result


def _scan_class(folder: str, class_name: str, split: str | None, result: _Scan) -> None:
    before = len(result.found)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        for name in list(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                result.problems.append(f"{os.path.join(dirpath, name)}: a link to a folder, not followed (it could loop); "
                                       "expected image files")
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if name.startswith("."):
                result.ignored += 1
            elif not os.path.isfile(path):
                result.problems.append(f"{path}: a link that leads to no file (dangling, or a loop)")
            elif os.path.splitext(name)[1].lower() in FILE_SUFFIXES or is_dicom(path):
                result.found.append(_Found(path, class_name, split))
            else:
                result.problems.append(f"{path}: not an image or DICOM file ({os.path.splitext(name)[1] or 'no suffix'})")
    if len(result.found) == before:
        result.problems.append(f"{folder}: class folder {class_name!r} holds no images")


def _scan_csv(manifest: Path, options: FileSourceOptions) -> _Scan:
    result = _Scan()
    base = manifest.parent
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            for column, option in ((options.path_column, "--path-column"), (options.label_column, "--label-column")):
                if column not in header:
                    raise DataError(f"{manifest}: no {column!r} column ({option}); the header has {', '.join(header) or 'nothing'}")
            has_split, has_patient = options.split_column in header, options.patient_column in header
            result.has_patients = has_patient
            for line, row in enumerate(reader, start=2):
                where = f"{manifest}:{line}"
                rel, label = (row.get(options.path_column) or "").strip(), (row.get(options.label_column) or "").strip()
                split = (row.get(options.split_column) or "").strip().lower() if has_split else None
                patient = (row.get(options.patient_column) or "").strip() if has_patient else None
                if not rel or not label:
                    result.problems.append(f"{where}: empty {options.path_column if not rel else options.label_column!r} cell")
                    continue
                if has_split and split not in SPLITS:
                    result.problems.append(f"{where}: split {split!r}; expected one of {', '.join(SPLITS)}")
                    continue
                path = os.path.join(base, rel)
                if not os.path.isfile(path):
                    result.problems.append(f"{where}: {path}: no such file")
                    continue
                # a split file written by training records each file's sha256: the file must still be the one trained on
                result.found.append(_Found(path, label, split, patient, row.get("sha256") or None))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{manifest}: not a readable CSV manifest ({exc})") from None
    if result.has_patients:
        _check_patient_cells(result, manifest, options.patient_column)
    if not result.found and not result.problems:
        result.problems.append(f"{manifest}: no rows; expected a header and one row per image")
    return result


def _check_patient_cells(result: _Scan, manifest: Path, column: str) -> None:
    """A patient column is all or nothing: some empty cells are mistakes; all empty means no patient ids (a split
    file of a model trained without them)."""
    empty = [item for item in result.found if not item.patient]
    if len(empty) == len(result.found):
        result.has_patients = False
        for item in result.found:
            item.patient = None
        return
    result.problems.extend(f"{item.path}: empty {column!r} cell in {manifest}; every row needs its patient" for item in empty)
    result.found = [item for item in result.found if item.patient]


def _patients_from_names(result: _Scan, pattern: str) -> None:
    regex = re.compile(pattern)
    for item in result.found:
        match = regex.search(os.path.basename(item.path))
        if match is None:
            result.problems.append(f"{item.path}: the file name does not match --patient-pattern {pattern!r}")
        else:
            item.patient = match.group(1) if regex.groups else match.group(0)
    result.has_patients = True


def class_names_of(scan_result: _Scan, options: FileSourceOptions, source: Path) -> tuple[str, str]:
    """(negative, positive): the model's names for later stages, or the source's two classes with the named positive."""
    counts = collections.Counter(item.class_name for item in scan_result.found)
    if options.class_names is not None:
        names = tuple(options.class_names)
        for item in scan_result.found:
            if item.class_name not in names:
                scan_result.problems.append(f"{item.path}: class {item.class_name!r}; the model knows {names[0]!r} and {names[1]!r}")
        return names  # type: ignore[return-value]
    if len(counts) > 2:
        listing = ", ".join(f"{name!r} ({n})" for name, n in sorted(counts.items()))
        scan_result.problems.append(f"{source}: {len(counts)} classes {listing}; expected two (a binary task)")
        return ("", "")
    if options.positive_class is None:
        raise ConfigError(f"{source}: name the positive class with --positive-class (the classes are "
                          f"{', '.join(sorted(counts)) or 'none'}); it is never chosen by sort order")
    if options.positive_class not in counts:
        raise ConfigError(f"--positive-class {options.positive_class!r}: not a class of {source} "
                          f"(its classes are {', '.join(sorted(counts)) or 'none'})")
    others = [name for name in counts if name != options.positive_class]
    if not others:
        scan_result.problems.append(f"{source}: only the class {options.positive_class!r}; expected two classes")
        return ("", options.positive_class)
    return (others[0], options.positive_class)


def split_by_patient(labels01: np.ndarray, patients: list[str], fractions: dict[str, float], seed: int) -> list[str]:
    """Each image's split: stratified by class, grouped by patient (all of a patient's images in one split).

    A patient counts in the class most of their images have. Within a class, patients are shuffled
    (seeded) and taken in turn into each split of ``fractions`` until it holds its share of the
    class's images; the rest go to ``train``.
    """
    by_patient: dict[str, list[int]] = collections.defaultdict(list)
    for i, patient in enumerate(patients):
        by_patient[patient].append(i)
    rng = np.random.default_rng(seed)
    out = ["train"] * len(patients)
    for cls in (0, 1):
        members = sorted(p for p, rows in by_patient.items() if (2 * int(labels01[rows].sum()) >= len(rows)) == bool(cls))
        members = [members[i] for i in rng.permutation(len(members))]
        total = sum(len(by_patient[p]) for p in members)
        position = 0
        for split, share in fractions.items():
            taken, target = 0, round(share * total)
            while taken < target and position < len(members):
                patient, position = members[position], position + 1
                for i in by_patient[patient]:
                    out[i] = split
                taken += len(by_patient[patient])
    return out


def _assign_splits(found: list[_Found], labels01: np.ndarray, options: FileSourceOptions, has_patients: bool,
                   source: Path) -> str:
    given = {item.split for item in found}
    if given == {None}:
        if options.unsplit == "test":
            for item in found:
                item.split = "test"
            return "every file is the test split (a source without splits, read for evaluation)"
        if not has_patients:
            raise ConfigError(f"{source}: no train/val/test split and no patient ids: splitting by image would put one "
                              "patient's images in two splits. Pass --patient-pattern REGEX (e.g. 'person(\\d+)_' for "
                              "Kermany's file names) or a CSV patient column; '^(.*)$' makes each file its own patient")
        fractions = {"test": options.test_fraction, "val": options.val_fraction}
        method = (f"stratified by class, grouped by patient: test {options.test_fraction:g}, val {options.val_fraction:g} "
                  f"(seed {options.seed})")
    elif "val" not in given and options.unsplit == "by-patient" and has_patients:
        found_train = [i for i, item in enumerate(found) if item.split == "train"]
        sub = split_by_patient(labels01[found_train], [found[i].patient or "" for i in found_train],
                               {"val": options.val_fraction}, options.seed)
        for i, split in zip(found_train, sub):
            found[i].split = split
        return f"given; val held out of train by patient ({options.val_fraction:g}, seed {options.seed})"
    else:
        return "given by the source"
    splits = split_by_patient(labels01, [item.patient or "" for item in found], fractions, options.seed)
    for item, split in zip(found, splits):
        item.split = split
    return method


def _cross_split_checks(found: list[_Found], has_patients: bool) -> tuple[list[str], tuple[str, ...]]:
    """Patients in two splits (refused) and identical content in two splits (reported)."""
    problems: list[str] = []
    if has_patients:
        where: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for item in found:
            where[item.patient or ""][item.split or ""] += 1
        for patient, counts in sorted(where.items()):
            if len(counts) > 1:
                problems.append(f"patient {patient!r} is in {len(counts)} splits "
                                f"({', '.join(f'{s}: {n} files' for s, n in sorted(counts.items()))}); expected one")
    by_content: dict[str, list[_Found]] = collections.defaultdict(list)
    for item in found:
        by_content[item.sha256 or ""].append(item)
    duplicates = tuple(f"{sha[:12]}: " + ", ".join(f"{i.path} ({i.split})" for i in items)
                       for sha, items in sorted(by_content.items()) if len({i.split for i in items}) > 1)
    return problems, duplicates


def _hash_and_peek(found: list[_Found], problems: list[str], workers: int | None) -> None:
    """Content hashes (the store's key) and each file's channels from its header; unreadable files become problems,
    and so does a file whose sha256 differs from the one its manifest records (a split file written by training)."""
    n = workers or default_workers()
    for item, hashed in zip(found, hash_files([f.path for f in found], n)):
        if hashed.error is not None:
            problems.append(hashed.error)
            item.sha256 = None
        elif item.sha256 is not None and item.sha256 != hashed.sha256:
            problems.append(f"{item.path}: sha256 {hashed.sha256[:12]}... differs from the recorded "  # type: ignore[index]
                            f"{item.sha256[:12]}...; the file changed since the model was trained")
            item.sha256 = None
        else:
            item.sha256 = hashed.sha256

    def peek(item: _Found) -> int | str:
        try:
            return header_channels(item.path)
        except DataError as exc:
            return str(exc)

    readable = [f for f in found if f.sha256]
    for item, channels in zip(readable, ordered_map(peek, readable, n)):
        if isinstance(channels, str):
            problems.append(channels)
            item.sha256 = None
        else:
            item.channels = channels


def read_file_source(source: Path, options: FileSourceOptions) -> tuple[dict[str, tuple[StoreRows, np.ndarray]], FileSourceReport]:
    """Each split's decoded images (rows of the store) and 0/1 labels, and what was found on the way.

    Raises :class:`BadFilesError` listing every bad file and entry, unless the only problems are
    unreadable files and ``options.skip_unreadable`` is set.
    """
    result = scan(source, options)
    names = class_names_of(result, options, source)
    fatal = list(result.problems)
    found = [item for item in result.found if item.patient or not result.has_patients]
    unreadable: list[str] = []
    _hash_and_peek(found, unreadable, options.workers)  # every file, even when others are already refused
    found = [item for item in found if item.class_name in names]
    readable = [item for item in found if item.sha256]
    # decoding is the long step: not for a source that is refused anyway
    store = _decode(readable, options, unreadable) if readable and not fatal else None
    if fatal or (unreadable and not options.skip_unreadable):
        raise BadFilesError(str(source), fatal + unreadable, _FIX if not fatal else
                            "expected only readable images of two classes, each in one split")
    if unreadable:
        log.warning("%s: %d unreadable files left out (--skip-unreadable); the model card lists them", source, len(unreadable))
    usable = [item for item in found if item.sha256]
    labels01 = np.array([1 if item.class_name == names[1] else 0 for item in usable], dtype=np.int64)
    method = _assign_splits(usable, labels01, options, result.has_patients, source)
    problems, duplicates = _cross_split_checks(usable, result.has_patients)
    if problems:
        raise BadFilesError(str(source), problems, "no patient may be in two splits (it leaks the patient into the test "
                            "metrics); move their files, or drop the split folders and let --patient-pattern split")
    if duplicates:
        log.warning("%s: %d images appear in two splits with identical content (listed in the model card), e.g. %s",
                    source, len(duplicates), duplicates[0])
    splits = _splits(usable, labels01, store)
    rows = tuple(FileRow(os.path.abspath(item.path), item.sha256 or "", item.class_name, item.split or "", item.patient)
                 for item in usable)
    report = FileSourceReport("csv" if source.is_file() else "folder", names, rows, tuple(unreadable), duplicates,
                              str(store.directory) if store else "", store.seconds if store else 0.0, method)
    return splits, report


def _decode(readable: list[_Found], options: FileSourceOptions, unreadable: list[str]) -> ImageStore:
    """The store of ``readable`` files; a file that fails to decode joins ``unreadable`` and loses its hash."""
    channels = max(item.channels for item in readable)
    store = open_or_build({item.sha256 or "": item.path for item in readable}, options.size, channels, options.cache_root,
                          options.workers)
    for item in readable:
        reason = store.unreadable.get(item.sha256 or "")
        if reason is not None:
            unreadable.append(reason if reason.startswith(item.path) else f"{item.path}: {reason}")
            item.sha256 = None
    return store


def _splits(usable: list[_Found], labels01: np.ndarray, store: ImageStore | None) -> dict[str, tuple[StoreRows, np.ndarray]]:
    out: dict[str, tuple[StoreRows, np.ndarray]] = {}
    for split in SPLITS:
        idx = [i for i, item in enumerate(usable) if item.split == split]
        if idx and store is not None:
            rows = np.array([store.rows[usable[i].sha256 or ""] for i in idx], dtype=np.int64)
            out[split] = (StoreRows(store.images, rows), labels01[idx])
    return out


def model_source_options(class_names: tuple[str, str], training_shape: tuple[int, int] | None,
                         image_size: int) -> FileSourceOptions:
    """Options for reading files for a trained model: its training size (the model's input size for a model that
    records none) and its classes by name; a source without splits is all test (evaluation)."""
    return FileSourceOptions(size=training_shape[0] if training_shape else image_size, class_names=class_names,
                             unsplit="test")


def split_file_options(model: FileSourceOptions) -> FileSourceOptions:
    """``model``'s options for reading its own split file (:data:`SPLIT_FILE`) back as a CSV source."""
    return replace(model, label_column="class")


def write_split_file(path: Path, rows: tuple[FileRow, ...]) -> None:
    from .fileio import atomic_file

    with atomic_file(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=SPLIT_FILE_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row.to_csv())


def trained_on(rows: Iterable[FileRow], split_file: Path) -> list[FileRow]:
    """The ``rows`` whose content (sha256) is among the training files of the model whose split file is ``split_file``."""
    try:
        with open(split_file, newline="", encoding="utf-8") as handle:
            training = {row["sha256"] for row in csv.DictReader(handle) if row.get("split") == "train"}
    except (OSError, KeyError, csv.Error) as exc:
        raise DataError(f"{split_file}: not a readable split file ({exc}); expected the {SPLIT_FILE} written by training") from None
    return [row for row in rows if row.sha256 in training]
