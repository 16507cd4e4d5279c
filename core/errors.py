"""binwatch's own exceptions. Third-party errors are translated into these in the one module that
calls the library (`raise … from`), and the API maps them to status codes.

    BinwatchError
    ├── ConfigError            settings that cannot work (bad URL, unreadable file)
    ├── FleetError             a fleet file rejected whole, with line and reason
    ├── NotFound               an id the registry does not know            → 404
    ├── InvalidRequest         a request that cannot be answered as asked  → 422
    ├── NotAllowed             an action outside the caller's role or scope → 403
    ├── StoreUnavailable       the photo store (folder, S3 bucket) cannot keep or give now → 503
    └── SinkError              InfluxDB trouble
        ├── SinkUnavailable    not reachable or 5xx: retry later           → 503
        └── SinkRejected       4xx: the data or query itself is wrong
"""

from __future__ import annotations

from collections.abc import Collection


class BinwatchError(Exception):
    """Base of every error binwatch raises on purpose."""


class ConfigError(BinwatchError):
    pass


class FleetError(BinwatchError):
    pass


class NotFound(BinwatchError):
    pass


class InvalidRequest(BinwatchError):
    pass


class NotAllowed(BinwatchError):
    pass


class StoreUnavailable(BinwatchError):
    """A photo could not be written or read for the store's reason (disk full, bucket missing,
    endpoint down), never the photo's: the same request may work later."""


class SinkError(BinwatchError):
    pass


class SinkUnavailable(SinkError):
    pass


class SinkRejected(SinkError):
    """InfluxDB refused the request; `message` is InfluxDB's own explanation."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def no_such(kind: str, ids: Collection[str]) -> str:
    """The message for ids the registry does not know, each quoted, never a Python list:
    `no site with id 'x'`, `no sites with ids 'x', 'y'`."""
    names = ", ".join(repr(i) for i in sorted(ids))
    return f"no {kind} with id {names}" if len(ids) == 1 else f"no {kind}s with ids {names}"


def metrics_port_error(port: int, setting: str, exc: OSError) -> ConfigError:
    """A service's /metrics port it cannot listen on (another process has it): the setting to
    change, instead of the socket's traceback (ingest then hung, its threads still up)."""
    return ConfigError(
        f"cannot serve /metrics on 127.0.0.1:{port} ({exc.strerror or exc}): set {setting} to a "
        "free port, or to 0 for no /metrics"
    )
