"""Rebuilding a stage's config dataclass from its saved JSON, refusing keys it does not know.

A saved config that carries an unknown key was written by another version or edited by hand;
silently dropping the key would rebuild a different config than the one that made the artifact.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def config_from_dict(cls: type[T], raw: dict[str, Any], label: str) -> T:
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{label} config: unknown keys {unknown}; expected only {sorted(known)}")
    return cls(**raw)
