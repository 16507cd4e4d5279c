"""`binwatch grafana push` against a stand-in for Grafana's HTTP API.

No Grafana runs on these machines, so a small HTTP server on loopback answers the few endpoints
`push` uses the way Grafana documents them (folders, datasources by uid, dashboards by uid and
`POST /api/dashboards/db`), stores what it is sent, and records every request. Grafana's own
habits that matter for idempotence are imitated: it returns no secrets (only
`secureJsonFields`), adds defaults of its own to a datasource, and numbers dashboards with `id`
and `version`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from grafana_client import GrafanaApi
from typer.testing import CliRunner

from binwatch.grafana import (
    REPO_DASHBOARDS,
    Change,
    GrafanaError,
    datasource_definition,
    grafana_app,
    load_dashboards,
    push,
)
from binwatch.servers import free_port

TOKEN = "glsa_test-token"
DATASOURCE_UID = "binwatch-influxdb"
INFLUX_VALUES = {
    "BINWATCH_INFLUX_URL": "http://influxdb:8086",
    "BINWATCH_INFLUX_DB": "binwatch",
    "BINWATCH_INFLUX_USERNAME": "grafana",
    "BINWATCH_INFLUX_PASSWORD": "s3cret",
}
DASHBOARD_UIDS = [board["uid"] for board in load_dashboards(REPO_DASHBOARDS)]
WRITES = ("POST", "PUT", "DELETE", "PATCH")


class FakeGrafana(ThreadingHTTPServer):
    """Grafana's state, as far as `push` can see it, and the requests it received."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str]] = []
        self.folders: list[dict[str, Any]] = []
        self.datasources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.next_id = 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path in self.requests if method in WRITES]

    def handle_api(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/api/folders":
            return 200, self.folders
        if method == "POST" and path == "/api/folders":
            folder = {"id": self._id(), "uid": body.get("uid", "generated"), "title": body["title"]}
            self.folders.append(folder)
            return 200, folder
        if match := re.fullmatch(r"/api/datasources/uid/([\w-]+)", path):
            uid = match[1]
            if method == "GET":
                if uid not in self.datasources:
                    return 404, {"message": "Data source not found"}
                return 200, self._datasource_view(self.datasources[uid])
            if method == "PUT":
                self.datasources[uid] = {**self.datasources[uid], **body}
                return 200, {"message": "Datasource updated", "id": self.datasources[uid]["id"]}
        if method == "POST" and path == "/api/datasources":
            if body["uid"] in self.datasources:
                return 409, {"message": "data source with the same uid already exists"}
            stored = {**body, "id": self._id()}
            self.datasources[body["uid"]] = stored
            return 200, {"message": "Datasource added", "id": stored["id"], "name": body["name"]}
        if match := re.fullmatch(r"/api/dashboards/uid/([\w-]+)", path):
            if match[1] not in self.dashboards:
                return 404, {"message": "Dashboard not found"}
            stored = self.dashboards[match[1]]
            return 200, {"dashboard": stored["dashboard"], "meta": {"folderUid": stored["folder"]}}
        if method == "POST" and path == "/api/dashboards/db":
            board = body["dashboard"]
            previous = self.dashboards.get(board["uid"])
            version = previous["dashboard"]["version"] + 1 if previous else 1
            board_id = previous["dashboard"]["id"] if previous else self._id()
            saved = {**board, "id": board_id, "version": version}
            self.dashboards[board["uid"]] = {"dashboard": saved, "folder": body["folderUid"]}
            return 200, {"status": "success", "uid": board["uid"], "version": version}
        return 404, {"message": "Not found"}

    def _datasource_view(self, stored: dict[str, Any]) -> dict[str, Any]:
        view = {key: value for key, value in stored.items() if key != "secureJsonData"}
        view.update(orgId=1, basicAuth=False, database="", readOnly=False)
        view["jsonData"] = {**stored.get("jsonData", {}), "timeout": 30}
        view["secureJsonFields"] = {key: True for key in stored.get("secureJsonData", {})}
        return view

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id


class _Handler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def _serve(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.requests.append((self.command, path))
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            status, answer = 401, {"message": "Unauthorized"}
        else:
            status, answer = self.server.handle_api(self.command, path, body)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads `requests`, not the log."""


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    server = FakeGrafana()
    # A short poll makes shutdown() return at once instead of after the default 0.5 s.
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.02},
        name="fake-grafana",
        daemon=True,
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def push_all(grafana: FakeGrafana, token: str = TOKEN) -> list[Change]:
    return push(
        GrafanaApi.from_url(grafana.url, credential=token),
        folder="binwatch",
        datasource=datasource_definition(REPO_DASHBOARDS, INFLUX_VALUES),
        dashboards=load_dashboards(REPO_DASHBOARDS),
    )


def test_first_push_creates_folder_datasource_and_dashboards_in_order(
    grafana: FakeGrafana,
) -> None:
    changes = push_all(grafana)

    expected = [
        ("GET", "/api/folders"),
        ("POST", "/api/folders"),
        ("GET", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("POST", "/api/datasources"),
    ]
    for uid in DASHBOARD_UIDS:
        expected += [("GET", f"/api/dashboards/uid/{uid}"), ("POST", "/api/dashboards/db")]
    assert grafana.requests == expected
    assert [change.action for change in changes] == ["created"] * (2 + len(DASHBOARD_UIDS))
    [folder] = grafana.folders
    assert folder["title"] == "binwatch"
    assert {stored["folder"] for stored in grafana.dashboards.values()} == {folder["uid"]}
    source = grafana.datasources[DATASOURCE_UID]
    assert source["url"] == "http://influxdb:8086"
    assert source["user"] == "grafana"
    assert source["jsonData"]["dbName"] == "binwatch"
    assert source["secureJsonData"] == {"password": "s3cret"}


def test_second_push_changes_nothing(grafana: FakeGrafana) -> None:
    push_all(grafana)
    grafana.requests.clear()

    changes = push_all(grafana)

    assert grafana.writes() == []
    assert {change.action for change in changes} == {"unchanged"}
    assert len(changes) == 2 + len(DASHBOARD_UIDS)


def test_push_rewrites_only_what_differs(grafana: FakeGrafana) -> None:
    push_all(grafana)
    edited = DASHBOARD_UIDS[0]
    grafana.dashboards[edited]["dashboard"]["title"] = "edited in the UI"
    grafana.datasources[DATASOURCE_UID]["url"] = "http://elsewhere:8086"
    grafana.requests.clear()

    changes = push_all(grafana)

    assert grafana.writes() == [
        ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("POST", "/api/dashboards/db"),
    ]
    updated = {(change.kind, change.name) for change in changes if change.action == "updated"}
    restored = grafana.dashboards[edited]["dashboard"]
    assert updated == {("datasource", "binwatch InfluxDB"), ("dashboard", restored["title"])}
    assert restored["version"] == 2
    assert grafana.datasources[DATASOURCE_UID]["url"] == "http://influxdb:8086"


def test_datasource_is_the_provisioned_one_with_the_given_values() -> None:
    definition = datasource_definition(REPO_DASHBOARDS, INFLUX_VALUES)
    assert definition["url"] == INFLUX_VALUES["BINWATCH_INFLUX_URL"]
    assert definition["jsonData"]["dbName"] == INFLUX_VALUES["BINWATCH_INFLUX_DB"]
    assert definition["jsonData"]["version"] == "InfluxQL"
    assert "isDefault" not in definition
    without_auth = {**INFLUX_VALUES, "BINWATCH_INFLUX_USERNAME": "", "BINWATCH_INFLUX_PASSWORD": ""}
    assert datasource_definition(REPO_DASHBOARDS, without_auth)["secureJsonData"] == {}


def test_refused_token_is_a_grafana_error(grafana: FakeGrafana) -> None:
    with pytest.raises(GrafanaError, match="Unauthorized"):
        push_all(grafana, token="wrong")
    assert grafana.writes() == []


def test_unreachable_grafana_is_a_grafana_error() -> None:
    api = GrafanaApi.from_url(f"http://127.0.0.1:{free_port()}", credential=TOKEN, timeout=5)
    with pytest.raises(GrafanaError, match="unreachable"):
        push(api, folder="binwatch", datasource={}, dashboards=[])


def test_command_prints_what_it_changed(grafana: FakeGrafana) -> None:
    args = ["push", "--url", grafana.url, "--token", TOKEN, "--influx-url", "http://influxdb:8086"]
    args += ["--influx-db", "binwatch", "--influx-user", "grafana", "--influx-password", "pw"]

    first = CliRunner().invoke(grafana_app, args)
    second = CliRunner().invoke(grafana_app, args)
    refused = CliRunner().invoke(grafana_app, [*args[:3], "--token", "wrong", *args[5:]])

    assert first.exit_code == 0, first.output
    assert "created   folder binwatch" in first.output
    assert "created   datasource binwatch InfluxDB" in first.output
    assert f"{2 + len(DASHBOARD_UIDS)} of {2 + len(DASHBOARD_UIDS)} changed" in first.output
    assert second.exit_code == 0, second.output
    assert f"0 of {2 + len(DASHBOARD_UIDS)} changed" in second.output
    assert refused.exit_code == 1
    assert "Unauthorized" in refused.output
