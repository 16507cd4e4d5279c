"""Proof of service: the photo a crew may add to a tap (issue 16). What a photo is comes from
its first bytes (JPEG's and PNG's signatures), never from its name or the browser's content
type, and its size is capped (`BINWATCH_ROUTE_PHOTO_MAX_KB`). Accepted photos are kept in the
photo store (collection/photo_store.py: a folder or an S3 bucket) under one prefix per local
day, named by the tap's id (the phone's own UUID, checked to be one: nothing the client sends
becomes a key otherwise) and by a digest of the photo, so that two different photos of one tap
sent at once never share a key: the one the tap keeps is exactly the one stored under it."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Final
from uuid import UUID

from collection.photo_store import PhotoStore
from core.errors import InvalidRequest

# The signatures: JPEG's SOI marker and the start of its first segment marker (ISO/IEC 10918-1
# B.1.1.3), PNG's eight-byte signature (RFC 2083, 3.1).
_SIGNATURES: Final = {b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png"}
MEDIA_TYPES: Final = {"jpg": "image/jpeg", "png": "image/png"}
"""A kept photo's media type by its key's extension, as it is stored and served."""


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


def keep_photo(store: PhotoStore, data: bytes, *, tap_id: UUID, day: date, max_bytes: int) -> str:
    """Check the photo and put it in the store; its key there
    (`YYYY-MM-DD/<tap id>-<16 hex digits of its SHA-256>.png`), as the tap keeps it. PhotoRejected for a photo that is not acceptable, StoreUnavailable when
    the store cannot take it now."""
    kind = photo_kind(data, max_bytes=max_bytes)
    digest = hashlib.sha256(data).hexdigest()[:16]
    key = f"{day.isoformat()}/{tap_id}-{digest}.{kind}"
    store.put(key, data, content_type=MEDIA_TYPES[kind])
    return key
