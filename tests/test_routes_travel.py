"""The OSRM-compatible travel source, against an HTTP server on loopback that answers the table
service's documented shape (https://project-osrm.org/docs/v5.24.0/api/#table-service): the
request it makes, the matrix it reads, and a clear error when the service cannot answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from collection.planning import Place
from collection.travel import OsrmTable, StraightLine, travel_source
from core.errors import SinkUnavailable
from core.settings import RouteSettings

A, B = Place(29.55, 103.76), Place(29.56, 103.77)


class TableService:
    """Answers every GET with `answer` (status, body) and keeps the paths asked."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.paths: list[str] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.paths.append(self.path)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def table() -> Iterator[TableService]:
    service = TableService(
        200,
        {"code": "Ok", "durations": [[0, 310.5], [295, 0]], "distances": [[0, 2100], [None, 0]]},
    )
    yield service
    service.close()


def test_the_table_service_is_asked_once_for_every_pair(table: TableService) -> None:
    matrix = OsrmTable(table.url + "/").matrix([A, B])
    (path,) = table.paths
    assert path == (
        "/table/v1/driving/103.760000,29.550000;103.770000,29.560000"
        "?annotations=duration%2Cdistance"
    )
    assert matrix.leg(A, B).seconds == 310.5 and matrix.leg(A, B).metres == 2100
    assert matrix.leg(B, A).seconds == 295
    assert matrix.leg(B, A).metres > 86_400  # no route: unreachable, never 0


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (200, {"code": "InvalidQuery", "message": "x"}, "'InvalidQuery' answer"),
        (503, {"code": "Busy"}, "503"),
    ],
)
def test_a_service_that_cannot_answer_is_a_clear_error(
    status: int, body: dict[str, Any], said: str
) -> None:
    service = TableService(status, body)
    try:
        with pytest.raises(SinkUnavailable, match=f"travel times from {service.url}.*{said}"):
            OsrmTable(service.url).matrix([A, B])
    finally:
        service.close()


def test_the_url_setting_chooses_the_source() -> None:
    assert isinstance(travel_source(RouteSettings()), StraightLine)
    chosen = travel_source(RouteSettings(osrm_url="http://127.0.0.1:5000"))
    assert chosen == OsrmTable("http://127.0.0.1:5000")
