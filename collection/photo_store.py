"""Where the crews' photos are kept, chosen by `BINWATCH_ROUTE_PHOTO_STORE`: a folder on disk
(the default, `BINWATCH_ROUTE_PHOTO_DIR`) or an S3-compatible bucket (`BINWATCH_ROUTE_PHOTO_S3_*`,
core/objects.py). Both are a PhotoStore that puts a photo under its key and gets it back, so the
crew's taps (console and API) write through one and the history's photo page reads through it
without knowing which. Either answers StoreUnavailable when it cannot do its part now, and
NotFound for a key it does not hold."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

from core.errors import NotFound, StoreUnavailable
from core.objects import S3Bucket
from core.settings import RouteSettings


class PhotoStore(Protocol):
    def put(self, key: str, data: bytes, *, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...


class DiskStore:
    """Photos as files under `folder`, the key their path below it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        """Write atomically: a half-written file never has the final name, and each writer has
        its own partial file, so two uploads of one photo at once both succeed."""
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, partial = tempfile.mkstemp(dir=target.parent, suffix=".part")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                os.replace(partial, target)
            except BaseException:
                Path(partial).unlink(missing_ok=True)
                raise
        except OSError as exc:  # disk full, folder not writable
            raise StoreUnavailable(f"photo folder {self.folder}: {exc.strerror}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"no photo {key!r} in {self.folder}") from None
        except OSError as exc:
            raise StoreUnavailable(f"photo folder {self.folder}: {exc.strerror}") from exc

    def _path(self, key: str) -> Path:
        """The file of `key`, which must lie inside the folder (keys come from the registry,
        and a tampered row must not read /etc/passwd)."""
        folder = self.folder.resolve()
        path = (folder / key).resolve()
        if not path.is_relative_to(folder) or path == folder:
            raise NotFound(f"no photo {key!r} in {self.folder}")
        return path


def photo_store(settings: RouteSettings) -> PhotoStore:
    """The store the settings choose; nothing is connected until the first photo."""
    if settings.photo_store == "disk":
        return DiskStore(Path(settings.photo_dir))
    secret = settings.photo_s3_secret_key
    return S3Bucket(
        bucket=settings.photo_s3_bucket or "",  # required with s3: the settings check it
        endpoint_url=settings.photo_s3_url,
        region=settings.photo_s3_region,
        access_key=settings.photo_s3_access_key,
        secret_key=secret.get_secret_value() if secret is not None else None,
    )
