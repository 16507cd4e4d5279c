"""The grid screens in Debian's chromium against `binwatch api` as a real process: a community
official, a district official and the admin each log in and see exactly their part of the grid
(other areas' sites absent from their pages and from the community official's map, those URLs
404); the admin creates a user in the
user screens and that user logs in with the password shown once. No JavaScript error."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy.orm import Session

from core.influx import InfluxClient, quote_ident
from core.settings import Settings
from core.sql import make_engine
from devices.registry import BinTags
from tests.api_process import ApiProcess
from tests.grid_world import (
    ADMIN,
    COMMUNITY_OFFICIAL,
    DISTRICT_OFFICIAL,
    PASSWORD,
    GridWorld,
    build,
)
from tests.test_console import BROWSER, BROWSER_ARGS

pytestmark = pytest.mark.registry_backends(
    "sqlite",
    reason="the browser sees the same pages either way; the grid pages' queries run on both "
    "backends in test_console_grid.py",
)


@pytest.fixture
def world(settings: Settings, pilot_bins: dict[str, BinTags]) -> Iterator[GridWorld]:
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        yield build(session, settings, pilot_bins)
    influx = InfluxClient(settings)
    influx.query(f"DROP DATABASE {quote_ident(settings.influx.db)}", database=False)
    influx.close()
    engine.dispose()


def _log_in(browser: Browser, url: str, username: str, password: str, errors: list[str]) -> Page:
    page = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900}).new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/console/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form[action='/console/login'] button")
    page.wait_for_load_state()
    return page


def _linked(page: Page, prefix: str) -> set[str]:
    hrefs = page.eval_on_selector_all("#parts a", "links => links.map(a => a.getAttribute('href'))")
    return {re.sub(r"\?.*", "", h).removeprefix(prefix) for h in hrefs}


def test_each_grid_level_sees_its_area_and_the_admin_creates_a_user_who_logs_in(
    settings: Settings, world: GridWorld, tmp_path: Path
) -> None:
    errors: list[str] = []
    with ApiProcess(settings, tmp_path / "api.log") as api, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=BROWSER, args=BROWSER_ARGS)
        try:
            community = _log_in(browser, api.url, COMMUNITY_OFFICIAL, PASSWORD, errors)
            assert community.url.endswith(f"/console/grid/{world.community}")
            assert _linked(community, "/console/sites/") == world.sites_under(world.community)
            elsewhere = min(world.sites_under(world.other_district))
            for path in (f"/console/sites/{elsewhere}", f"/console/grid/{world.street}"):
                answer = community.goto(f"{api.url}{path}")
                assert answer is not None and answer.status == 404, path
            # The map (no tile layer here: coordinates alone) draws the area's sites, no more.
            community.goto(f"{api.url}/console/map")
            community.wait_for_selector("#map canvas")
            drawn = community.evaluate(
                "echarts.getInstanceByDom(document.querySelector('#map .map-canvas'))"
                ".getOption().series[0].data.length"
            )
            listed = community.eval_on_selector_all(
                ".map-sites li", "items => items.map(li => li.dataset.site)"
            )
            assert set(listed) == world.sites_under(world.community) and drawn == len(listed)

            district = _log_in(browser, api.url, DISTRICT_OFFICIAL, PASSWORD, errors)
            assert district.url.endswith(f"/console/grid/{world.district}")
            streets = {s.id for s in world.grid.children(world.district)}
            assert _linked(district, "/console/grid/") == streets
            district.click(f"#parts a[href^='/console/grid/{world.street}?']")
            district.click(f"#parts a[href^='/console/grid/{world.community}?']")
            assert _linked(district, "/console/sites/") == world.sites_under(world.community)
            answer = district.goto(f"{api.url}/console/grid/{world.other_district}")
            assert answer is not None and answer.status == 404

            admin = _log_in(browser, api.url, ADMIN, PASSWORD, errors)
            admin.click("nav.roles a[href='/console/grid']")
            assert admin.url.endswith(f"/console/grid/{world.city}")
            assert _linked(admin, "/console/grid/") == {
                d.id for d in world.grid.children(world.city)
            }
            admin.click("nav.roles a[href='/console/users']")
            admin.fill("input[name=username]", "zhao.community")
            admin.fill("input[name=display_name]", "赵社区")
            admin.select_option("select[name=role]", "grid")
            admin.select_option("select[name=area_id]", world.community)
            admin.click("form[action='/console/users'] button")
            password = admin.inner_text("code.password")
            admin.screenshot(path=str(tmp_path / "console-user-created.png"))

            newcomer = _log_in(browser, api.url, "zhao.community", password, errors)
            assert newcomer.url.endswith(f"/console/grid/{world.community}")
            assert "赵社区" in newcomer.inner_text("header")
        finally:
            browser.close()
    # The browser reports each 404 page it was sent to (3 above) as a failed load; nothing else.
    not_found = [e for e in errors if "status of 404" in e]
    assert len(not_found) == 3 and len(errors) == 3, errors
    served = (tmp_path / "api.log").read_text(encoding="utf-8", errors="replace")
    assert PASSWORD not in served and password not in served
