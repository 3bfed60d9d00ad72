"""Rebuilding a stage's config dataclass from its saved JSON, refusing keys it does not know.

A saved config that carries an unknown key was written by another version or edited by hand;
silently dropping the key would rebuild a different config than the one that made the artifact.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def config_from_dict(cls: type[T], raw: dict[str, Any], label: str) -> T:
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{label} config: unknown keys {unknown}; expected only {sorted(known)}")
    return cls(**raw)


def load_config_json(cls: type[T], path: str | Path, label: str) -> T:
    """Read a saved config: a JSON object whose keys are exactly ``cls``'s fields (see :func:`config_from_dict`)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable JSON {label} config ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return config_from_dict(cls, raw, label)
