"""Checksums and atomic writes.

A run killed at any moment must leave either the previous file (or directory) or none at the
destination, never a partial one: everything is written to a temporary sibling, flushed, and
renamed into place (``os.replace`` is atomic within one file system).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InceptionEdgeError, OutputError

_CHUNK = 1 << 20


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# What open() and mkdir() would give (mkstemp's 0o600 and mkdtemp's 0o700 would hide outputs from other users).
FILE_MODE = 0o666 & ~_umask()
DIR_MODE = 0o777 & ~_umask()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks so large files do not load into memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(root: str | os.PathLike[str]) -> str:
    """One sha256 over every file below ``root`` (relative paths and contents, sorted).

    A SavedModel is a directory; this gives it a single, order-independent fingerprint.
    """
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(sha256_file(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling and a rename."""
    with atomic_file(path, text=False) as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], text: bool = True) -> Iterator[Any]:
    """A handle on a temporary sibling of ``path``, renamed into place only if the block succeeds.

    Also for outputs written piece by piece (``runtime predict --out`` writes a row per file): memory
    stays flat, and a run that fails or is killed leaves the previous file (or none), never a partial one.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{path.parent}: cannot write here ({exc.strerror}); expected a writable directory") from exc
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w" if text else "wb", **({"encoding": "utf-8", "newline": ""} if text else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON with sorted keys and a trailing newline, so diffs of cards stay readable."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json_object(path: str | os.PathLike[str], what: str, error: type[InceptionEdgeError]) -> dict[str, Any]:
    """The JSON object in ``path``; ``error`` (one line naming the file and ``what`` was expected) when it cannot be read,
    is not JSON or is not an object."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise error(f"{path}: not a readable {what} ({exc})") from None
    if not isinstance(raw, dict):
        raise error(f"{path}: not a {what} (expected a JSON object)")
    return raw


def check_output_dir(out: str | os.PathLike[str], overwrite: bool) -> Path:
    """Fail early, before any expensive work, if ``out`` cannot become the result directory."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"{out}: exists and is not a directory; expected a new or empty directory")
        if any(out.iterdir()) and not overwrite:
            raise OutputError(f"{out}: exists and is not empty; pass --overwrite to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{out}: cannot create it, {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: cannot create it, {probe} is not writable")
    return out


@contextlib.contextmanager
def staged_output_dir(out: str | os.PathLike[str], overwrite: bool) -> Iterator[Path]:
    """Yield a temporary directory beside ``out``; publish it as ``out`` only on success.

    On an exception (or a kill) the destination keeps its previous contents; only a hidden
    ``.NAME.tmp-*`` sibling may be left behind after a SIGKILL, never a half-written ``out``.
    """
    out = check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    os.chmod(stage, DIR_MODE)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.rmdir(old)
        os.replace(out, old)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
