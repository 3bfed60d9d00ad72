"""Data that ships inside the package, addressed by name wherever the toolkit takes ``--data``.

A fresh install (a wheel on a Pi, a clone without anything beside it) can train, export,
evaluate and test on real chest X-rays without downloading anything. Names are exact: a
value that is a bundled name means the bundled file, and a local path that happens to have the
same name is written with a directory part (``./pneumoniamnist``). No fuzzy matching, so a typo
is an error that lists the names, not a silent substitution.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .fileio import sha256_file

DATA_DIR = Path(__file__).resolve().with_name("data")


@dataclass(frozen=True)
class BundledDataset:
    """One shipped file with what a user must know to use and cite it."""

    name: str
    filename: str
    sha256: str
    description: str
    licence: str
    attribution: str

    @property
    def path(self) -> Path:
        return DATA_DIR / self.filename


PNEUMONIAMNIST = BundledDataset(
    name="pneumoniamnist",
    filename="pneumoniamnist_balanced.npz",
    sha256="f36c2b3e34de9d60c5c734118bc6daff281eaf76b67a57d26ad958da948274b0",
    description="class-balanced PneumoniaMNIST: 28x28 grayscale chest X-rays, label 1 = pneumonia; "
                "train 2428, val 270, test 468",
    licence="CC BY 4.0",
    attribution="MedMNIST v2 (Yang et al., Scientific Data 2023), derived from Kermany et al., Cell 2018; "
                "balanced subset from aksufatih/snn-medmnist",
)

BUNDLED: dict[str, BundledDataset] = {PNEUMONIAMNIST.name: PNEUMONIAMNIST}


def is_bundled_name(spec: object) -> bool:
    """True for a plain string naming a bundled dataset (a ``Path`` is always a path)."""
    return isinstance(spec, str) and spec in BUNDLED


def bundled_path(name: str) -> Path:
    """The installed file for ``name``, checked against its sha256 (a damaged install is refused)."""
    entry = BUNDLED.get(name)
    if entry is None:
        raise DataError(f"{name}: not a bundled dataset; expected one of {', '.join(sorted(BUNDLED))}")
    path = entry.path
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise DataError(f"{path}: the bundled dataset {name!r} cannot be read ({exc.strerror}); reinstall inception-edge") from None
    if actual != entry.sha256:
        raise DataError(f"{path}: sha256 {actual[:12]}... differs from the bundled dataset's {entry.sha256[:12]}...; "
                        "the installed copy is damaged, reinstall inception-edge")
    return path
