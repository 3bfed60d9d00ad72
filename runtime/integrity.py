"""Artifacts that verify themselves: a digest of the file's own bytes, carried inside the file.

A model copied to a device without its sidecar, or damaged on an SD card, must not run silently.
The export embeds ``content_sha256`` in the toolkit's metadata: the sha256 of the complete file
with those 64 hex digits written as zeros. Verifying needs no framework and no knowledge of the
format: find the one ``"content_sha256": "<digest>"`` in the bytes, zero the digest, hash, compare.
Every byte is covered (weights, graph, the rest of the metadata), so any flip is caught; a flip
inside the digest itself makes it disagree with the hash just as well.

The digest is patched into the serialized bytes in place (same length), so sealing does not
re-serialize the model and cannot change anything the verification ran.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from .errors import ModelFileError

DIGEST_KEY = "content_sha256"
PLACEHOLDER = "0" * 64
FIRST_SEALED_VERSION = 2  # embedded metadata_version from which every export carries the digest
# json.dumps' default separators, which both exporters use for the embedded document
_FIELD = re.compile(rb'"' + DIGEST_KEY.encode() + rb'": "([0-9a-f]{64})"')


def _digest_span(data: bytes, source: str) -> tuple[int, int, str]:
    """(start, end, value) of the one embedded digest field's value."""
    matches = list(_FIELD.finditer(data))
    if len(matches) != 1:
        raise ModelFileError(f"{source}: {len(matches)} embedded {DIGEST_KEY} fields; expected exactly one "
                             "(the file is corrupt or was edited)")
    match = matches[0]
    return match.start(1), match.end(1), match.group(1).decode("ascii")


def _hash_with_zeroed_digest(data: bytes, start: int, end: int) -> str:
    view = memoryview(data)
    digest = hashlib.sha256(view[:start])
    digest.update(PLACEHOLDER.encode("ascii"))
    digest.update(view[end:])
    return digest.hexdigest()


def with_placeholder(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata document with the digest field reserved, ready to embed before :func:`seal`."""
    return {**metadata, DIGEST_KEY: PLACEHOLDER}


def seal(data: bytes, source: str = "model") -> tuple[bytes, str]:
    """Write the file's own digest over the placeholder; returns the sealed bytes and the digest."""
    start, end, value = _digest_span(data, source)
    if value != PLACEHOLDER:
        raise ValueError(f"{source}: already sealed")  # a toolkit bug, not a user mistake
    digest = _hash_with_zeroed_digest(data, start, end)
    return data[:start] + digest.encode("ascii") + data[end:], digest


def verify_content(data: bytes, metadata: dict[str, Any], source: str) -> bool:
    """Check the embedded digest; True if it matched, False if the file predates digests.

    Raises :class:`ModelFileError` naming the file when the bytes are not what was exported.
    """
    if DIGEST_KEY not in metadata:
        version = metadata.get("metadata_version")
        if isinstance(version, int) and version >= FIRST_SEALED_VERSION:
            # one flipped bit in the key's name must not pass the file off as one from before digests
            raise ModelFileError(f"{source}: metadata_version {version} but no embedded {DIGEST_KEY}; the file is corrupt")
        return False
    start, end, value = _digest_span(data, source)
    if value != metadata[DIGEST_KEY]:
        raise ModelFileError(f"{source}: embedded {DIGEST_KEY} is unreadable; the file is corrupt")
    actual = _hash_with_zeroed_digest(data, start, end)
    if actual != value:
        raise ModelFileError(f"{source}: content sha256 {actual[:12]}... does not match the {value[:12]}... embedded "
                             "at export; the file is corrupt or was modified, export or copy it again")
    return True
