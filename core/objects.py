"""An S3-compatible bucket (AWS S3, Ceph RGW, SeaweedFS, a cloud's object storage…): put and
get whole objects, and the one module that calls boto3, whose errors become binwatch's here.

boto3 is imported on the first put or get, not with this module: it costs a few hundred
milliseconds and megabytes, which ingest, the simulator and any API process that never keeps a
photo in a bucket should not pay."""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

from core.errors import NotFound, StoreUnavailable

log = logging.getLogger(__name__)

# A crew stands at the bin waiting for the answer: an endpoint that does not accept the
# connection in this long is down, and the phone keeps the tap to send again.
CONNECT_TIMEOUT_S: Final = 5.0
# Long enough to send the largest photo (64 MiB) over a slow uplink between data centres.
READ_TIMEOUT_S: Final = 60.0
# One retry for a dropped connection or a 5xx; more would keep the crew waiting, and the phone
# retries the whole tap anyway.
MAX_ATTEMPTS: Final = 2
_MISSING_KEYS: Final = frozenset({"NoSuchKey", "404"})


class S3Bucket:
    """One bucket at one endpoint. Without keys, boto3 finds credentials its own way (instance
    role, ~/.aws); the client is made once, on first use, and shared by the threads."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.where = f"bucket {bucket!r} at {endpoint_url or 'AWS ' + region}"
        self._options: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
        }
        self._client: Any = None
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        """Store `data` under `key` (S3 makes an object visible only once it is whole)."""
        self._call("put_object", Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        """The object under `key`; NotFound when there is none."""
        answer = self._call("get_object", Key=key)
        data: bytes = self._read(answer["Body"])
        return data

    def _call(self, operation: str, **arguments: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._s3(), operation)(Bucket=self.bucket, **arguments)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if operation == "get_object" and code in _MISSING_KEYS:
                raise NotFound(f"no object {arguments['Key']!r} in {self.where}") from exc
            log.error("S3 %s on %s: %s %s", operation, self.where, code, error.get("Message"))
            raise StoreUnavailable(f"{self.where} refused {operation}: {code}") from exc
        except BotoCoreError as exc:  # not reachable, timed out, no credentials
            log.error("S3 %s on %s: %s", operation, self.where, exc)
            raise StoreUnavailable(f"{self.where} is not reachable: {exc}") from exc

    def _read(self, body: Any) -> Any:
        from botocore.exceptions import BotoCoreError

        try:
            return body.read()
        except BotoCoreError as exc:  # the connection dropped mid-object
            raise StoreUnavailable(f"{self.where}: reading an object failed: {exc}") from exc

    def _s3(self) -> Any:
        with self._lock:  # boto3's clients are thread-safe; making one is not
            if self._client is None:
                import boto3
                from botocore.config import Config

                config = Config(
                    connect_timeout=CONNECT_TIMEOUT_S,
                    read_timeout=READ_TIMEOUT_S,
                    retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
                )
                self._client = boto3.session.Session().client("s3", config=config, **self._options)
            return self._client
