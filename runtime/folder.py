"""Predict on many files: folders walked lazily, one row per file, a summary, flat memory.

A clinic's export is a folder of thousands of images, some of them not what they claim to be.
Every file found (but the run's own ``--out`` file and its temporary files) becomes exactly one
row: a prediction, an error (an unreadable or refused image), or a skip (a file that is not an
image, named with the reason). Nothing is dropped silently and nothing is held per file beyond
its row, so memory stays flat however many files there are (docs/runtime.md gives the
measurement on 10,000 files).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .classifier import Classifier
from .dicom import is_dicom
from .errors import ConfigError, DataError, InceptionEdgeError, OutputError, first_line
from .fileio import atomic_file
from .reader import IMAGE_SUFFIXES

ROW_FIELDS = ("path", "status", "probability", "logit", "positive", "label", "operating_point", "threshold", "error")
OUTPUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
NOT_ENTERED = "folder not entered (use --recursive)"
SOME_FAILED_EXIT = 4  # distinct from 2 (usage error) and 3 (export refused): scripts can tell "some files failed"


@dataclass(frozen=True)
class Entry:
    """A path to classify, or one that was found but will not be (``skip`` says why)."""

    path: str  # as given or joined (os.path): pathlib would intern every file name in a table that grows with the walk
    skip: str | None = None


def iter_entries(inputs: Iterable[str | Path], recursive: bool = False, out: str | Path | None = None) -> Iterator[Entry]:
    """Every file named or found under a named folder, in a stable order (names sorted per folder).

    A folder is read one directory at a time (``os.scandir``), never listed whole. Files that are
    neither an image (by suffix) nor DICOM (by suffix or the Part 10 marker) are yielded as skips;
    subfolders without ``recursive``, and links to folders (which could loop), as skips too. The
    run's own output is not an entry: ``out`` and its temporary siblings (``_is_output``), which
    appear in a folder being walked while the rows are written.
    """
    own = (os.path.realpath(os.path.dirname(os.path.abspath(out))), os.path.basename(out)) if out is not None else None
    for item in inputs:
        path = os.fspath(item)
        if os.path.isdir(path):
            yield from _walk(path, recursive, own)
        else:
            yield Entry(path)  # named explicitly: classify it, whatever its suffix, and report what goes wrong


def _is_output(name: str, out_name: str) -> bool:
    """``--out`` itself or a temporary file runtime.fileio.atomic_file writes it through (``.NAME.*.tmp``; a killed
    run leaves one behind): the tool's own files, never a clinic's, so neither is a row."""
    return name == out_name or (name.startswith(f".{out_name}.") and name.endswith(".tmp"))


def _walk(folder: str, recursive: bool, own: tuple[str, str] | None) -> Iterator[Entry]:
    try:
        with os.scandir(folder) as it:
            names = sorted(e.name for e in it)  # names only (about 70 bytes each): the order is stable across runs
    except OSError as exc:
        yield Entry(folder, skip=f"folder not readable ({exc.strerror or type(exc).__name__})")
        return
    if own is not None and os.path.realpath(folder) == own[0]:
        names = [name for name in names if not _is_output(name, own[1])]
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            if os.path.islink(path):
                yield Entry(path, skip="link to a folder, not followed")
            elif recursive:
                yield from _walk(path, recursive, own)
            else:
                yield Entry(path, skip=NOT_ENTERED)
        elif os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES or is_dicom(path):
            yield Entry(path)
        else:
            yield Entry(path, skip=f"not an image or DICOM file ({os.path.splitext(name)[1] or 'no suffix'})")


def classify(clf: Classifier, entry: Entry) -> dict[str, Any]:
    """One row: the prediction, or the error that stopped it (the run goes on)."""
    row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
    row["path"] = entry.path
    if entry.skip is not None:
        return {**row, "status": "skipped", "error": entry.skip}
    try:
        (prediction,) = clf.predict(entry.path)
    except InceptionEdgeError as exc:
        return {**row, "status": "error", "error": first_line(exc)}
    except Exception as exc:  # noqa: BLE001 - one odd file must not end a 10,000-file run
        # only the type: a library's message about a medical file may quote its contents
        return {**row, "status": "error", "error": f"{entry.path}: unexpected {type(exc).__name__} while reading or classifying it"}
    return {**row, **prediction.to_dict(), "status": "ok", "path": entry.path}


@dataclass
class Summary:
    """Counts at the operating point; ``exit_code`` says whether every file that should have been classified was."""

    operating_point: str
    threshold: float
    class_names: tuple[str, str]
    positive: int = 0
    negative: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    first_failures: list[str] = field(default_factory=list)

    def add(self, row: dict[str, Any]) -> None:
        if row["status"] == "ok":
            if row["positive"]:
                self.positive += 1
            else:
                self.negative += 1
        elif row["status"] == "error":
            self.failed += 1
            if len(self.first_failures) < 3:
                self.first_failures.append(row["error"])
        else:
            self.skipped += 1

    @property
    def files(self) -> int:
        return self.positive + self.negative + self.failed + self.skipped

    @property
    def exit_code(self) -> int:
        return SOME_FAILED_EXIT if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "positive": self.positive, "negative": self.negative, "failed": self.failed,
                "skipped": self.skipped, "operating_point": self.operating_point, "threshold": self.threshold,
                "seconds": round(self.seconds, 2)}

    def line(self) -> str:
        neg, pos = self.class_names
        rate = (self.positive + self.negative + self.failed) / self.seconds if self.seconds > 0 else 0.0
        text = (f"{self.files} files: {self.positive} {pos} (positive), {self.negative} {neg} (negative) at "
                f"{self.operating_point} (p >= {self.threshold:.4f}); {self.failed} failed, {self.skipped} skipped; "
                f"{self.seconds:.1f} s ({rate:.1f} images/s)")
        if self.failed:
            text += "\nfirst failures: " + " | ".join(self.first_failures)
        return text


class RowWriter:
    """Rows to a stream or to a file written atomically (the file appears complete, or not at all)."""

    def __init__(self, kind: str, stream: TextIO) -> None:
        self.kind, self.stream, self.rows = kind, stream, 0
        self._csv = csv.DictWriter(stream, fieldnames=ROW_FIELDS, lineterminator="\n") if kind == "csv" else None
        if self._csv is not None:
            self._csv.writeheader()
        elif kind == "json":
            stream.write("[")

    def write(self, row: dict[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow({k: ("" if row[k] is None else row[k]) for k in ROW_FIELDS})
        elif self.kind == "json":
            self.stream.write(("," if self.rows else "") + "\n  " + json.dumps(row))
        else:
            self.stream.write(json.dumps(row) + "\n")
        self.rows += 1

    def close(self) -> None:
        if self.kind == "json":
            self.stream.write("\n]\n" if self.rows else "]\n")
        self.stream.flush()


def output_kind(path: Path, given: str | None) -> str:
    """``--format`` if given, else the suffix of ``--out``: .csv, .jsonl/.ndjson or .json."""
    if given is not None:
        return given
    kind = OUTPUT_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"--out {path}: suffix {path.suffix or '(none)'}; expected .csv, .jsonl, .ndjson or .json "
                          "(or say --format)")
    return kind


class Progress:
    """A line on stderr every ``interval`` seconds: done/total, rate, time left, failures so far."""

    def __init__(self, total: int, stream: TextIO | None, interval: float = 2.0) -> None:
        self.total, self.stream, self.interval = total, stream, interval
        self.started = self._last = time.monotonic()
        self._shown = -1
        self.tty = bool(stream is not None and stream.isatty())

    def update(self, done: int, failed: int, final: bool = False) -> None:
        now = time.monotonic()
        if self.stream is None or (not final and now - self._last < self.interval):
            return
        if final and done == self._shown:  # the last file's line is up already: end it on a terminal
            self.stream.write("\n" if self.tty else "")
            return
        self._last, self._shown = now, done
        self.total = max(self.total, done)  # files added to a folder during the run: never "3/2 files (150%)"
        rate = done / (now - self.started) if now > self.started else 0.0
        left = (self.total - done) / rate if rate > 0 else float("nan")
        text = f"{done}/{self.total} files ({100 * done / max(1, self.total):.0f}%), {rate:.1f}/s, {left:.0f} s left, {failed} failed"
        self.stream.write(("\r" + text + ("\n" if final else "")) if self.tty else text + "\n")
        self.stream.flush()


def check_inputs(inputs: Iterable[str | Path]) -> None:
    """A path that does not exist is a usage error (exit 2), caught before a model loads; a bad file is a row."""
    missing = [str(p) for p in inputs if not Path(p).exists()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{missing[0]}: no such image file or folder{more}")


def check_out(out: Path) -> None:
    """``--out`` must be a file name in a folder this user can write: said before a model loads, not after."""
    if out.is_dir():
        raise OutputError(f"--out {out}: is a folder; expected a file name ending in .csv, .jsonl or .json")
    folder = out.parent
    if not folder.is_dir():
        raise OutputError(f"--out {out}: {folder} {'is not a folder' if folder.exists() else 'does not exist'}; "
                          "expected a file in an existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out}: folder {folder} is not writable; expected a folder this user can write to")


def check_run(inputs: list[str], recursive: bool = False, out: Path | None = None) -> int:
    """The usage mistakes in a run's inputs and ``out`` (exit 2), found before a model loads (seconds on a Pi); the
    number of rows.

    The walk that counts the rows (for progress) also finds a named folder with nothing to classify: a
    wrong folder, or images in subfolders without ``--recursive``, is a mistake, not a run of skips.
    """
    if not inputs:
        raise DataError("no image files or folders given; expected at least one")
    check_inputs(inputs)
    if out is not None:
        check_out(out)
    total = 0
    for item in inputs:
        found = images = subfolders = 0
        for entry in iter_entries([item], recursive, out):
            found += 1
            images += entry.skip is None
            subfolders += entry.skip == NOT_ENTERED
        if images == 0:  # only a folder can hold no image: a file named explicitly is always an entry to classify
            hint = "; subfolders are entered only with --recursive" if subfolders else ""
            raise DataError(f"{item}: no image or DICOM file to classify ({found} files found, {found} skipped{hint}); "
                            "expected image files (PNG, JPEG, ...) or DICOM files")
        total += found
    return total


def predict_files(clf: Classifier, inputs: list[str], *, recursive: bool = False, out: Path | None = None,
                  kind: str = "table", progress: float | None = 2.0, stdout: TextIO = sys.stdout,
                  stderr: TextIO = sys.stderr, total: int | None = None) -> Summary:
    """Classify every file in ``inputs`` (files and folders); rows go to ``out`` (atomically) or to ``stdout``.

    ``progress``: seconds between progress lines on ``stderr`` (None: none; a single file never shows any).
    ``total``: what :func:`check_run` returned, when the caller checked the run already (the CLI does, before
    the model loads), so the folders are not walked once more.
    """
    total = check_run(inputs, recursive, out) if total is None else total
    summary = Summary(clf.operating_point, clf.threshold, clf.class_names)  # type: ignore[arg-type]
    meter = Progress(total, stderr if progress is not None and total > 1 else None, progress or 0.0)
    started = time.monotonic()

    def run(writer: RowWriter | _Table) -> None:
        for entry in iter_entries(inputs, recursive, out):  # the entries check_run counted: the output is none of them
            row = classify(clf, entry)
            summary.add(row)
            writer.write(row)
            meter.update(summary.files, summary.failed)
        summary.seconds = time.monotonic() - started
        meter.update(summary.files, summary.failed, final=True)
        writer.close()

    if out is None:
        run(_Table(stdout, clf) if kind == "table" else RowWriter(kind, stdout))
    else:
        with atomic_file(out) as handle:
            run(RowWriter(kind, handle))
    return summary


class _Table:
    """The human view: one aligned line per file, printed as it is classified."""

    def __init__(self, stream: TextIO, clf: Classifier) -> None:
        self.stream = stream
        stream.write(f"{'probability':>11}  {'label':<10}  image  (at {clf.operating_point}, p >= {clf.threshold:.4f})\n")

    def write(self, row: dict[str, Any]) -> None:
        if row["status"] == "ok":
            self.stream.write(f"{row['probability']:11.4f}  {row['label']:<10}  {row['path']}\n")
        else:
            said = row["error"] if row["error"].startswith(row["path"]) else f"{row['path']}: {row['error']}"
            self.stream.write(f"{'-':>11}  {row['status']:<10}  {said}\n")

    def close(self) -> None:
        self.stream.flush()

