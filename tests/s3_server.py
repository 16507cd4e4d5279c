"""An S3-compatible server for the photo store's tests: moto's standalone server (moto[server],
a dev dependency) run as `python -m moto.server`, a real HTTP server in its own process on a
free loopback port, so boto3 in core/objects.py talks HTTP to it exactly as to a real bucket;
nothing mocks boto3 in-process. MinIO, the usual choice, is AGPL and not used here. A missing
moto fails the tests that need it (the process exits at start), it skips nothing."""

from __future__ import annotations

import os
import sys
from typing import Any

import boto3
import httpx

from binwatch.servers import _ChildServer

REGION = "us-east-1"
# moto accepts any key pair; the store is given one as a deployment would be.
ACCESS_KEY, SECRET_KEY = "binwatch-test", "binwatch-test-secret"


class S3Server(_ChildServer):
    name = "moto-s3"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> tuple[list[str], dict[str, str]]:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        return command, dict(os.environ)

    def _ready(self) -> bool:
        try:
            return httpx.get(self.url, timeout=1).status_code == 200  # ListBuckets
        except httpx.HTTPError:
            return False


def s3_client(url: str) -> Any:
    """A plain boto3 client of the server, to make buckets and look into them."""
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
