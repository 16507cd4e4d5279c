"""The console's map over HTTP against the real stack: each user's sites only, each coloured by
its state (an alert, offline, a bin over its threshold, normal, no readings), the tile layer
only when configured, and ECharts served from binwatch, gzipped."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from alerts import store as alert_store
from alerts.rules import AlertType, Finding
from api.console.map import site_state
from devices.models import Bin, Site
from tests.test_console import SITE_A, Stack, _login, add_city_admin, stack  # noqa: F401

pytestmark = pytest.mark.registry_backends(
    "sqlite", reason="the map reads the registry through list_sites/list_alerts, tested on both"
)


def _points(page: str) -> list[dict[str, Any]]:
    found = re.search(r'<script type="application/json" id="map-points">(.*?)</script>', page)
    assert found, page
    points: list[dict[str, Any]] = json.loads(found.group(1))
    return points


def _states(page: str) -> dict[str, str]:
    return {point["id"]: point["state"] for point in _points(page)}


def test_a_manager_sees_their_site_and_the_admin_every_site_coloured_by_state(
    stack: Stack,  # noqa: F811
) -> None:
    with stack.session() as session:
        threshold = session.get_one(Bin, stack.bin_a).threshold_pct
        sites = set(session.scalars(select(Site.id)))
        add_city_admin(session)
    expected = "full" if threshold <= 73.4 else "ok"  # the stack's one reading, at bin_a
    with stack.client() as client:
        _login(client)
        page = client.get("/console/map")
        assert page.status_code == 200
        assert '<a href="/console/map">地图</a>' in page.text  # the nav link, in Chinese
        assert "/console/static/echarts.min.js" in page.text
        assert _states(page.text) == {SITE_A: expected}
        (point,) = _points(page.text)
        assert point["name"] == "嘉州水岸小区" and point["label"] in ("有桶已满", "正常")
        # Web Mercator tile space: Leshan at 29.55° N 103.77° E.
        assert point["x"] == pytest.approx((103.7656 + 180) / 360)
        assert 0.4 < point["y"] < 0.5
        live = client.get("/console/map/live")
        assert live.text.startswith('<div id="map-live"') and "<html" not in live.text
        assert _states(live.text) == {SITE_A: expected}
    with stack.client() as client:
        _login(client, username="city.admin")
        states = _states(client.get("/console/map").text)
    assert set(states) == sites
    assert states[SITE_A] == expected
    assert {state for site, state in states.items() if site != SITE_A} == {"no_data"}


def test_an_alert_and_then_offline_alone_colour_the_site(stack: Stack) -> None:  # noqa: F811
    now = datetime.now(UTC)
    with stack.session() as session:
        tilt = alert_store.raise_alert(
            session, stack.bin_a, Finding(AlertType.tilt, True), now=now, prefix="t"
        )
        alert_store.raise_alert(
            session, stack.bin_a, Finding(AlertType.offline, True), now=now, prefix="t"
        )
        session.commit()
        assert tilt is not None
    with stack.client() as client:
        _login(client)
        page = client.get("/console/map/live").text
        assert _states(page) == {SITE_A: "alert"}
        assert "活动告警：2" in page
        with stack.session() as session:
            alert_store.clear(
                session, session.merge(tilt), now=now, note="stood up again", prefix="t"
            )
            session.commit()
        assert _states(client.get("/console/map/live").text) == {SITE_A: "offline"}


def test_the_tile_layer_is_there_only_when_configured(stack: Stack) -> None:  # noqa: F811
    with stack.client() as client:
        _login(client)
        plain = client.get("/console/map").text
    assert 'data-tile-url=""' in plain and "attribution" not in plain
    stack.settings = stack.settings.model_copy(
        update={
            "console_tile_url": "https://tiles.example.org/{z}/{x}/{y}.png?style=a&lang=zh",
            "console_tile_attribution": "© 地图数据提供方",
        }
    )
    with stack.client() as client:
        _login(client)
        tiled = client.get("/console/map").text
    assert 'data-tile-url="https://tiles.example.org/{z}/{x}/{y}.png?style=a&amp;lang=zh"' in tiled
    assert "© 地图数据提供方" in tiled


def test_echarts_is_served_by_binwatch_gzipped(stack: Stack) -> None:  # noqa: F811
    with stack.client() as client:
        plain = client.get("/console/static/echarts.min.js", headers={"Accept-Encoding": ""})
        zipped = client.get("/console/static/echarts.min.js", headers={"Accept-Encoding": "gzip"})
    assert plain.status_code == zipped.status_code == 200
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # decompressed by the client
    assert zipped.num_bytes_downloaded < len(plain.content) / 2
    assert b"Apache Software Foundation" in plain.content[:600]


@pytest.mark.parametrize(
    ("alerts", "fills", "state"),
    [
        (["offline", "tilt"], [(90.0, 85.0)], "alert"),
        (["offline"], [(90.0, 85.0)], "offline"),
        ([], [(85.0, 85.0), (None, 75.0)], "full"),
        ([], [(84.9, 85.0), (None, 75.0)], "ok"),
        ([], [(None, 85.0)], "no_data"),
        ([], [], "no_data"),
    ],
)
def test_a_sites_state_is_the_worst_of_its_bins(
    alerts: list[str], fills: list[tuple[float | None, float]], state: str
) -> None:
    assert site_state(alert_types=alerts, fills=fills) == state
