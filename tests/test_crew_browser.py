"""The crew's screen on a 360 px phone in Debian's chromium against `binwatch api` as a real
process: a crew logs in and taps "emptied" on its first stop while the answer is lost on the
way back (the server acted, the phone saw a network error), so the phone sends the same tap
again and it stays one action; then the phone goes offline, the crew reports the second stop
blocked with a photo, the tap waits in the phone's queue, and arrives when the phone is back.
And with the photos in an S3 bucket whose server is stopped: the crew reads why its tap did not
go, the tap waits with its photo, and arrives once the server is back."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    FilePayload,
    Page,
    Route,
    ViewportSize,
    sync_playwright,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from binwatch.servers import free_port
from collection.models import CollectionEvent, CrewTap
from core.influx import InfluxClient, quote_ident
from core.settings import Settings
from core.sql import make_engine
from devices.registry import BinTags
from tests.api_process import ApiProcess
from tests.crew_world import CREW, PASSWORD, build
from tests.s3_server import ACCESS_KEY, SECRET_KEY, S3Server, s3_client
from tests.test_console import BROWSER, BROWSER_ARGS
from tests.test_console_browser_checks import axe_violations
from tests.test_crew import PNG

pytestmark = pytest.mark.registry_backends(
    "sqlite",
    reason="the browser sees the same pages either way; the taps' queries run on both "
    "backends in test_crew.py",
)
PHONE: ViewportSize = {"width": 360, "height": 740}


def _taps_and_events(
    settings: Settings, stop_id: int, request_id: int
) -> tuple[list[CrewTap], list[CollectionEvent]]:
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            taps = list(session.scalars(select(CrewTap).where(CrewTap.stop_id == stop_id)))
            events = list(
                session.scalars(
                    select(CollectionEvent)
                    .where(CollectionEvent.request_id == request_id)
                    .order_by(CollectionEvent.id)
                )
            )
            return taps, events
    finally:
        engine.dispose()


def _crew_phone(browser: Browser, url: str, errors: list[str]) -> tuple[BrowserContext, Page]:
    """A phone with the crew logged in on its screen; the page's errors go to `errors`."""
    context = browser.new_context(locale="zh-CN", viewport=PHONE, has_touch=True)
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.goto(f"{url}/console/login")
    page.fill("input[name=username]", CREW)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/console/login'] button")
    page.wait_for_url("**/console/crew")
    return context, page


def _attach_photo(page: Page, stop: int) -> None:
    page.click(f"#stop-{stop} summary")
    page.set_input_files(
        f"#stop-{stop} input[type=file]",
        files=FilePayload(name="bin.png", mimeType="image/png", buffer=PNG),
    )


def test_a_crew_taps_through_a_lost_answer_and_an_offline_spell(
    settings: Settings, pilot_bins: dict[str, BinTags], tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    settings = settings.model_copy(
        update={"route": settings.route.model_copy(update={"photo_dir": str(photos)})}
    )
    day = build(settings)
    first, second = day.mine[0], day.mine[1]
    errors: list[str] = []
    lost: list[int] = []

    def lose_the_answer(route: Route) -> None:
        """The first copy reaches the server; its answer never reaches the phone."""
        if lost:
            route.continue_()
            return
        lost.append(route.fetch().status)
        route.abort("connectionreset")

    with ApiProcess(settings, tmp_path / "api.log") as api, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=BROWSER, args=BROWSER_ARGS)
        try:
            context, page = _crew_phone(browser, api.url, errors)
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            assert page.locator(".crew-stop").count() == len(day.mine)

            page.route(f"**/console/crew/stops/{first}/tap", lose_the_answer)
            page.click(f"#stop-{first} button.emptied")
            page.wait_for_selector(f"#stop-{first}.done", timeout=15_000)
            assert lost == [200]  # the server had taken it the first time
            assert page.locator(f"#stop-{first} button").count() == 0  # nothing left to tap
            taps, events = _taps_and_events(settings, first, day.requests[first])
            assert len(taps) == 1 and taps[0].outcome == "completed"
            assert [e.to_status for e in events].count("completed") == 1

            context.set_offline(True)
            _attach_photo(page, second)
            page.click(f"#stop-{second} button[value=blocked]")
            page.wait_for_selector(f"#stop-{second} .queued:not([hidden])")
            assert page.inner_text("#crew-queued") == "1"
            page.screenshot(path=str(tmp_path / "crew-offline.png"))
            assert _taps_and_events(settings, second, day.requests[second])[0] == []

            context.set_offline(False)
            page.wait_for_selector(f"#stop-{second}.done", timeout=15_000)
            assert page.is_hidden("#crew-queue")
            assert "被堵挡" in page.inner_text(f"#stop-{second}")
            # stops done stay readable (they were faded below the contrast a phone needs)
            assert axe_violations(page) == []
            page.screenshot(path=str(tmp_path / "crew-back-online.png"))
        finally:
            browser.close()
    taps, events = _taps_and_events(settings, second, day.requests[second])
    assert [(t.action, t.reason, t.outcome) for t in taps] == [
        ("not_emptied", "blocked", "reported")
    ]
    assert taps[0].photo is not None and (photos / taps[0].photo).read_bytes() == PNG
    assert (events[-1].kind, events[-1].note_msg) == ("report", {"id": "crew.blocked", "args": {}})
    # The lost answer and the offline spell show as failed loads; nothing else went wrong.
    assert errors and all("net::ERR_" in e for e in errors), errors
    influx = InfluxClient(settings)
    influx.query(f"DROP DATABASE {quote_ident(settings.influx.db)}", database=False)
    influx.close()


def test_a_crew_whose_photo_store_is_down_is_told_and_the_tap_waits_on_the_phone(
    settings: Settings, pilot_bins: dict[str, BinTags], tmp_path: Path
) -> None:
    """The API keeps photos in a bucket of an S3 server of its own, which is stopped: the crew
    reports a stop with a photo, reads why it did not go, and the tap waits on the phone with
    its photo; once the server is back (with its bucket) the tap goes out, photo and all."""
    s3 = S3Server(tmp_path / "s3", free_port())
    settings = settings.model_copy(
        update={
            "route_photo_store": "s3",
            "route_photo_s3_url": s3.url,
            "route_photo_s3_bucket": "photos",
            "route_photo_s3_access_key": ACCESS_KEY,
            "route_photo_s3_secret_key": SECRET_KEY,
        }
    )
    day = build(settings)
    stop = day.mine[0]
    errors: list[str] = []
    with ApiProcess(settings, tmp_path / "api.log") as api, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=BROWSER, args=BROWSER_ARGS)
        try:
            _context, page = _crew_phone(browser, api.url, errors)
            _attach_photo(page, stop)
            page.click(f"#stop-{stop} button[value=no_access]")
            page.wait_for_selector("#crew-message.problem", timeout=15_000)
            assert page.inner_text("#crew-message") == (
                "照片暂时无法保存。该操作已保留在本机，稍后将重新发送。"
            )
            assert page.inner_text("#crew-queued") == "1"
            assert _taps_and_events(settings, stop, day.requests[stop])[0] == []

            with s3:
                s3_client(s3.url).create_bucket(Bucket="photos")
                page.wait_for_selector(f"#stop-{stop}.done", timeout=15_000)
                assert page.is_hidden("#crew-queue")
                taps = _taps_and_events(settings, stop, day.requests[stop])[0]
                assert [(t.reason, t.outcome) for t in taps] == [("no_access", "reported")]
                kept = s3_client(s3.url).get_object(Bucket="photos", Key=taps[0].photo)
                assert kept["Body"].read() == PNG
        finally:
            browser.close()
    # the 503s show as failed loads in the console; nothing else went wrong
    assert all("503" in e for e in errors), errors
    influx = InfluxClient(settings)
    influx.query(f"DROP DATABASE {quote_ident(settings.influx.db)}", database=False)
    influx.close()
