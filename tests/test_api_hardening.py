"""Issue 13's API items that need no server process of the API's own: chunked bodies over the
cap, the existence oracle, the audit trail's actor, the offline docs and the OpenAPI errors."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.testclient import TestClient

from api.main import create_app
from binwatch.settings import Settings
from devices.registry import BinTags
from tests.helpers import ADMIN_HEADERS


def _chunks(total: int) -> Iterator[bytes]:
    for _ in range(total // 1024):
        yield b'{"x": "' + b"y" * 1010 + b'"},'


def test_a_chunked_body_over_the_limit_is_413_on_every_post_route(
    settings: Settings, pilot_bins: dict[str, BinTags]
) -> None:
    app = create_app(settings)
    with TestClient(app, headers=ADMIN_HEADERS) as client:
        posts = [
            path.replace("{alert_id}", "1").replace("{request_id}", "1")
            for path, item in app.openapi()["paths"].items()
            if "post" in item
        ]
        for url in posts:
            answer = client.post(
                url,
                content=_chunks(2 * settings.api_max_body),
                headers={"Content-Type": "application/json"},
            )
            assert "content-length" not in answer.request.headers  # sent chunked
            assert answer.status_code == 413, (url, answer.text)
            assert "limit" in answer.json()["detail"]
