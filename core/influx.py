"""The InfluxDB boundary: line protocol to `/write`, InfluxQL to `/query` (the v1 HTTP API every
InfluxDB generation serves; DESIGN.md says why not Flux). httpx errors become binwatch's own
`SinkUnavailable` / `SinkRejected` here and nowhere else."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from core.errors import SinkRejected, SinkUnavailable
from core.settings import Settings

# A 5,000-point write takes ~28 ms p50 and under 100 ms p99 here (FACTS.md); anything near this
# long means the server is in trouble and the caller's retry loop should take over.
WRITE_TIMEOUT_S = 30.0
QUERY_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a query result; `rows()` pairs each value row with the column names."""

    name: str
    columns: list[str]
    values: list[list[Any]]
    tags: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.values]


class InfluxClient:
    """A thread-safe client for one database (httpx.Client pools connections)."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        query_timeout_s: float = QUERY_TIMEOUT_S,
    ) -> None:
        self.database = settings.influx.db
        self.query_timeout_s = query_timeout_s
        headers: dict[str, str] = {}
        self._auth_params: dict[str, str] = {}
        if settings.influx.token is not None:
            headers["Authorization"] = f"Token {settings.influx.token.get_secret_value()}"
        elif settings.influx.username:
            password = (
                settings.influx.password.get_secret_value() if settings.influx.password else ""
            )
            self._auth_params = {"u": settings.influx.username, "p": password}
        self._http = httpx.Client(
            base_url=settings.influx.url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(query_timeout_s, connect=5.0),
        )

    def close(self) -> None:
        self._http.close()

    def ping(self, *, timeout: float | None = None) -> None:
        self._send("GET", "/ping", expected=204, timeout=timeout or self.query_timeout_s)

    def write(self, lines: list[str], *, retention_policy: str | None = None) -> None:
        """Write line-protocol lines (timestamps in ms). A 400 (e.g. a field-type conflict) is a
        *partial* write: InfluxDB stored the other points and names the bad field in the error."""
        params = {"db": self.database, "precision": "ms", **self._auth_params}
        if retention_policy:
            params["rp"] = retention_policy
        self._send(
            "POST",
            "/write",
            params=params,
            content="\n".join(lines).encode(),
            expected=204,
            timeout=WRITE_TIMEOUT_S,
        )

    def query(
        self,
        statement: str,
        *,
        params: dict[str, Any] | None = None,
        database: bool = True,
        timeout: float | None = None,
    ) -> list[Series]:
        """Run InfluxQL with bound parameters (`$name`), so no value is ever spliced into the
        query text. Times come back as epoch milliseconds."""
        form: dict[str, str] = {"q": statement, "epoch": "ms", **self._auth_params}
        if database:
            form["db"] = self.database
        if params:
            form["params"] = json.dumps(params)
        response = self._send(
            "POST", "/query", data=form, expected=200, timeout=timeout or self.query_timeout_s
        )
        series: list[Series] = []
        for result in response.json().get("results", []):
            if "error" in result:
                raise SinkRejected(result["error"], status=400)
            for item in result.get("series", []):
                series.append(
                    Series(
                        item.get("name", ""),
                        item["columns"],
                        item.get("values", []),
                        item.get("tags") or {},
                    )
                )
        return series

    def ensure_database(self, raw_retention: str) -> None:
        """Create the database and its `raw` default retention policy, or bring the policy's
        duration in line with the settings; safe to run at every start, from every worker."""
        db = quote_ident(self.database)
        self.query(f"CREATE DATABASE {db}", database=False)
        existing = {
            row["name"]: row
            for series in self.query(f"SHOW RETENTION POLICIES ON {db}", database=False)
            for row in series.rows()
        }
        verb = "ALTER" if "raw" in existing else "CREATE"
        replication = "" if verb == "ALTER" else " REPLICATION 1"
        self.query(
            f"{verb} RETENTION POLICY raw ON {db} DURATION {raw_retention}{replication} DEFAULT",
            database=False,
        )

    def _send(self, method: str, path: str, *, expected: int, **kwargs: Any) -> httpx.Response:
        """The answer, read whole. Its stream is replaced because httpx binds a response and its
        stream to each other: left so, every answer (and through its request, the body sent:
        ~0.5 MB per write of an ingest batch) is freed only by the cyclic collector, which an
        ingest worker runs rarely (binwatch/commands/ingest.py, settle_gc): RSS then rose by
        tens of MiB between its passes. Without the cycle, reference counting frees it at once."""
        try:
            response = self._http.request(method, path, **kwargs)
            response.stream = httpx.ByteStream(b"")  # read already: the content is kept
        except httpx.HTTPError as exc:
            raise SinkUnavailable(f"InfluxDB at {self._http.base_url} unreachable: {exc}") from exc
        if response.status_code == expected:
            return response
        message = _error_message(response)
        if response.status_code >= 500:
            raise SinkUnavailable(f"InfluxDB answered {response.status_code}: {message}")
        raise SinkRejected(message, status=response.status_code)


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text.strip() or response.reason_phrase


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes, with quotes and backslashes escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
