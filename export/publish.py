"""Putting an artifact in place: stage, verify, then rename, so a kill never leaves half a model.

Each artifact is written to a hidden temporary file in the destination directory, verified
there, and only then renamed over the destination (``os.replace``, atomic on one file system).
Its sidecar ``NAME.json`` (checksum, metadata, config, verification report) follows the same
way. An artifact that drifts too far is not published: its report goes to
``NAME.rejected.json`` and the previous artifact, if any, stays untouched.

An artifact and its sidecar are two files, so no rename replaces both at once. The order makes
every intermediate state usable: the old sidecar goes first, then the new artifact replaces the
old, then the new sidecar is written. A kill between steps leaves the old pair, the old artifact
alone, or the new artifact alone; each file verifies itself (``runtime.integrity``), and a file
without a sidecar loads. Never a new artifact beside an old checksum, which would be refused as
corrupt.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from runtime.artifact_metadata import read_artifact_document
from runtime.errors import DriftError, OutputError
from runtime.fileio import FILE_MODE, atomic_write_json
from runtime.integrity import verify_content

SIDECAR_SUFFIX = ".json"
REJECTED_SUFFIX = ".rejected.json"


def sidecar_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + SIDECAR_SUFFIX)


def rejected_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + REJECTED_SUFFIX)


def check_destination(out_dir: Path, names: list[str], overwrite: bool) -> None:
    """Fail before any conversion if an artifact exists (without --overwrite) or ``out_dir`` is not writable."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a directory; expected a directory for the artifacts")
    probe = out_dir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{out_dir}: cannot write there ({probe} is not a writable directory)")
    for name in names:
        if (out_dir / name).exists() and not overwrite:
            raise OutputError(f"{out_dir / name}: already exists; pass --overwrite to replace it")


@contextlib.contextmanager
def staged_file(destination: Path) -> Iterator[Path]:
    """A hidden temporary path beside ``destination`` (same suffix, so loaders accept it), removed on exit."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.stem}.", suffix=f".tmp{destination.suffix}")
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    path = Path(tmp)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def publish(staged: Path, destination: Path, sidecar: dict[str, Any], failures: Sequence[str] = ()) -> None:
    """Rename a verified artifact into place and write its sidecar (JSON); refuse one with verification ``failures``."""
    if failures:
        atomic_write_json(rejected_path(destination), sidecar)
        raise DriftError(f"{destination.name}: drift beyond --max-drift, not written ({len(failures)} failures: "
                         f"{'; '.join(failures[:3])}{'; ...' if len(failures) > 3 else ''}); report: {rejected_path(destination)}")
    data, document = read_artifact_document(staged)
    if not verify_content(data, document, str(staged)):
        raise RuntimeError(f"{staged}: exported without its content digest")  # a toolkit bug: every export seals
    with open(staged, "rb") as handle:
        os.fsync(handle.fileno())
    with contextlib.suppress(FileNotFoundError):
        sidecar_path(destination).unlink()
    os.replace(staged, destination)
    atomic_write_json(sidecar_path(destination), sidecar)
    with contextlib.suppress(FileNotFoundError):
        rejected_path(destination).unlink()
