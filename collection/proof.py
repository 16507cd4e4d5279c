"""Proof of service: the photo a crew may add to a tap (issue 16). What a photo is comes from
its first bytes (JPEG's and PNG's signatures), never from its name or the browser's content
type, and its size is capped (`BINWATCH_ROUTE_PHOTO_MAX_KB`). Accepted photos are written to
disk under `BINWATCH_ROUTE_PHOTO_DIR`, one folder per local day, named by the tap's id (the
phone's own UUID, checked to be one: nothing the client sends becomes a path otherwise).
An S3-compatible store is not done: docs/collection.md says so."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Final
from uuid import UUID

from core.errors import InvalidRequest

# The signatures: JPEG's SOI marker and the start of its first segment marker (ISO/IEC 10918-1
# B.1.1.3), PNG's eight-byte signature (RFC 2083, 3.1).
_SIGNATURES: Final = {b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png"}


class PhotoRejected(InvalidRequest):
    """A photo that cannot be kept; `code` lets the console say why in the reader's language."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def photo_kind(data: bytes, *, max_bytes: int) -> str:
    """The file extension of an acceptable photo (`jpg`, `png`); PhotoRejected when it is
    empty, too big or neither a JPEG nor a PNG by its content."""
    if not data:
        raise PhotoRejected("the photo is empty", "photo_empty")
    if len(data) > max_bytes:
        raise PhotoRejected(
            f"the photo is {len(data)} bytes, over the limit of {max_bytes}", "photo_too_big"
        )
    for signature, kind in _SIGNATURES.items():
        if data.startswith(signature):
            return kind
    raise PhotoRejected("the photo is neither a JPEG nor a PNG image", "photo_not_image")


def store_photo(folder: Path, *, tap_id: UUID, day: date, data: bytes, kind: str) -> str:
    """Write the photo (atomically: a half-written file never has the final name) and return
    its path under `folder`, as the tap stores it."""
    relative = Path(day.isoformat()) / f"{tap_id}.{kind}"
    target = folder / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    os.replace(partial, target)
    return relative.as_posix()
