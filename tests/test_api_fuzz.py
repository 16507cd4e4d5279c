"""Issue 7's last test: fuzz every operation of the API's own OpenAPI document with schemathesis,
valid inputs and invalid ones, as admin (who sees everything), against the real registry and a
real (empty) InfluxDB database. The rules: no 5xx, ever; every 4xx is JSON with a non-empty
`detail` (docs/api.md, "Errors"). Every failure is collected and reported at the end.

Generation is derandomized (the same cases every run) and bounded per operation, so the test is
repeatable and stays well under a minute."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.core.result import Err

from api.main import create_app
from core.influx import InfluxClient, quote_ident
from core.settings import Settings
from core.telemetry import ensure_rollups
from devices.registry import BinTags
from tests.helpers import ADMIN_HEADERS

MAX_EXAMPLES = 12
"""Cases per operation and generation mode (positive and negative)."""

BASE_URL = "http://testserver"


def _send(client: TestClient, case: Case) -> httpx.Response:
    """Send a generated case through the app's TestClient (so its lifespan is the one running),
    with the admin key on top of whatever headers schemathesis generated."""
    request = case.as_transport_kwargs(base_url=BASE_URL, headers=ADMIN_HEADERS)
    content: bytes | str | None = request.get("data")
    if "json" in request:
        content = json.dumps(request["json"])
    return client.request(
        request["method"],
        request["url"],
        params=request.get("params"),
        headers=request.get("headers"),
        cookies=request.get("cookies") or None,
        content=content,
    )


def _problem(response: httpx.Response) -> str | None:
    """What is wrong with this answer, if anything."""
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:300]}"
    if 400 <= response.status_code < 500:
        try:
            body = response.json()
        except ValueError:
            return f"{response.status_code} without a JSON body: {response.text[:300]!r}"
        if not isinstance(body, dict) or not body.get("detail"):
            return f"{response.status_code} without a detail: {response.text[:300]}"
    return None


def _fuzz(
    client: TestClient,
    operation: APIOperation,
    mode: GenerationMode,
    failures: list[str],
    known: dict[str, Any] | None = None,
) -> int:
    """Send up to MAX_EXAMPLES cases for one operation; add each failure to `failures`.
    Nothing raises inside the Hypothesis test, so it neither stops at nor shrinks the first
    failure: every bad case is reported. With `known`, the path parameters (and a body's
    `bin_id`) are ids that exist, so the cases get past the 404 to the queries behind it.
    Returns how many cases were sent."""
    sent = 0
    path_parameters = {
        name: value for name, value in (known or {}).items() if f"{{{name}}}" in operation.path
    }

    @hypothesis_settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    def run(case: Case) -> None:
        nonlocal sent
        sent += 1
        if known and isinstance(case.body, dict) and "bin_id" in case.body:
            case.body = {**case.body, "bin_id": known["bin_id"]}
        where = f"{mode.value} {case.method} {case.formatted_path}"
        try:
            response = _send(client, case)
        except Exception as exc:  # the app raised: the TestClient re-raises it
            failures.append(f"{where}: raised {exc!r}\n  {case.as_curl_command(ADMIN_HEADERS)}")
            return
        if problem := _problem(response):
            failures.append(f"{where}: {problem}\n  {case.as_curl_command(ADMIN_HEADERS)}")

    try:
        run()
    except Unsatisfiable:
        # Nothing to get wrong: /health takes no parameters, so there is no negative case.
        if mode is GenerationMode.POSITIVE or operation.path != "/health":
            raise
    return sent


def test_fuzzed_requests_never_5xx_and_every_4xx_has_a_detail(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    influx = InfluxClient(settings)
    influx.ensure_database(settings.raw_retention)  # else /health is rightly 503
    ensure_rollups(influx, settings.timezone)
    tags = pilot_bins[min(pilot_bins)]
    failures: list[str] = []
    counts: dict[str, int] = {}
    try:
        app = create_app(settings)
        with TestClient(app, base_url=BASE_URL, headers=ADMIN_HEADERS) as client:
            created = client.post(
                "/api/v1/collections", json={"bin_id": tags.bin, "reason": "fuzz"}
            )
            assert created.status_code == 201, created.text
            known = {
                "site_id": tags.site,
                "bin_id": tags.bin,
                "area_id": tags.community,
                "operator_id": tags.operator,
                "request_id": created.json()["id"],
            }
            schema = schemathesis.openapi.from_dict(app.openapi())
            for result in schema.get_all_operations():
                if isinstance(result, Err):
                    failures.append(f"schemathesis could not read an operation: {result.err()}")
                    continue
                operation = result.ok()
                # Known ids first, while the collection request is still open: the random
                # passes may well hit its id (1) and close it.
                if any(f"{{{name}}}" in operation.path for name in known) or (
                    operation.label == "POST /api/v1/collections"
                ):
                    counts[f"known ids {operation.label}"] = _fuzz(
                        client, operation, GenerationMode.POSITIVE, failures, known
                    )
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    counts[f"{mode.value} {operation.label}"] = _fuzz(
                        client, operation, mode, failures
                    )
    finally:
        influx.query(f"DROP DATABASE {quote_ident(settings.influx.db)}", database=False)
        influx.close()
    assert len(counts) >= 2 * 19, sorted(counts)  # every operation was fuzzed, both ways...
    idle = [name for name, sent in counts.items() if not sent and name != "negative GET /health"]
    assert not idle, f"no cases generated for {idle}"  # ...and got cases
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures)


UNREPRESENTABLE = [
    "NaN", "Infinity", "-Infinity", "1e999", "-1e999", '"\\ud800"', '"a\\udfffb"', '"a\\u0000b"'
]  # fmt: skip
"""JSON texts Python's json module reads but nothing after it can store or echo."""


def _post_bodies(openapi: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every POST route of the document (path ids filled in) with each field of its body."""
    schemas = openapi["components"]["schemas"]
    for path, item in openapi["paths"].items():
        if "post" not in item:
            continue
        url = path
        for parameter in item["post"].get("parameters", []):
            url = url.replace(f"{{{parameter['name']}}}", "1")
        body = item["post"]["requestBody"]["content"]["application/json"]["schema"]
        fields = schemas[body["$ref"].rsplit("/", 1)[1]]["properties"]
        for field in fields:
            yield url, field


def test_unrepresentable_json_in_every_post_body_is_4xx_with_a_detail(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    """NaN, ±Infinity, 1e999 and lone surrogates, as each field of each POST route's body, as
    a whole body and nested: a 4xx with a detail every time (they were 500s, the 422 handler
    failing to echo them)."""
    app = create_app(settings)
    failures: list[str] = []
    with TestClient(app, base_url=BASE_URL, headers=ADMIN_HEADERS) as client:
        targets = list(_post_bodies(app.openapi()))
        assert len({url for url, _ in targets}) >= 5, targets
        tries = 0
        for url, field in targets:
            for value in UNREPRESENTABLE:
                for text in (
                    f'{{"{field}": {value}}}',
                    value,
                    f'{{"{field}": [{{"x": {value}}}]}}',
                ):
                    tries += 1
                    answer = client.post(
                        url, content=text, headers={"Content-Type": "application/json"}
                    )
                    if problem := _problem(answer) or (
                        None if answer.status_code >= 400 else f"{answer.status_code} accepted"
                    ):
                        failures.append(f"POST {url} {text}: {problem}")
    assert tries >= 5 * 7 * 3
    assert not failures, f"{len(failures)} bad answers of {tries}:\n" + "\n".join(failures)


def test_a_nul_in_a_body_is_a_422_that_says_so_never_a_500(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    """PostgreSQL's text holds no NUL: a valid manual request whose reason held one was a 500
    there (and stored as sent on SQLite)."""
    bin_id = min(pilot_bins)
    with TestClient(create_app(settings), base_url=BASE_URL, headers=ADMIN_HEADERS) as client:
        for body in (
            {"bin_id": bin_id, "reason": "bags\u0000 beside the bin"},
            {"bin_id": bin_id, "reason": "bags beside the bin", "\u0000": 1},
        ):
            answer = client.post("/api/v1/collections", json=body)
            assert answer.status_code == 422, answer.text
            assert "NUL character" in answer.json()["detail"][0]["msg"]
        fine = client.post("/api/v1/collections", json={"bin_id": bin_id, "reason": "bags"})
        assert fine.status_code == 201, fine.text


EDGE_MOMENTS = {
    "date": ["0001-01-01", "9999-12-31"],
    "date-time": ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00",
                  "9999-12-31T23:59:59-12:00"],
}  # fmt: skip
"""The first and last moments a date or time can hold: arithmetic past them (the day after,
a window around them, a shift into the city's zone) must end in a 4xx, never a 500."""


def _formats(schema: dict[str, Any]) -> set[str]:
    found = {schema["format"]} if "format" in schema else set()
    for option in schema.get("anyOf", []):
        found |= _formats(option)
    return found


def test_dates_at_the_calendars_edges_in_every_query_are_answered_or_4xx_with_a_detail(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    influx = InfluxClient(settings)
    influx.ensure_database(settings.raw_retention)
    ensure_rollups(influx, settings.timezone)
    tags = pilot_bins[min(pilot_bins)]
    known = {
        "site_id": tags.site,
        "bin_id": tags.bin,
        "area_id": tags.community,
        "operator_id": tags.operator,
    }
    failures: list[str] = []
    sent = 0
    try:
        app = create_app(settings)
        with TestClient(app, base_url=BASE_URL, headers=ADMIN_HEADERS) as client:
            for path, item in app.openapi()["paths"].items():
                parameters = item.get("get", {}).get("parameters", [])
                url = path
                for parameter in parameters:
                    if parameter["in"] == "path":
                        url = url.replace(
                            f"{{{parameter['name']}}}", known.get(parameter["name"], "1")
                        )
                for parameter in parameters:
                    if parameter["in"] != "query":
                        continue
                    for fmt in _formats(parameter["schema"]) & EDGE_MOMENTS.keys():
                        for value in EDGE_MOMENTS[fmt]:
                            sent += 1
                            response = client.get(url, params={parameter["name"]: value})
                            if problem := _problem(response):
                                failures.append(f"GET {url}?{parameter['name']}={value}: {problem}")
    finally:
        influx.query(f"DROP DATABASE {quote_ident(settings.influx.db)}", database=False)
        influx.close()
    assert sent >= 10, sent  # the document has date and time parameters, and they were sent
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures)
