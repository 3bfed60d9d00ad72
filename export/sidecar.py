"""The sidecar ``NAME.json`` beside every exported file (``NAME.rejected.json`` when the gate refused it).

It holds the artifact's checksum and size, the metadata embedded in it, the config that made it
and the verification report, typed, plus the format's own records (``sections``: the per-layer
int8 errors, the fallback search, convert time, kernel inventory, the fp32 numerical check),
which are reports for people and stay JSON objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import ModelFileError
from runtime.fileio import read_json_object
from runtime.model_metadata import ArtifactMetadata

from .config import ExportConfig, config_of_kind
from .report import VerificationReport

_TYPED = ("artifact", "sha256", "bytes", "metadata", "config", "verification")


@dataclass(frozen=True)
class Sidecar:
    artifact: str  # the file's name
    sha256: str
    bytes: int
    metadata: ArtifactMetadata
    config: ExportConfig
    verification: VerificationReport
    sections: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "sha256": self.sha256, "bytes": self.bytes, "metadata": self.metadata.to_dict(),
                "config": {"kind": self.config.kind, **self.config.to_dict()}, "verification": self.verification.to_dict(),
                **self.sections}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str) -> Sidecar:
        try:
            return cls(str(raw["artifact"]), str(raw["sha256"]), int(raw["bytes"]),
                       ArtifactMetadata.from_dict(raw["metadata"], source), config_of_kind(raw["config"]),
                       VerificationReport.from_dict(raw["verification"]), {k: v for k, v in raw.items() if k not in _TYPED})
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{source}: not a sidecar written by the export ({type(exc).__name__}: {exc})") from None

    @classmethod
    def load(cls, path: str | Path) -> Sidecar:
        """Read ``NAME.json`` (or ``NAME.rejected.json``); :class:`ModelFileError` names the file when it is not one."""
        return cls.from_dict(read_json_object(path, "sidecar written by the export", ModelFileError), str(path))
