"""Rebuilding a stage's config dataclass from its saved JSON, refusing keys it does not know.

A saved config that carries an unknown key was written by another version or edited by hand;
silently dropping the key would rebuild a different config than the one that made the artifact.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError
from .fileio import read_json_object

T = TypeVar("T")


def config_from_dict(cls: type[T], raw: dict[str, Any], label: str) -> T:
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{label} config: unknown keys {unknown}; expected only {sorted(known)}")
    return cls(**raw)


def read_config_json(path: str | Path, label: str) -> dict[str, Any]:
    """A saved config's JSON object, unchecked; its stage's ``from_dict`` rebuilds the config from it."""
    return read_json_object(path, f"JSON {label} config", ConfigError)


def load_config_json(cls: type[T], path: str | Path, label: str) -> T:
    """Read a saved config: a JSON object whose keys are exactly ``cls``'s fields (see :func:`config_from_dict`)."""
    return config_from_dict(cls, read_config_json(path, label), label)
