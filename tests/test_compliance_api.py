"""Compliance reports on real servers: hand-built readings published over MQTT, stored by the real
ingest, rolled up by compliance.rollups, served by the API. Every expected number is worked out here
by hand from the readings below (docs/metrics.md has the rules).

The window is 12 hours, 12:00Z to 24:00Z of a day three days ago: 20:00 to 08:00 in the city's
time zone (Asia/Shanghai, UTC+8), so local midnight (16:00Z) cuts it into a 4-hour and an 8-hour
local day while the whole window is one UTC day (and one local week and month)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.main import create_app
from api.routes import compliance as compliance_routes
from compliance.rollups import backfill
from core.influx import InfluxClient
from core.settings import Settings
from core.sql import make_engine
from core.telemetry import ensure_rollups
from devices.contract import Reading, TopicKind, Topics
from devices.registry import BinTags
from ingest.service import Ingestor
from security.keys import ApiRole, create_key
from tests.conftest import count_points
from tests.helpers import ADMIN_HEADERS, wait_for
from tests.mqtt_helpers import publish_all
from tests.test_compliance import add_request

pytestmark = pytest.mark.servers


def _day_without_a_week_or_month_start() -> datetime:
    """Three days ago or a little earlier: the local midnight inside the window (the next
    local day) must start neither a week (a Monday) nor a month, or "1w" and "1mo" would cut
    the window in two too."""
    day = (datetime.now(UTC) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    while (local_day := day + timedelta(days=1)).weekday() == 0 or local_day.day == 1:
        day -= timedelta(days=1)
    return day


DAY = _day_without_a_week_or_month_start()
START, END = DAY + timedelta(hours=12), DAY + timedelta(hours=24)
LOCAL_MIDNIGHT = DAY + timedelta(hours=16)
X, Y = "sz-peoples-government", "lvxin-street-office"  # agencies in Xiaoba Community, op-lvyuan
KITCHEN, RESIDUAL = f"{X}-s1-kitchen", f"{X}-s1-residual"
RECYCLABLE, HAZARDOUS = f"{X}-s1-recyclable", f"{X}-s1-hazardous"


def at(hour: int, minute: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute)


READINGS: list[tuple[str, Reading]] = [
    # 2 deposits, both wrongly sorted; later a low battery in the window's last 2 hours.
    (KITCHEN, Reading(ts=at(13, 10), fill_pct=30, deposits=2, contaminated=2, battery_pct=80)),
    (KITCHEN, Reading(ts=at(23, 30), fill_pct=20, deposits=0, contaminated=0, battery_pct=15)),
    # 200 deposits, all well sorted, on either side of local midnight (16:00Z).
    (RESIDUAL, Reading(ts=at(15, 50), fill_pct=40, deposits=100, contaminated=0, battery_pct=80)),
    (RESIDUAL, Reading(ts=at(16, 10), fill_pct=45, deposits=100, contaminated=0, battery_pct=80)),
    # Full since 11:00, an hour before the window; emptied at 12:30.
    *[
        (RECYCLABLE, Reading(ts=at(11, 10 * i), fill_pct=100 if i < 9 else 10, battery_pct=80))
        for i in range(12)
    ],
    # Over 90 % for one of its two readings at 14:xx; full exactly at the window's end (excluded).
    (HAZARDOUS, Reading(ts=at(14, 0), fill_pct=95, battery_pct=80)),
    (HAZARDOUS, Reading(ts=at(14, 30), fill_pct=50, battery_pct=80)),
    (HAZARDOUS, Reading(ts=at(24, 0), fill_pct=100, battery_pct=80)),
    # Site Y: one reading, no deposits.
    (f"{Y}-s1-kitchen", Reading(ts=at(13, 0), fill_pct=10)),
]

# Site X by hand: bin-hours with readings: kitchen 13h, 23h; residual 15h, 16h; recyclable 12h
# (11h is before the window); hazardous 14h → 6 of 4 bins × 12 h = 48.
X_ACCURACY = 1 - 2 / 202  # 99.0 %, where the mean of the two bins' percentages would be 50 %
X_OVERFLOW = 3 / 6 * 60  # recyclable at 12h: 3 of 6 readings at 100 %
X_OVER90 = 30 + 30  # recyclable at 12h, hazardous at 14h (1 of 2 readings)
X_SHARE = X_OVERFLOW / (6 * 60)
X_SCORE = 0.5 * 100 * X_ACCURACY + 0.3 * 100 * (1 - X_SHARE / 0.10) + 0.2 * 100 * 6 / 48
# Site Y: no deposits → accuracy null and its weight spread over the other two parts.
Y_SCORE = (0.3 * 100 + 0.2 * 100 * 1 / 48) / 0.5


@pytest.fixture
def api(
    settings: Settings, pilot_bins: dict[str, BinTags], ingest: Ingestor
) -> Iterator[TestClient]:
    topics = Topics(settings.topic_prefix)
    publish_all(
        settings,
        [
            (
                topics.bin(bin_id, TopicKind.telemetry),
                reading.model_dump_json(exclude_none=True).encode(),
            )
            for bin_id, reading in READINGS
        ],
    )
    wait_for(lambda: count_points(settings) >= len(READINGS), timeout=20, what="the readings")
    assert count_points(settings) == len(READINGS)
    influx = InfluxClient(settings)
    try:
        ensure_rollups(influx, settings.timezone)
        # Continuous queries only run at the end of each hour: roll the test's day up now.
        assert backfill(influx, DAY, DAY + timedelta(days=2), timezone=settings.timezone).hourly > 0
    finally:
        influx.close()
    with TestClient(create_app(settings), headers=ADMIN_HEADERS) as client:
        yield client


def window(**extra: str) -> dict[str, str]:
    return {"start": START.isoformat(), "end": END.isoformat(), **extra}


def get(api: TestClient, path: str, **params: str) -> dict[str, Any]:
    response = api.get(path, params=window(**params))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_site_report_worked_by_hand(api: TestClient) -> None:
    for source in ("raw", "hourly"):
        report = get(api, f"/api/v1/compliance/sites/{X}", source=source)
        assert report["source"] == source
        m = report["metrics"]
        assert (m["deposits"], m["contaminated"], m["checked_deposits"]) == (202, 2, 202)
        assert m["accuracy"] == pytest.approx(X_ACCURACY)
        assert round(100 * m["accuracy"], 1) == 99.0
        assert m["deposits_per_day"] == pytest.approx(404)
        assert m["deposits_per_bin_day"] == pytest.approx(101)
        assert m["overflow_minutes"] == pytest.approx(X_OVERFLOW)
        assert m["over90_minutes"] == pytest.approx(X_OVER90)
        assert (m["bins"], m["reported_bin_hours"]) == (4, 6)
        assert m["reporting_coverage"] == pytest.approx(6 / 48)
        assert (m["bins_offline"], m["bins_low_battery"]) == (3, 1)
        assert report["score"]["value"] == pytest.approx(X_SCORE)
        parts = {part["name"]: part for part in report["score"]["parts"]}
        assert parts["accuracy"]["effective_weight"] == pytest.approx(0.5)
        assert sum(part["points"] or 0 for part in parts.values()) == pytest.approx(X_SCORE)
        # No collection requests: the collection part is unavailable, the figures empty.
        assert parts["collection"]["value"] is None and parts["collection"]["points"] is None
        assert (m["requests"], m["completed_within_deadline"], m["disputes"]) == (0, None, 0)
        assert report["sites"] == [] and report["periods"] is None
        # An hour's report: the kitchen bin's low battery at 23:30 is before it (not counted),
        # but within its last 2 hours (the bin reported); only the hazardous bin reports in it.
        hour = {"start": at(24).isoformat(), "end": at(25).isoformat(), "source": source}
        m = api.get(f"/api/v1/compliance/sites/{X}", params=hour).json()["metrics"]
        assert (m["bins_offline"], m["bins_low_battery"]) == (2, 0)


def test_no_deposits_is_null_accuracy_and_weights_renormalise(api: TestClient) -> None:
    report = get(api, f"/api/v1/compliance/sites/{Y}")
    assert report["metrics"]["accuracy"] is None
    assert report["metrics"]["deposits_per_day"] == 0
    parts = {part["name"]: part for part in report["score"]["parts"]}
    assert parts["accuracy"]["value"] is None and parts["accuracy"]["points"] is None
    assert parts["overflow"]["effective_weight"] == pytest.approx(0.6)
    assert report["score"]["value"] == pytest.approx(Y_SCORE)


def test_days_are_local_days(api: TestClient) -> None:
    report = get(api, f"/api/v1/compliance/sites/{X}", every="1d")
    first, second = report["periods"]
    assert (first["start"], first["end"]) == (_z(START), _z(LOCAL_MIDNIGHT))
    assert (second["start"], second["end"]) == (_z(LOCAL_MIDNIGHT), _z(END))
    assert (first["metrics"]["deposits"], first["metrics"]["contaminated"]) == (102, 2)
    assert first["metrics"]["overflow_minutes"] == pytest.approx(30)
    assert first["metrics"]["over90_minutes"] == pytest.approx(60)
    assert first["metrics"]["reporting_coverage"] == pytest.approx(4 / 16)
    assert (second["metrics"]["deposits"], second["metrics"]["accuracy"]) == (100, 1.0)
    assert second["metrics"]["reporting_coverage"] == pytest.approx(2 / 32)
    # The same window in whole local weeks or months is one period: the window's own bounds.
    for every in ("1w", "1mo"):
        (only,) = get(api, f"/api/v1/compliance/sites/{X}", every=every)["periods"]
        assert (only["start"], only["end"], only["metrics"]["deposits"]) == (
            _z(START),
            _z(END),
            202,
        )


def test_raw_and_rollups_give_the_same_figures(api: TestClient) -> None:
    for path in (f"/api/v1/compliance/sites/{X}", "/api/v1/compliance/areas/xiaoba"):
        # The window has no whole local day: `daily` reads it all from the site-hours.
        raw = get(api, path, source="raw", every="1d")
        hourly = get(api, path, source="hourly", every="1d")
        daily = get(api, path, source="daily", every="1d")
        assert raw.pop("source") == "raw" and hourly.pop("source") == "hourly"
        assert daily.pop("source") == "daily"
        assert raw == hourly == daily


def test_areas_and_operator_add_up_their_sites(
    api: TestClient, pilot_bins: dict[str, BinTags]
) -> None:
    xiaoba = get(api, "/api/v1/compliance/areas/xiaoba")
    assert xiaoba["subject"] == {"kind": "community", "id": "xiaoba", "name": "肖坝社区"}
    assert xiaoba["metrics"]["bins"] == sum(t.community == "xiaoba" for t in pilot_bins.values())
    ids = [site["id"] for site in xiaoba["sites"]]
    # Ranked needs 10 checked deposits in the 12 hours (20 a day): only X has them (202). Y and
    # every other site (bins but no readings) are listed after it, unranked, by id.
    assert ids[0] == X and xiaoba["sites"][0]["rank"] == 1
    rest = xiaoba["sites"][1:]
    assert ids[1:] == sorted(ids[1:]) and Y in ids[1:]
    assert {site["rank"] for site in rest} == {None}
    assert {site["not_ranked"]["min_checked_deposits"] for site in rest} == {10}
    assert all(site["score"]["value"] == 0 for site in rest if site["id"] != Y)
    for path, kind, bins in (
        ("/api/v1/compliance/areas/xiaoba", "community", "xiaoba"),
        ("/api/v1/compliance/areas/lvxin", "street", "lvxin"),
        ("/api/v1/compliance/areas/shizhong", "district", "shizhong"),
        ("/api/v1/compliance/areas/pilot-city", "city", None),
        ("/api/v1/compliance/operators/op-lvyuan", "operator", None),
    ):
        report = get(api, path)
        m = report["metrics"]
        assert report["subject"]["kind"] == kind
        assert (m["deposits"], m["contaminated"], m["reported_bin_hours"]) == (202, 2, 7)
        assert m["accuracy"] == pytest.approx(X_ACCURACY)
        assert m["overflow_minutes"] == pytest.approx(X_OVERFLOW)
        assert m["bins_low_battery"] == 1
        assert m["bins"] == sum(s["metrics"]["bins"] for s in report["sites"])
        if kind == "city":
            assert m["bins"] == len(pilot_bins)
        elif bins is not None:
            assert m["bins"] == sum(
                bins in (t.community, t.street, t.district) for t in pilot_bins.values()
            )


def test_ranking_needs_evidence_and_lists_the_others_apart(api: TestClient) -> None:
    ranking = get(api, "/api/v1/rankings", site_type="agency")
    assert ranking["rule"] == {
        "min_checked_deposits_per_day": 20,
        "min_checked_deposits": 10,  # 20 a day for 12 hours
        "score_decimals": 2,
    }
    # Y scores higher than X (no accuracy part to lose), but has no checked deposit at all.
    assert [(i["rank"], i["id"]) for i in ranking["items"]] == [(1, X)]
    assert ranking["items"][0]["score"]["value"] == pytest.approx(X_SCORE)
    not_ranked = ranking["not_ranked"]
    assert len(not_ranked) == 49
    by_id = {item["id"]: item for item in not_ranked}
    assert by_id[Y]["score"]["value"] == pytest.approx(Y_SCORE) and Y_SCORE > X_SCORE
    assert by_id[Y]["not_ranked"] == {
        "reason": "too_few_checked_deposits",
        "checked_deposits": 0,
        "min_checked_deposits": 10,
    }
    assert [i["id"] for i in not_ranked] == sorted(by_id)  # equal evidence (none): by id
    assert get(api, "/api/v1/rankings", site_type="agency") == ranking  # stable


def test_csv_carries_the_same_numbers(api: TestClient) -> None:
    report = get(api, "/api/v1/compliance/areas/xiaoba", every="1d")
    for response in (
        api.get("/api/v1/compliance/areas/xiaoba", params=window(every="1d", format="csv")),
        api.get(
            "/api/v1/compliance/areas/xiaoba",
            params=window(every="1d"),
            headers={"Accept": "text/csv"},
        ),
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [row["row"] for row in rows] == ["total"] + ["period"] * 2 + ["site"] * len(
            report["sites"]
        )
        assert rows[0]["accuracy"] == str(report["metrics"]["accuracy"])
        assert rows[0]["score"] == str(report["score"]["value"])
        assert rows[1]["deposits"] == "102" and rows[3]["id"] == X
    ranking = api.get("/api/v1/rankings", params=window(site_type="agency", format="csv"))
    rows = list(csv.DictReader(io.StringIO(ranking.text)))
    assert (rows[0]["id"], rows[0]["rank"], rows[0]["deposits"]) == (X, "1", "202")
    assert (rows[1]["rank"], rows[1]["not_ranked"]) == ("", "too_few_checked_deposits")
    assert rows[1]["accuracy"] == ""  # null


# --- collection requests ----------------------------------------------------------------------

FINANCE = "sz-finance-bureau"  # op-lvyuan too, but in Lvxin Road Community: not Xiaoba's


@pytest.fixture
def collection_requests(settings: Settings, api: TestClient) -> None:
    """Collection requests written straight into the app's registry. The window is 12:00Z to
    24:00Z, judged at its end (24:00Z, three days ago)."""
    minute = timedelta(minutes=1)
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            for bin_id, fields in [
                # Site X, in the window's first local day (before 16:00Z):
                # 45 min, on time.
                (KITCHEN, dict(created=at(13), due=at(25), status="verified",
                               completed=at(13, 45))),
                # 360 min, completed 2 h after its deadline, escalated once meanwhile: missed.
                (RESIDUAL, dict(created=at(14), due=at(18), status="completed",
                                completed=at(20), escalation_level=1)),
                # 90 min, on time, but the readings disputed the completion.
                (KITCHEN, dict(created=at(15), due=at(27), status="disputed",
                               completed=at(16, 30))),
                # Site X, second local day: open past its deadline, escalated twice: missed.
                (RECYCLABLE, dict(created=at(17), due=at(20), status="acknowledged",
                                  escalation_level=2)),
                # Open, due after the window's end: no verdict yet.
                (HAZARDOUS, dict(created=at(23), due=at(47), status="dispatched")),
                # Cancelled: a request, never judged.
                (KITCHEN, dict(created=at(18), due=at(30), status="cancelled")),
                # Not the window's: a minute before it, and at its (exclusive) end.
                (KITCHEN, dict(created=at(12) - minute, due=at(24), status="verified",
                               completed=at(12, 5))),
                (RESIDUAL, dict(created=at(24), due=at(36), status="verified",
                                completed=at(25))),
                # Site Y (Xiaoba): 10 min, on time.
                (f"{Y}-s1-kitchen", dict(created=at(13), due=at(25), status="verified",
                                         completed=at(13, 10))),
                # Finance bureau (Lvxin Street, not Xiaoba): 60 min, on time; and one assigned
                # to another operator (open, not yet due), which op-lvyuan's report leaves out.
                (f"{FINANCE}-s1-kitchen", dict(created=at(13), due=at(25), status="verified",
                                               completed=at(14))),
                (f"{FINANCE}-s1-residual", dict(created=at(13), due=at(40), status="open",
                                                operator_id="op-jiejing")),
            ]:  # fmt: skip
                add_request(session, bin_id, **fields)  # type: ignore[arg-type]
    finally:
        engine.dispose()


# Site X by hand: 6 requests; completed in 45, 360 and 90 min → sorted 45, 90, 360: the median
# is rank ⌈1.5⌉ = 2 (90), the 90th percentile rank ⌈2.7⌉ = 3 (360). On time: 45 and 90 min;
# missed: the late one and the open overdue one → 2 of 4. One dispute, two escalated.
X_COLLECTION = 100 * 2 / 4
X_SCORE_WITH_REQUESTS = (X_SCORE + 0.25 * X_COLLECTION) / 1.25  # weights 0.5+0.3+0.2+0.25
Y_SCORE_WITH_REQUESTS = (0.3 * 100 + 0.2 * 100 * 1 / 48 + 0.25 * 100) / 0.75


def test_site_collection_figures_worked_by_hand(api: TestClient, collection_requests: None) -> None:
    report = get(api, f"/api/v1/compliance/sites/{X}")
    m = report["metrics"]
    assert (m["requests"], m["requests_completed"]) == (6, 3)
    assert (m["response_median_minutes"], m["response_p90_minutes"]) == (90.0, 360.0)
    assert (m["requests_on_time"], m["requests_missed"]) == (2, 2)
    assert m["completed_within_deadline"] == 0.5
    assert (m["disputes"], m["escalations"]) == (1, 2)
    # The readings' figures are unchanged by the requests.
    assert m["accuracy"] == pytest.approx(X_ACCURACY) and m["deposits"] == 202
    parts = {part["name"]: part for part in report["score"]["parts"]}
    assert parts["collection"]["value"] == X_COLLECTION
    assert parts["collection"]["weight"] == 0.25
    assert parts["collection"]["effective_weight"] == pytest.approx(0.25 / 1.25)
    assert parts["accuracy"]["effective_weight"] == pytest.approx(0.5 / 1.25)
    assert parts["collection"]["points"] == pytest.approx(X_COLLECTION * 0.2)
    assert report["score"]["value"] == pytest.approx(X_SCORE_WITH_REQUESTS)
    assert sum(part["points"] for part in parts.values()) == pytest.approx(X_SCORE_WITH_REQUESTS)

    # By local day (16:00Z): requests belong to the day they were created in.
    first, second = get(api, f"/api/v1/compliance/sites/{X}", every="1d")["periods"]
    f, s = first["metrics"], second["metrics"]
    assert (f["requests"], f["requests_completed"], f["requests_on_time"]) == (3, 3, 2)
    assert (f["response_median_minutes"], f["response_p90_minutes"]) == (90.0, 360.0)
    assert f["completed_within_deadline"] == pytest.approx(2 / 3)
    assert (f["disputes"], f["escalations"]) == (1, 1)
    assert (s["requests"], s["requests_completed"], s["requests_missed"]) == (3, 0, 1)
    assert (s["response_median_minutes"], s["completed_within_deadline"]) == (None, 0.0)
    assert (s["disputes"], s["escalations"]) == (0, 1)
    assert {p["name"]: p["value"] for p in second["score"]["parts"]}["collection"] == 0


def test_area_collection_figures_add_up_their_sites(
    api: TestClient, collection_requests: None
) -> None:
    xiaoba = get(api, "/api/v1/compliance/areas/xiaoba")
    m = xiaoba["metrics"]
    # X and Y: completed in 10, 45, 90, 360 min → median rank 2 (45), p90 rank ⌈3.6⌉ = 4 (360);
    # on time: X's two and Y's one; missed: X's two.
    assert (m["requests"], m["requests_completed"]) == (7, 4)
    assert (m["response_median_minutes"], m["response_p90_minutes"]) == (45.0, 360.0)
    assert (m["requests_on_time"], m["requests_missed"]) == (3, 2)
    assert m["completed_within_deadline"] == pytest.approx(3 / 5)
    assert (m["disputes"], m["escalations"]) == (1, 2)
    sites = {site["id"]: site for site in xiaoba["sites"]}
    assert FINANCE not in sites
    y = sites[Y]["metrics"]
    assert (y["requests"], y["response_median_minutes"], y["completed_within_deadline"]) == (
        1,
        10.0,
        1.0,
    )
    assert sites[Y]["score"]["value"] == pytest.approx(Y_SCORE_WITH_REQUESTS)
    assert sites[X]["score"]["value"] == pytest.approx(X_SCORE_WITH_REQUESTS)
    # Y's requests do not make up for its lack of checked deposits: X alone is ranked.
    assert [(site["id"], site["rank"]) for site in xiaoba["sites"][:1]] == [(X, 1)]
    assert sites[Y]["rank"] is None
    assert sum(site["metrics"]["requests"] for site in xiaoba["sites"]) == 7
    # The street holds the finance bureau too: its on-time request and the other operator's.
    lvxin = get(api, "/api/v1/compliance/areas/lvxin")["metrics"]
    assert (lvxin["requests"], lvxin["requests_on_time"], lvxin["requests_missed"]) == (9, 4, 2)
    # Completed in 10, 45, 60, 90, 360 min: median rank ⌈2.5⌉ = 3, p90 rank ⌈4.5⌉ = 5.
    assert (lvxin["response_median_minutes"], lvxin["response_p90_minutes"]) == (60.0, 360.0)
    # An operator counts the requests assigned to it: the op-jiejing one is left out.
    lvyuan = get(api, "/api/v1/compliance/operators/op-lvyuan")["metrics"]
    assert lvyuan["requests"] == 8
    ranking = get(api, "/api/v1/rankings", site_type="agency")
    ranked_sites = {item["id"]: item for item in ranking["items"] + ranking["not_ranked"]}
    assert ranked_sites[X]["metrics"] == sites[X]["metrics"]
    assert ranked_sites[FINANCE]["metrics"]["requests"] == 2


def test_csv_carries_the_collection_figures(api: TestClient, collection_requests: None) -> None:
    report = get(api, "/api/v1/compliance/areas/xiaoba")
    response = api.get("/api/v1/compliance/areas/xiaoba", params=window(format="csv"))
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    total, by_id = rows[0], {row["id"]: row for row in rows[1:]}
    assert (total["requests"], total["requests_completed"]) == ("7", "4")
    assert (total["response_median_minutes"], total["response_p90_minutes"]) == ("45.0", "360.0")
    assert total["completed_within_deadline"] == str(report["metrics"]["completed_within_deadline"])
    assert (total["disputes"], total["escalations"]) == ("1", "2")
    collection = {p["name"]: p for p in report["score"]["parts"]}["collection"]
    assert total["collection_points"] == str(collection["points"])
    assert total["score"] == str(report["score"]["value"])
    assert (by_id[X]["requests"], by_id[X]["completed_within_deadline"]) == ("6", "0.5")
    assert by_id[X]["score"] == str({s["id"]: s for s in report["sites"]}[X]["score"]["value"])
    # A site without requests: zero counts, empty (null) figures and points.
    other = next(row for row in rows[1:] if row["requests"] == "0")
    assert (other["response_median_minutes"], other["collection_points"]) == ("", "")


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/v1/compliance/sites/nowhere", "no site with id 'nowhere'"),
        ("/api/v1/compliance/areas/nowhere", "no area with id 'nowhere'"),
        ("/api/v1/compliance/operators/nobody", "no operator with id 'nobody'"),
    ],
)
def test_unknown_ids_are_404(api: TestClient, path: str, detail: str) -> None:
    response = api.get(path)
    assert (response.status_code, response.json()) == (404, {"detail": detail})


def test_windows_that_cannot_be_served_are_422(api: TestClient) -> None:
    path = f"/api/v1/compliance/sites/{X}"
    off_hour = api.get(
        path, params={"start": (START + timedelta(minutes=5)).isoformat(), "end": END.isoformat()}
    )
    assert off_hour.status_code == 422 and "whole hour" in off_hour.json()["detail"]
    long_raw = api.get(
        path,
        params={
            "start": (END - timedelta(days=8)).isoformat(),
            "end": END.isoformat(),
            "source": "raw",
        },
    )
    assert long_raw.status_code == 422 and "7 days" in long_raw.json()["detail"]
    too_long = api.get(
        path, params={"start": (END - timedelta(days=367)).isoformat(), "end": END.isoformat()}
    )
    assert too_long.status_code == 422
    assert api.get(path, params={"every": "2d"}).status_code == 422
    assert api.get("/api/v1/compliance/sites/bad%20id").status_code == 422


def _z(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_daily_tier_gives_the_same_figures_as_the_bin_hours(api: TestClient) -> None:
    """From the local midnight before the readings, two whole local days (read from the per-site
    daily tier) and 8 hours of a third (from the hourly tier)."""
    start = LOCAL_MIDNIGHT - timedelta(days=1)
    end = LOCAL_MIDNIGHT + timedelta(days=1, hours=8)
    span = {"start": start.isoformat(), "end": end.isoformat()}
    for path in (
        f"/api/v1/compliance/sites/{X}",
        "/api/v1/compliance/areas/xiaoba",
        "/api/v1/compliance/operators/op-lvyuan",
    ):
        for every in ({}, {"every": "1d"}):
            answers = {}
            for source in ("raw", "hourly", "daily"):
                response = api.get(path, params={**span, **every, "source": source})
                assert response.status_code == 200, response.text
                body = response.json()
                assert body.pop("source") == source
                answers[source] = body
            assert answers["daily"] == answers["hourly"] == answers["raw"]
            assert answers["daily"]["metrics"]["deposits"] == 202


# --- the report cache (api.report_cache) ---------------------------------------------------------

CACHE_S = 3.0


@pytest.fixture
def cached(settings: Settings, api: TestClient) -> Iterator[TestClient]:
    """An app over the `api` fixture's data that remembers reports for CACHE_S."""
    short = settings.model_copy(update={"api_report_cache_s": CACHE_S})
    with TestClient(create_app(short), headers=ADMIN_HEADERS) as client:
        yield client


def _key(settings: Settings, role: ApiRole, **scope: Any) -> dict[str, str]:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            issued = create_key(session, name=role.value, role=role, now=datetime.now(UTC), **scope)
    finally:
        engine.dispose()
    return {"Authorization": f"Bearer {issued.token}"}


def test_a_remembered_report_is_served_only_within_the_callers_scope(
    settings: Settings, cached: TestClient
) -> None:
    """The admin's answers are in the cache; a key outside their subject gets exactly the 404 of
    an id that does not exist (or its role's 403), a key inside it the admin's answer."""
    site, area, operator = (
        f"/api/v1/compliance/sites/{Y}",
        "/api/v1/compliance/areas/xiaoba",
        "/api/v1/compliance/operators/op-lvyuan",
    )
    remembered = {path: get(cached, path) for path in (site, area, operator)}
    missing = {
        site: f"no site with id {Y!r}",
        area: "no area with id 'xiaoba'",
        operator: "no operator with id 'op-lvyuan'",
    }
    outsiders = [  # each: its key, and the answer to each path
        (_key(settings, ApiRole.manager, site_ids=[X]), {site: 404, area: 403, operator: 403}),
        (_key(settings, ApiRole.grid, area_id="lvxin-road"), {site: 404, area: 404, operator: 403}),
        (
            _key(settings, ApiRole.operator, operator_id="op-jiejing"),
            {site: 404, area: 403, operator: 404},
        ),
    ]
    for headers, codes in outsiders:
        for path, code in codes.items():
            answer = cached.get(path, params=window(), headers=headers)
            assert answer.status_code == code, (path, answer.text)
            if code == 404:
                assert answer.json() == {"detail": missing[path]}
    insiders = {
        site: _key(settings, ApiRole.manager, site_ids=[Y]),
        area: _key(settings, ApiRole.grid, area_id="xiaoba"),
        operator: _key(settings, ApiRole.operator, operator_id="op-lvyuan"),
    }
    for path, headers in insiders.items():
        answer = cached.get(path, params=window(), headers=headers)
        assert (answer.status_code, answer.json()) == (200, remembered[path])


def test_a_changed_parameter_is_another_report_and_new_data_shows_after_the_ttl(
    settings: Settings, cached: TestClient
) -> None:
    path = f"/api/v1/compliance/sites/{X}"
    began = time.monotonic()
    assert get(cached, path, source="hourly")["metrics"]["requests"] == 0
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            add_request(session, KITCHEN, created=at(13), due=at(25), status="verified",
                        completed=at(13, 45))  # fmt: skip
    finally:
        engine.dispose()
    assert get(cached, path, source="hourly")["metrics"]["requests"] == 0  # remembered
    assert time.monotonic() - began < CACHE_S, "too slow to show the cache: the test says nothing"
    # Any parameter that changes the answer is another entry, computed from what is stored now.
    assert get(cached, path, source="raw")["metrics"]["requests"] == 1
    assert get(cached, path, source="hourly", every="1d")["metrics"]["requests"] == 1
    assert get(cached, f"/api/v1/compliance/sites/{Y}", source="hourly")["metrics"]["requests"] == 0
    # Once the entry is CACHE_S old the next request computes it again.
    wait_for(
        lambda: get(cached, path, source="hourly")["metrics"]["requests"] == 1,
        timeout=CACHE_S + 2,
        what="the new request in the remembered report",
    )
    assert time.monotonic() - began >= CACHE_S


def test_identical_requests_at_once_compute_the_report_once(
    cached: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten callers asking for the same ranking while it is computed: one computation, the
    same answer for all (on the route threads the app runs reports on)."""
    built: list[float] = []
    build = compliance_routes.build_ranking

    def slow_build(*args: Any, **kwargs: Any) -> Any:
        built.append(time.monotonic())
        time.sleep(0.5)  # long enough for the others to arrive meanwhile
        return build(*args, **kwargs)

    monkeypatch.setattr(compliance_routes, "build_ranking", slow_build)
    with ThreadPoolExecutor(10) as pool:
        answers = list(
            pool.map(lambda _: get(cached, "/api/v1/rankings", site_type="agency"), range(10))
        )
    assert len(built) == 1
    assert all(answer == answers[0] for answer in answers)
